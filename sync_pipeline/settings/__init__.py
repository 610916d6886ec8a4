"""Every SYNC_* environment variable, read in one place and validated once.

`load()` reads the environment when it is called (never at import), and
returns a frozen `Settings`; entry points (the CLI, the code location, the
Flask blueprint) call it once and pass what they need on.
A bad value is a `SettingsError` naming the variable. The Dagster resources
still receive secrets as `dg.EnvVar(<name>)`, so the names below are also
what the resources reference, and no secret is ever copied into the UI.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from sync_pipeline.settings.search import (
    AWS_REGION,
    AWS_SERVICE,
    AWS_SERVICES,
    ES_API_KEY,
    ES_BEARER_TOKEN,
    ES_CA_CERTS,
    ES_CLOUD_ID,
    ES_HTTP_COMPRESS,
    ES_PASSWORD,
    ES_REQUEST_TIMEOUT,
    ES_SSL_FINGERPRINT,
    ES_URL,
    ES_USERNAME,
    ES_VERIFY_CERTS,
    SEARCH_AUTH,
    SEARCH_BACKEND,
    SEARCH_BACKENDS,
    ElasticsearchOptions,
    _es_options,
    _es_url,
    cloud_id_url,
)
from sync_pipeline.settings.values import SettingsError, _choice, _int, _number, _text, parse_bool

__all__ = [
    "AWS_REGION",
    "AWS_SERVICE",
    "AWS_SERVICES",
    "ES_API_KEY",
    "ES_BEARER_TOKEN",
    "ES_CA_CERTS",
    "ES_CLOUD_ID",
    "ES_HTTP_COMPRESS",
    "ES_PASSWORD",
    "ES_REQUEST_TIMEOUT",
    "ES_SSL_FINGERPRINT",
    "ES_URL",
    "ES_USERNAME",
    "ES_VERIFY_CERTS",
    "SEARCH_AUTH",
    "SEARCH_BACKEND",
    "SEARCH_BACKENDS",
    "ElasticsearchOptions",
    "SettingsError",
    "cloud_id_url",
    "parse_bool",
]

PG_URL = "SYNC_PG_URL"
PG_PASSWORD = "SYNC_PG_PASSWORD"
PG_LOCK_TIMEOUT = "SYNC_PG_LOCK_TIMEOUT"
PG_LOCK_ATTEMPTS = "SYNC_PG_LOCK_ATTEMPTS"
PG_STATEMENT_TIMEOUT = "SYNC_PG_STATEMENT_TIMEOUT"
PG_IDLE_IN_TRANSACTION_TIMEOUT = "SYNC_PG_IDLE_IN_TRANSACTION_TIMEOUT"
# the variables whose values are credentials: never shown, passed to Dagster as EnvVars
SECRET_VARIABLES = (PG_URL, PG_PASSWORD, ES_API_KEY, ES_PASSWORD, ES_BEARER_TOKEN)
CONFIG = "SYNC_CONFIG"
STAGING_DIR = "SYNC_STAGING_DIR"
RETENTION_DAYS = "SYNC_RETENTION_DAYS"
DAGSTER_URL = "SYNC_DAGSTER_URL"
DAGSTER_PG_URL = "SYNC_DAGSTER_PG_URL"
API_TOKEN = "SYNC_API_TOKEN"
TUNE_MEMORY = "SYNC_PIPELINE_TUNE_MEMORY"
EXECUTOR = "SYNC_EXECUTOR"
CELERY_BROKER = "SYNC_CELERY_BROKER"
CELERY_BACKEND = "SYNC_CELERY_BACKEND"
LOG_FORMAT = "SYNC_LOG_FORMAT"
LOG_FORMATS = ("text", "json")  # json: one object per line (io/logs.py), for a log pipeline

ALERT_WEBHOOK_URL = "SYNC_ALERT_WEBHOOK_URL"
ALERT_SMTP_HOST = "SYNC_ALERT_SMTP_HOST"
ALERT_SMTP_PORT = "SYNC_ALERT_SMTP_PORT"
ALERT_SMTP_FROM = "SYNC_ALERT_SMTP_FROM"
ALERT_SMTP_TO = "SYNC_ALERT_SMTP_TO"
ALERT_SMTP_USERNAME = "SYNC_ALERT_SMTP_USERNAME"
ALERT_SMTP_PASSWORD = "SYNC_ALERT_SMTP_PASSWORD"
ALERT_SMTP_STARTTLS = "SYNC_ALERT_SMTP_STARTTLS"
ALERT_SMTP_CA_CERTS = "SYNC_ALERT_SMTP_CA_CERTS"
ALERT_ERROR_RATE = "SYNC_ALERT_ERROR_RATE"
# destinations delivered through Dagster's own integrations (the `alerts` extra)
ALERT_SLACK_TOKEN = "SYNC_ALERT_SLACK_TOKEN"
ALERT_SLACK_CHANNEL = "SYNC_ALERT_SLACK_CHANNEL"
ALERT_SLACK_API_URL = "SYNC_ALERT_SLACK_API_URL"
ALERT_PAGERDUTY_ROUTING_KEY = "SYNC_ALERT_PAGERDUTY_ROUTING_KEY"
ALERT_TEAMS_WEBHOOK_URL = "SYNC_ALERT_TEAMS_WEBHOOK_URL"

DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
DEFAULT_ERROR_RATE = 0.01


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
    smtp_ca_certs: str | None = None  # a PEM file, when the mail server's CA is not the system's
    error_rate: float = DEFAULT_ERROR_RATE
    slack_token: str | None = field(default=None, repr=False)
    slack_channel: str | None = None
    slack_api_url: str | None = None  # Slack's Web API unless set (a proxy, or a test's server)
    pagerduty_routing_key: str | None = field(default=None, repr=False)
    teams_webhook_url: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class LockSettings:
    """How long DDL in the user's database may wait for a table's lock (install, uninstall,
    REPLICA IDENTITY, the buffer's ALTERs, slot creation): while it waits, the application's
    writes to that table queue behind it, so the wait is short and retried, never unbounded."""

    timeout_seconds: float = 3.0
    attempts: int = 3  # each waits at most timeout_seconds; 1 s, 2 s, … apart
    backoff_seconds: float = 1.0


@dataclass(frozen=True)
class SessionLimits:
    """How long our sessions may hold a snapshot open. A whole-table read (verify, rebuild, the
    TRUNCATE reconcile) goes by key ranges, each one statement in a transaction of its own:
    `statement_seconds` bounds the read of one range (a batch of rows with their related
    rows). `idle_in_transaction_seconds` ends any transaction of ours left idle that long (a
    stuck process would hold back vacuum): above the longest wait inside one, a drain's bulk
    request with its retries (a spec's retry.max_total_seconds, 300 s by default)."""

    statement_seconds: float = 300.0
    idle_in_transaction_seconds: float = 900.0


@dataclass(frozen=True)
class Settings:
    pg_url: str | None = field(default=None, repr=False)
    es_url: str | None = field(default=None, repr=False)
    config_path: Path = Path("sync.yaml")
    staging_dir: Path = Path(".staging")
    retention_days: float = 30.0  # dead letters and staged files; 0: kept until purged by hand
    dagster_url: str = DEFAULT_DAGSTER_URL
    dagster_pg_url: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    tune_memory: bool = True
    es: ElasticsearchOptions = field(default_factory=ElasticsearchOptions)
    es_cloud_id: str | None = None  # when set, es_url is the HTTPS URL it stands for
    executor: str = "in_process"  # or "celery": each step on a Celery worker (docs/scaling.md)
    celery_broker: str | None = field(default=None, repr=False)
    celery_backend: str | None = field(default=None, repr=False)
    pg_password: str | None = field(default=None, repr=False)
    alerts: AlertSettings = AlertSettings()
    locks: LockSettings = LockSettings()
    sessions: SessionLimits = SessionLimits()
    log_format: str = "text"

    def require_pg_url(self) -> str:
        if not self.pg_url:
            raise SettingsError(
                f"{PG_URL} is not set: the PostgreSQL URL to sync from "
                "(or --local, for the checkout's dev services: python -m sync_pipeline_devtools --local …)"
            )
        return self.pg_url

    def require_es_url(self) -> str:
        if not self.es_url:
            raise SettingsError(
                f"{ES_URL} (or {ES_CLOUD_ID}) is not set: the Elasticsearch to sync to "
                "(or --local, for the checkout's dev services: python -m sync_pipeline_devtools --local …)"
            )
        return self.es_url


def with_password(url: str, password: str | None) -> str:
    """`url` with `password` in it when the URL carries none (SYNC_PG_PASSWORD beside a URL that
    names only the user); a URL's own password wins."""
    parts = urlsplit(url)
    if not password or parts.password is not None or not parts.username:
        return url
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _config_path(env: Mapping[str, str]) -> Path:
    """SYNC_CONFIG, else ./sync.yaml: never a file of the project's checkout (its demo spec would
    run against whatever servers are configured)."""
    if _text(env, CONFIG):
        return Path(env[CONFIG].strip())
    return Path("sync.yaml")


def _alerts(env: Mapping[str, str]) -> AlertSettings:
    port = _int(env, ALERT_SMTP_PORT, 25)
    if not 0 < port < 65536:
        raise SettingsError(f"{ALERT_SMTP_PORT} must be an integer port number, not {port}")
    rate = _number(env, ALERT_ERROR_RATE, DEFAULT_ERROR_RATE, 0, 1, "(a fraction)")
    starttls = parse_bool(ALERT_SMTP_STARTTLS, env.get(ALERT_SMTP_STARTTLS, ""))
    if _text(env, ALERT_SMTP_USERNAME) and not starttls and port != 465:
        raise SettingsError(
            f"{ALERT_SMTP_USERNAME} is set but the mail connection would not be encrypted: set "
            f"{ALERT_SMTP_STARTTLS}=true (or use port 465); credentials never travel in clear"
        )
    ca_certs = _text(env, ALERT_SMTP_CA_CERTS)
    if ca_certs and not Path(ca_certs).expanduser().is_file():
        raise SettingsError(f"{ALERT_SMTP_CA_CERTS}={ca_certs}: no such file (a PEM file with the CA)")
    _check_integrations(env)
    return AlertSettings(
        webhook_url=_text(env, ALERT_WEBHOOK_URL),
        smtp_host=_text(env, ALERT_SMTP_HOST),
        smtp_port=port,
        smtp_from=_text(env, ALERT_SMTP_FROM),
        smtp_to=_text(env, ALERT_SMTP_TO),
        smtp_username=_text(env, ALERT_SMTP_USERNAME),
        smtp_password=_text(env, ALERT_SMTP_PASSWORD),
        smtp_starttls=starttls,
        smtp_ca_certs=str(Path(ca_certs).expanduser().absolute()) if ca_certs else None,
        error_rate=rate,
        slack_token=_text(env, ALERT_SLACK_TOKEN),
        slack_channel=_text(env, ALERT_SLACK_CHANNEL),
        slack_api_url=_text(env, ALERT_SLACK_API_URL),
        pagerduty_routing_key=_text(env, ALERT_PAGERDUTY_ROUTING_KEY),
        teams_webhook_url=_text(env, ALERT_TEAMS_WEBHOOK_URL),
    )


# each integration destination: its variables, the Dagster integration package delivering it
_INTEGRATIONS = (
    ((ALERT_SLACK_TOKEN, ALERT_SLACK_CHANNEL), "dagster_slack"),
    ((ALERT_PAGERDUTY_ROUTING_KEY,), "dagster_pagerduty"),
    ((ALERT_TEAMS_WEBHOOK_URL,), "dagster_msteams"),
)


def _check_integrations(env: Mapping[str, str]) -> None:
    """Slack needs its token and its channel together; the URLs must be http(s) with a host; a
    destination set without its integration installed is an error now, not at the first alert."""
    token, channel = _text(env, ALERT_SLACK_TOKEN), _text(env, ALERT_SLACK_CHANNEL)
    if bool(token) != bool(channel):
        given, missing = sorted(
            (ALERT_SLACK_TOKEN, ALERT_SLACK_CHANNEL), key=lambda name: not _text(env, name)
        )
        raise SettingsError(f"{given} is set but {missing} is not set: Slack alerts need both")
    for name in (ALERT_SLACK_API_URL, ALERT_TEAMS_WEBHOOK_URL):
        url = _text(env, name)
        parts = urlsplit(url or "")
        if url and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise SettingsError(f"{name} must be an http:// or https:// URL with a host")
    for names, package in _INTEGRATIONS:
        given = [name for name in names if _text(env, name)]
        if given and importlib.util.find_spec(package) is None:
            extra = package.replace("_", "-")
            raise SettingsError(
                f"{given[0]} is set but {extra} is not installed: pip install 'sync-pipeline[alerts]'"
            )


def _locks(env: Mapping[str, str]) -> LockSettings:
    timeout = _number(env, PG_LOCK_TIMEOUT, LockSettings.timeout_seconds, 0, 600, "seconds")
    attempts = _int(env, PG_LOCK_ATTEMPTS, LockSettings.attempts)
    if not 1 <= attempts <= 20:
        raise SettingsError(f"{PG_LOCK_ATTEMPTS} must be between 1 and 20, not {attempts}")
    return LockSettings(timeout_seconds=timeout, attempts=attempts)


def session_limits(environ: Mapping[str, str] | None = None) -> SessionLimits:
    """Read on its own as well: io/postgres applies it to every session it opens."""
    env = os.environ if environ is None else environ
    defaults = SessionLimits()
    statement = _number(env, PG_STATEMENT_TIMEOUT, defaults.statement_seconds, 0, 86_400, "seconds")
    idle = _number(
        env, PG_IDLE_IN_TRANSACTION_TIMEOUT, defaults.idle_in_transaction_seconds, 0, 86_400, "seconds"
    )
    return SessionLimits(statement_seconds=statement, idle_in_transaction_seconds=idle)


def _executor(env: Mapping[str, str]) -> str:
    executor = (_text(env, EXECUTOR) or "in_process").lower()
    if executor not in ("in_process", "celery"):
        raise SettingsError(f"{EXECUTOR} must be in_process or celery, not {executor!r}")
    if executor == "celery" and not _text(env, CELERY_BROKER):
        raise SettingsError(f"{EXECUTOR}=celery needs {CELERY_BROKER} (e.g. redis://host:6379/0)")
    return executor


def memory_tuning_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """SYNC_PIPELINE_TUNE_MEMORY=0 leaves the process's allocators alone. Read on its own: the
    package applies it at import, where no other setting may fail the import."""
    env = os.environ if environ is None else environ
    return env.get(TUNE_MEMORY, "1").strip() != "0"


def log_format(environ: Mapping[str, str] | None = None) -> str:
    """SYNC_LOG_FORMAT: `text` (the default) or `json`. Read on its own as well: the CLI installs
    it before anything else can log, the code location's console logger when a run starts."""
    env = os.environ if environ is None else environ
    return _choice(env, LOG_FORMAT, LOG_FORMATS, "text")


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from `environ` (default: the process environment), validated."""
    env = os.environ if environ is None else environ
    pg_password = _text(env, PG_PASSWORD)
    pg_url = _text(env, PG_URL)
    return Settings(
        pg_url=with_password(pg_url, pg_password) if pg_url else None,
        pg_password=pg_password,
        es_url=_es_url(env),
        es_cloud_id=_text(env, ES_CLOUD_ID),
        executor=_executor(env),
        celery_broker=_text(env, CELERY_BROKER),
        celery_backend=_text(env, CELERY_BACKEND),
        es=_es_options(env),
        config_path=_config_path(env),
        staging_dir=Path(_text(env, STAGING_DIR) or ".staging"),
        retention_days=_number(env, RETENTION_DAYS, 30.0, 0, 36_500, "days"),
        dagster_url=(_text(env, DAGSTER_URL) or DEFAULT_DAGSTER_URL).rstrip("/"),
        dagster_pg_url=_text(env, DAGSTER_PG_URL),
        api_token=_text(env, API_TOKEN),
        tune_memory=memory_tuning_enabled(env),
        alerts=_alerts(env),
        locks=_locks(env),
        sessions=session_limits(env),
        log_format=log_format(env),
    )
