"""Every SYNC_* environment variable, read in one place and validated once.

`load()` reads the environment when it is called (never at import), and
returns a frozen `Settings`; entry points (the CLI, the code location, the
Flask blueprint, the local services) call it once and pass what they need on.
A bad value is a `SettingsError` naming the variable. The Dagster resources
still receive secrets as `dg.EnvVar(<name>)`, so the names below are also
what the resources reference, and no secret is ever copied into the UI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

PG_URL = "SYNC_PG_URL"
ES_URL = "SYNC_ES_URL"
CONFIG = "SYNC_CONFIG"
STAGING_DIR = "SYNC_STAGING_DIR"
DAGSTER_URL = "SYNC_DAGSTER_URL"
DAGSTER_PG_URL = "SYNC_DAGSTER_PG_URL"
API_TOKEN = "SYNC_API_TOKEN"
TUNE_MEMORY = "SYNC_PIPELINE_TUNE_MEMORY"

ALERT_WEBHOOK_URL = "SYNC_ALERT_WEBHOOK_URL"
ALERT_SMTP_HOST = "SYNC_ALERT_SMTP_HOST"
ALERT_SMTP_PORT = "SYNC_ALERT_SMTP_PORT"
ALERT_SMTP_FROM = "SYNC_ALERT_SMTP_FROM"
ALERT_SMTP_TO = "SYNC_ALERT_SMTP_TO"
ALERT_SMTP_USERNAME = "SYNC_ALERT_SMTP_USERNAME"
ALERT_SMTP_PASSWORD = "SYNC_ALERT_SMTP_PASSWORD"
ALERT_SMTP_STARTTLS = "SYNC_ALERT_SMTP_STARTTLS"
ALERT_ERROR_RATE = "SYNC_ALERT_ERROR_RATE"

LOCAL_PG_PORT = "SYNC_LOCAL_PG_PORT"
LOCAL_ES_PORT = "SYNC_LOCAL_ES_PORT"
ES_VERSION = "SYNC_ES_VERSION"
SERVICES_DIR = "SYNC_SERVICES_DIR"
ES_EXTRA_SETTINGS = "SYNC_ES_EXTRA_SETTINGS"
PG_START_TIMEOUT = "SYNC_PG_START_TIMEOUT"
ES_START_TIMEOUT = "SYNC_ES_START_TIMEOUT"

DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
DEFAULT_ERROR_RATE = 0.01
DEFAULT_LOCAL_PG_PORT = 55432
DEFAULT_LOCAL_ES_PORT = 59200
DEFAULT_ES_VERSION = "9.2.4"

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


def _text(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


@dataclass(frozen=True)
class AlertSettings:
    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str | None = None
    smtp_to: str | None = None
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    error_rate: float = DEFAULT_ERROR_RATE


@dataclass(frozen=True)
class LocalServiceSettings:
    """The project's own dev/test servers (`sync-pipeline services`)."""

    pg_port: int = DEFAULT_LOCAL_PG_PORT
    es_port: int = DEFAULT_LOCAL_ES_PORT
    es_version: str = DEFAULT_ES_VERSION
    services_dir: Path = PROJECT_ROOT / ".services"
    es_extra_settings: tuple[str, ...] = ()
    pg_start_timeout: int = 60
    es_start_timeout: int = 180


@dataclass(frozen=True)
class Settings:
    pg_url: str | None = field(default=None, repr=False)
    es_url: str | None = field(default=None, repr=False)
    config_path: Path = PROJECT_ROOT / "sync.yaml"
    staging_dir: Path = Path(".staging")
    dagster_url: str = DEFAULT_DAGSTER_URL
    dagster_pg_url: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    tune_memory: bool = True
    alerts: AlertSettings = AlertSettings()
    local: LocalServiceSettings = LocalServiceSettings()

    def require_pg_url(self) -> str:
        if not self.pg_url:
            raise SettingsError(f"{PG_URL} is not set: the PostgreSQL URL to sync from")
        return self.pg_url

    def require_es_url(self) -> str:
        if not self.es_url:
            raise SettingsError(f"{ES_URL} is not set: the Elasticsearch URL to sync to")
        return self.es_url


def _config_path(env: Mapping[str, str]) -> Path:
    """SYNC_CONFIG, else ./sync.yaml, else the project's own sync.yaml."""
    if _text(env, CONFIG):
        return Path(env[CONFIG].strip())
    local = Path("sync.yaml")
    return local if local.exists() else PROJECT_ROOT / "sync.yaml"


def _alerts(env: Mapping[str, str]) -> AlertSettings:
    port = _int(env, ALERT_SMTP_PORT, 25)
    if not 0 < port < 65536:
        raise SettingsError(f"{ALERT_SMTP_PORT} must be an integer port number, not {port}")
    raw_rate = env.get(ALERT_ERROR_RATE, "").strip()
    rate = DEFAULT_ERROR_RATE
    if raw_rate:
        try:
            rate = float(raw_rate)
        except ValueError:
            raise SettingsError(
                f"{ALERT_ERROR_RATE} must be a number between 0 and 1, not {raw_rate!r}"
            ) from None
        if not 0 <= rate <= 1:
            raise SettingsError(f"{ALERT_ERROR_RATE} must be between 0 and 1, not {raw_rate!r}")
    return AlertSettings(
        webhook_url=_text(env, ALERT_WEBHOOK_URL),
        smtp_host=_text(env, ALERT_SMTP_HOST),
        smtp_port=port,
        smtp_from=_text(env, ALERT_SMTP_FROM),
        smtp_to=_text(env, ALERT_SMTP_TO),
        smtp_username=_text(env, ALERT_SMTP_USERNAME),
        smtp_password=_text(env, ALERT_SMTP_PASSWORD),
        smtp_starttls=parse_bool(ALERT_SMTP_STARTTLS, env.get(ALERT_SMTP_STARTTLS, "")),
        error_rate=rate,
    )


def _local(env: Mapping[str, str]) -> LocalServiceSettings:
    services_dir = _text(env, SERVICES_DIR)
    extra = tuple(line for line in env.get(ES_EXTRA_SETTINGS, "").splitlines() if line.strip())
    return LocalServiceSettings(
        pg_port=_int(env, LOCAL_PG_PORT, DEFAULT_LOCAL_PG_PORT),
        es_port=_int(env, LOCAL_ES_PORT, DEFAULT_LOCAL_ES_PORT),
        es_version=_text(env, ES_VERSION) or DEFAULT_ES_VERSION,
        services_dir=(
            Path(services_dir).expanduser().absolute() if services_dir else PROJECT_ROOT / ".services"
        ),
        es_extra_settings=extra,
        pg_start_timeout=_int(env, PG_START_TIMEOUT, 60),
        es_start_timeout=_int(env, ES_START_TIMEOUT, 180),
    )


def memory_tuning_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """SYNC_PIPELINE_TUNE_MEMORY=0 leaves the process's allocators alone. Read on its own: the
    package applies it at import, where no other setting may fail the import."""
    env = os.environ if environ is None else environ
    return env.get(TUNE_MEMORY, "1").strip() != "0"


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from `environ` (default: the process environment), validated."""
    env = os.environ if environ is None else environ
    return Settings(
        pg_url=_text(env, PG_URL),
        es_url=_text(env, ES_URL),
        config_path=_config_path(env),
        staging_dir=Path(_text(env, STAGING_DIR) or ".staging"),
        dagster_url=(_text(env, DAGSTER_URL) or DEFAULT_DAGSTER_URL).rstrip("/"),
        dagster_pg_url=_text(env, DAGSTER_PG_URL),
        api_token=_text(env, API_TOKEN),
        tune_memory=memory_tuning_enabled(env),
        alerts=_alerts(env),
        local=_local(env),
    )
