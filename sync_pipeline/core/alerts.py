"""Failure alerts: what went wrong, formatted once, delivered to a webhook and/or by email.

The core is plain Python (no Dagster): the `Alert` dataclass, its text and Slack
renderings, `redact`, the two channels (`send_webhook` over urllib, `send_email`
over smtplib) and the helpers sensors use to decide and build alerts
(`error_rate`, `exceeds_error_rate`, `alert_from_run_failure`, `alert_from_check`).
`AlertChannels` is the Dagster resource that fans one alert out to every
configured channel; `alert_channels_from_env()` builds it from SYNC_ALERT_* with
`dg.EnvVar`, so the webhook URL and SMTP password never show in the Dagster UI.

No message, log line or exception produced here carries a URL password: alert
titles and errors go through `redact`, and delivery errors name only the
scheme, host and port of their target.
"""

import base64
import http.client
import json
import os
import re
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import dagster as dg

ALERT_KINDS = ("run_failure", "check_failure", "error_rate")
SPEC_TAG = "sync_pipeline/spec"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
ERROR_RATE_ENV = "SYNC_ALERT_ERROR_RATE"
DEFAULT_ERROR_RATE = 0.01

MAX_ERROR_CHARS = 2000  # first_error in a message; Slack caps a section's text at 3000
_SLACK_HEADER_MAX = 150  # Slack's limit for a header block's plain_text

# scheme://user:password@ → scheme://user:***@ (RFC 3986 userinfo holds no unencoded / ? # @)
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*):[^/?#@\s]*@")
# password=…, token=… in libpq keyword strings and query strings
_KEY_SECRET = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|api_key|apikey)\s*=\s*)(?P<value>'[^']*'|[^\s&;,]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with URL passwords masked (`scheme://user:***@host`), and `password=…`-style values."""
    text = _URL_PASSWORD.sub(r"\g<head>:***@", text)
    return _KEY_SECRET.sub(r"\g<key>***", text)


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Alert:
    """One failure worth telling a human about. `title` and `first_error` are redacted on creation."""

    kind: str  # "run_failure" | "check_failure" | "error_rate"
    spec: str | None
    partition: str | None
    run_id: str
    counts: dict[str, int]
    first_error: str | None
    title: str

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"alert kind must be one of {', '.join(ALERT_KINDS)}, not {self.kind!r}")
        object.__setattr__(self, "title", redact(self.title))
        if self.first_error is not None:
            object.__setattr__(self, "first_error", redact(self.first_error))

    @property
    def subject(self) -> str:
        """A one-line subject for email."""
        return _one_line(f"[sync_pipeline] {self.title}", 200)

    def counts_text(self) -> str:
        return ", ".join(f"{k}={v:,}" for k, v in self.counts.items()) or "-"

    def text(self) -> str:
        """A readable multi-line message for logs and email bodies."""
        lines = [
            self.subject,
            f"kind:        {self.kind}",
            f"spec:        {self.spec or '-'}",
            f"partition:   {self.partition or '-'}",
            f"run id:      {self.run_id or '-'}",
            f"counts:      {self.counts_text()}",
        ]
        if self.first_error:
            lines.append("first error:")
            lines.extend(f"  {line}" for line in _truncate(self.first_error, MAX_ERROR_CHARS).splitlines())
        return "\n".join(lines)

    def slack_payload(self) -> dict[str, Any]:
        """Slack-compatible incoming-webhook JSON: a fallback `text` plus Block Kit `blocks`."""
        fallback = (
            f"{self.title} | spec {self.spec or '-'} | partition {self.partition or '-'}"
            f" | run {self.run_id or '-'} | {self.counts_text()}"
        )
        fields = [
            ("Spec", self.spec),
            ("Partition", self.partition),
            ("Run id", self.run_id),
            ("Kind", self.kind),
        ]
        blocks: list[dict[str, Any]] = [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": _one_line(self.title, _SLACK_HEADER_MAX)},
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{name}*\n{_slack_code(value) if value else '-'}"}
                    for name, value in fields
                ],
            },
        ]
        if self.counts:
            counts = "  ·  ".join(f"{_slack_escape(k)}: *{v:,}*" for k, v in self.counts.items())
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Counts*\n{counts}"}})
        if self.first_error:
            error = _slack_escape(_truncate(self.first_error, MAX_ERROR_CHARS)).replace("```", "'''")
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*First error*\n```{error}```"}}
            )
        return {"text": _truncate(fallback, 3000), "blocks": blocks}


def _slack_escape(text: str) -> str:
    """Slack mrkdwn needs only these three escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_code(text: str) -> str:
    return "`" + _slack_escape(_one_line(text, 500)).replace("`", "'") + "`"


# --- delivery -----------------------------------------------------------------------------------


class AlertDeliveryError(Exception):
    """An alert could not be delivered. The message names the channel and the target (scheme, host,
    port; never a password, path or query) and a redacted reason."""

    def __init__(self, channel: str, target: str, reason: str) -> None:
        self.channel = channel
        self.target = target
        self.reason = reason
        super().__init__(f"{channel} alert to {target} failed: {reason}")


def safe_target(url: str) -> str:
    """`scheme://host:port` of a URL: what may be shown of a webhook (Slack's secret is in the path)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "<unparseable url>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme or '?'}://{host}" + (f":{port}" if port else "")


def _reason(exc: BaseException, *secrets: str | None) -> str:
    return _scrub(f"{type(exc).__name__}: {exc}", *secrets)


def _scrub(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:  # shorter ones would mangle the text more than they hide
            text = text.replace(secret, "***")
    return redact(text)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following one would re-send the alert as a GET, or elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def send_webhook(url: str, alert: Alert, timeout: float = 10) -> None:
    """POST `alert.slack_payload()` as JSON to `url` (Slack, Mattermost, or any JSON receiver).

    Credentials in the URL (`https://user:pass@host/…`) are sent as HTTP basic auth. Anything but a
    2xx answer, a redirect included, raises `AlertDeliveryError`.
    """
    target = safe_target(url)
    try:
        parts = urlsplit(url)
        username, password = parts.username, parts.password
        hostport = parts.netloc.rpartition("@")[2]
    except ValueError as exc:
        raise AlertDeliveryError("webhook", target, f"invalid URL ({type(exc).__name__})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AlertDeliveryError("webhook", target, "the URL must be http:// or https:// with a host")
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "sync-pipeline-alerts"}
    if username is not None or password is not None:
        token = f"{username or ''}:{password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
    request = urllib.request.Request(
        urlunsplit(parts._replace(netloc=hostport)),
        data=json.dumps(alert.slack_payload()).encode("utf-8"),
        headers=headers,
        method="POST",
    )
    secrets = (url, parts.path if len(parts.path) > 1 else None, parts.query, password)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status = response.status
            response.read(65536)
    except urllib.error.HTTPError as exc:
        body = _read_quietly(exc)
        detail = f"HTTP {exc.code} {exc.reason}" + (f": {_one_line(body, 200)}" if body else "")
        raise AlertDeliveryError("webhook", target, _scrub(detail, *secrets)) from None
    # URLError (refused, DNS, TLS), timeouts, malformed answers
    except (OSError, ValueError, http.client.HTTPException) as exc:
        cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        reason = cause if isinstance(cause, BaseException) else Exception(str(cause))
        raise AlertDeliveryError("webhook", target, _reason(reason, *secrets)) from None
    if not 200 <= status < 300:
        raise AlertDeliveryError("webhook", target, f"HTTP {status}")


def _read_quietly(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read(2048).decode("utf-8", "replace")
    except Exception:
        return ""
    finally:
        exc.close()


def build_email(alert: Alert, sender: str, recipients: Sequence[str]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = alert.subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="sync-pipeline")
    message.set_content(alert.text() + "\n")
    return message


def send_email(
    alert: Alert,
    *,
    host: str,
    port: int,
    sender: str,
    recipients: list[str],
    username: str | None = None,
    password: str | None = None,
    starttls: bool = False,
    timeout: float = 10,
) -> None:
    """Send `alert` as a plain-text email over SMTP (optionally STARTTLS and login)."""
    target = f"smtp://{host}:{port}"
    recipients = [r.strip() for r in recipients if r and r.strip()]
    if not recipients:
        raise AlertDeliveryError("email", target, "no recipients")
    message = build_email(alert, sender, recipients)
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            smtp.ehlo()
            if starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if username:
                smtp.login(username, password or "")
            refused = smtp.send_message(message, from_addr=sender, to_addrs=recipients)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        raise AlertDeliveryError("email", target, _reason(exc, password)) from None
    if refused:  # some recipients refused, the others accepted
        raise AlertDeliveryError("email", target, f"recipients refused: {', '.join(sorted(refused))}")


# --- the Dagster resource -----------------------------------------------------------------------


class AlertLog(Protocol):
    """What `deliver` needs of a logger: `logging.Logger` and Dagster's `context.log` both fit."""

    def error(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


def split_recipients(value: str | None) -> list[str]:
    return [r.strip() for r in (value or "").split(",") if r.strip()]


class AlertChannels(dg.ConfigurableResource):
    """Where failure alerts go: a JSON webhook (Slack-compatible) and/or email. Unset → log only."""

    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "sync-pipeline@localhost"
    smtp_to: str | None = None  # comma-separated
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    timeout: float = 10.0

    def configured_channels(self) -> list[str]:
        """Names of the channels `deliver` will try: "webhook", "email"."""
        return [name for name, value in (("webhook", self.webhook_url), ("email", self.smtp_host)) if value]

    def resolved(self) -> "AlertChannels":
        """This resource with its `EnvVar` fields read from the environment.

        Dagster does this itself for resources handed to assets, sensors and hooks; call it (or let
        `deliver` call it) when the resource was built with `EnvVar`s and is used directly.
        """
        values = [getattr(self, name) for name in type(self).model_fields]
        if any(isinstance(v, dg.EnvVar) for v in values) or type(self.smtp_port) is not int:
            return self.process_config_and_initialize()
        return self

    def deliver(self, alert: Alert, log: AlertLog) -> list[str]:
        """Log the alert (error level), then send it to every configured channel.

        Returns the channels that accepted it. A failing channel is logged as a warning (redacted)
        and does not stop the others.
        """
        log.error(alert.text())
        try:
            channels = self.resolved()
        except Exception as exc:  # e.g. an EnvVar whose variable is gone: say so, keep the log line
            reason = _one_line(_reason(exc).split("Stack Trace:")[0], 500)
            log.warning(f"alert channels not usable, alert only logged: {reason}")
            return []
        delivered: list[str] = []
        for name in channels.configured_channels():
            try:
                if name == "webhook":
                    send_webhook(str(channels.webhook_url), alert, timeout=channels.timeout)
                else:
                    send_email(
                        alert,
                        host=str(channels.smtp_host),
                        port=channels.smtp_port,
                        sender=channels.smtp_from,
                        recipients=split_recipients(channels.smtp_to),
                        username=channels.smtp_username,
                        password=channels.smtp_password,
                        starttls=channels.smtp_starttls,
                        timeout=channels.timeout,
                    )
            except AlertDeliveryError as exc:
                log.warning(f"alert not delivered: {exc}")
                continue
            except Exception as exc:  # a bug in one channel must not silence the others
                secrets = (channels.webhook_url, channels.smtp_password)
                log.warning(f"alert not delivered by {name}: {_reason(exc, *secrets)}")
                continue
            delivered.append(name)
            log.info(f"alert '{alert.title}' delivered by {name}")
        return delivered


ENV_WEBHOOK_URL = "SYNC_ALERT_WEBHOOK_URL"
ENV_SMTP_HOST = "SYNC_ALERT_SMTP_HOST"
ENV_SMTP_PORT = "SYNC_ALERT_SMTP_PORT"
ENV_SMTP_FROM = "SYNC_ALERT_SMTP_FROM"
ENV_SMTP_TO = "SYNC_ALERT_SMTP_TO"
ENV_SMTP_USERNAME = "SYNC_ALERT_SMTP_USERNAME"
ENV_SMTP_PASSWORD = "SYNC_ALERT_SMTP_PASSWORD"
ENV_SMTP_STARTTLS = "SYNC_ALERT_SMTP_STARTTLS"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{name} must be one of {', '.join(sorted(_TRUE | _FALSE - {''}))}, not {value!r}")


def alert_channels_from_env() -> AlertChannels:
    """`AlertChannels` from SYNC_ALERT_*: an `EnvVar` for each variable that is set (read again when a
    run or sensor initialises the resource, and never shown in the UI), defaults for the rest.

    SYNC_ALERT_SMTP_PORT uses `EnvVar.int`. Dagster has no boolean EnvVar (`bool` cannot be
    subclassed), so SYNC_ALERT_SMTP_STARTTLS is read now: 1/true/yes/on or 0/false/no/off.
    """
    kwargs: dict[str, Any] = {}
    for field, name in (
        ("webhook_url", ENV_WEBHOOK_URL),
        ("smtp_host", ENV_SMTP_HOST),
        ("smtp_from", ENV_SMTP_FROM),
        ("smtp_to", ENV_SMTP_TO),
        ("smtp_username", ENV_SMTP_USERNAME),
        ("smtp_password", ENV_SMTP_PASSWORD),
    ):
        if os.environ.get(name):
            kwargs[field] = dg.EnvVar(name)
    if os.environ.get(ENV_SMTP_PORT):
        try:
            int(os.environ[ENV_SMTP_PORT])
        except ValueError:
            raise ValueError(f"{ENV_SMTP_PORT} must be an integer port number") from None
        kwargs["smtp_port"] = dg.EnvVar.int(ENV_SMTP_PORT)
    if os.environ.get(ENV_SMTP_STARTTLS) is not None:
        kwargs["smtp_starttls"] = parse_bool(ENV_SMTP_STARTTLS, os.environ[ENV_SMTP_STARTTLS])
    return AlertChannels(**kwargs)


# --- helpers for sensors ------------------------------------------------------------------------

SUCCESS_COUNTS = ("indexed", "deleted", "stale_skipped")
ERROR_COUNTS = ("failed", "dead_lettered")


def error_rate(indexed: int, failed: int, dead_lettered: int) -> float:
    """Share of documents that did not make it: (failed + dead_lettered) / all. 0.0 when nothing ran.

    `indexed` is every document Elasticsearch accepted (`exceeds_error_rate` passes indexed + deleted
    + stale_skipped, so a run of deletes with one failure is not a 100% error rate).
    """
    errors = failed + dead_lettered
    total = indexed + errors
    return errors / total if total > 0 else 0.0


def threshold_from_env() -> float:
    raw = os.environ.get(ERROR_RATE_ENV, "").strip()
    if not raw:
        return DEFAULT_ERROR_RATE
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ERROR_RATE_ENV} must be a number between 0 and 1, not {raw!r}") from None
    if not 0 <= value <= 1:
        raise ValueError(f"{ERROR_RATE_ENV} must be between 0 and 1, not {raw!r}")
    return value


def exceeds_error_rate(counts: Mapping[str, Any], threshold: float | None = None) -> bool:
    """True when the error rate of `counts` (load totals: indexed, deleted, stale_skipped, failed,
    dead_lettered; missing keys are 0) is above `threshold` (default: $SYNC_ALERT_ERROR_RATE or 0.01).
    """
    if threshold is None:
        threshold = threshold_from_env()

    def count(key: str) -> int:
        return int(_numeric(counts.get(key)) or 0)

    rate = error_rate(sum(map(count, SUCCESS_COUNTS)), count("failed"), count("dead_lettered"))
    return rate > threshold


def _numeric(value: Any) -> int | float | None:
    """An int/float, or a Dagster metadata value wrapping one; bools and everything else → None."""
    if hasattr(value, "value") and not isinstance(value, int | float):
        value = value.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _partition_from_tags(tags: Mapping[str, str]) -> str | None:
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}…{end}"
    return start or end or None


def alert_from_run_failure(
    run_id: str,
    job_name: str,
    tags: Mapping[str, str],
    error_message: str | None,
    counts: Mapping[str, int],
) -> Alert:
    """An alert for a failed run: spec from the `sync_pipeline/spec` tag, partition from
    `dagster/partition` or the range tags (`start…end`)."""
    spec = tags.get(SPEC_TAG) or None
    partition = _partition_from_tags(tags)
    where = " ".join(part for part in (spec, partition) if part)
    return Alert(
        kind="run_failure",
        spec=spec,
        partition=partition,
        run_id=run_id,
        counts={k: int(v) for k, v in counts.items()},
        first_error=error_message or None,
        title=f"Run of {job_name} failed" + (f" ({where})" if where else ""),
    )


def _first_error_from_metadata(metadata: Mapping[str, Any]) -> str | None:
    for key in ("first_error", "error"):
        value = metadata.get(key)
        value = getattr(value, "value", value)
        if value:
            return value if isinstance(value, str) else json.dumps(value, default=str)
    errors = metadata.get("first_errors")
    errors = getattr(errors, "data", getattr(errors, "value", errors))
    if isinstance(errors, str):
        try:
            errors = json.loads(errors)
        except ValueError:
            return errors or None
    if isinstance(errors, list | tuple) and errors:
        first = errors[0]
        return first if isinstance(first, str) else json.dumps(first, default=str)
    return None


def alert_from_check(
    run_id: str,
    asset_key: str,
    check_name: str,
    partition: str | None,
    metadata: Mapping[str, Any],
    spec: str | None,
) -> Alert:
    """An alert for a failed asset check. Counts are the check's integer metadata values (plain or
    Dagster `MetadataValue`s); the first error comes from `first_error`, `error` or `first_errors`."""
    counts = {}
    for key, value in metadata.items():
        number = _numeric(value)
        if isinstance(number, int):
            counts[key] = number
    where = " ".join(part for part in (spec, partition) if part)
    return Alert(
        kind="check_failure",
        spec=spec,
        partition=partition,
        run_id=run_id,
        counts=counts,
        first_error=_first_error_from_metadata(metadata),
        title=f"Check {check_name} failed on {asset_key}" + (f" ({where})" if where else ""),
    )
