"""Which capture modes this build can measure: a logical figure is never one a triggers run made."""

from __future__ import annotations

from bench import common

LOGICAL_UNAVAILABLE = "logical capture not available in this build"


def logical_capture_available() -> tuple[bool, str]:
    """Whether this build of sync_pipeline knows `capture: logical` (SyncSpec.capture, the
    publication + slot behind install_capture); (False, why) otherwise. Checked, not assumed:
    the bench never reports a logical figure that a triggers run produced."""
    from sync_pipeline.core.spec.model import SyncSpec

    if "capture" not in SyncSpec.model_fields:
        return False, f"{LOGICAL_UNAVAILABLE} (SyncSpec has no 'capture' field)"
    try:
        import yaml

        from sync_pipeline.core.spec.model import SpecFile

        spec = SpecFile.model_validate(yaml.safe_load(common.spec_yaml(capture="logical"))).specs[0]
    except Exception as exc:
        return False, f"{LOGICAL_UNAVAILABLE} ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    if str(getattr(spec, "capture", "")) != "logical":
        return False, f"{LOGICAL_UNAVAILABLE} (spec.capture is {getattr(spec, 'capture', None)!r})"
    return True, "available"


def require_capture(capture: str) -> None:
    """Raise, with the message the report carries, when `capture` cannot be measured here."""
    if capture == "logical":
        ok, why = logical_capture_available()
        if not ok:
            raise CaptureUnavailable(why)
    elif capture != "triggers":
        raise ValueError(f"unknown capture mode {capture!r} (triggers or logical)")


class CaptureUnavailable(RuntimeError):
    """The requested capture mode does not exist in this build of sync_pipeline."""
