"""How a SYNC_* value is read: the error a bad one raises, and the parsers every settings
module shares (an unset or blank variable takes the default)."""

from __future__ import annotations

from collections.abc import Mapping

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """An environment variable holds a value sync_pipeline cannot use, or a needed one is unset."""


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE or lowered == "":
        return False
    raise SettingsError(f"{name} must be one of {', '.join(sorted(_TRUE | _FALSE))}, not {value!r}")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float, unit: str) -> float:
    """A float setting within [low, high]; a duration in seconds must also be more than 0."""
    raw = _text(env, name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of {unit}") from None
    floor = "more than" if unit == "seconds" else "at least"
    if not low <= value <= high or (unit == "seconds" and value <= 0):
        raise SettingsError(f"{name} must be {floor} {low:g} and at most {high:g} {unit}, not {raw}")
    return value


def _text(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    """One of `allowed` (case-insensitive); anything else is an error naming them."""
    raw = _text(env, name)
    if raw is None:
        return default
    if raw.lower() not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, not {raw!r}")
    return raw.lower()
