"""Alert delivery: a JSON webhook (`send_webhook`, over urllib) and email (`send_email`, over smtplib).

Both raise `AlertDeliveryError` when an alert does not get through. No message or exception
produced here carries a secret: delivery errors name only the scheme, host and port of their
target (`safe_target`), and reasons are `scrub`bed of the URL, its path and query, and passwords.
"""

from __future__ import annotations

import base64
import http.client
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit, urlunsplit

from sync_pipeline.core.report.failure_alerts import Alert, one_line
from sync_pipeline.core.report.redact import safe_target, scrub


class AlertDeliveryError(Exception):
    """An alert could not be delivered. The message names the channel and the target (scheme, host,
    port; never a password, path or query) and a redacted reason."""

    def __init__(self, channel: str, target: str, reason: str) -> None:
        self.channel = channel
        self.target = target
        self.reason = reason
        super().__init__(f"{channel} alert to {target} failed: {reason}")


def failure_reason(exc: BaseException, *secrets: str | None) -> str:
    """`Type: message` of an exception, with `secrets` masked and the rest redacted."""
    return scrub(f"{type(exc).__name__}: {exc}", *secrets)


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
        detail = f"HTTP {exc.code} {exc.reason}" + (f": {one_line(body, 200)}" if body else "")
        raise AlertDeliveryError("webhook", target, scrub(detail, *secrets)) from None
    # URLError (refused, DNS, TLS), timeouts, malformed answers
    except (OSError, ValueError, http.client.HTTPException) as exc:
        cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        reason = cause if isinstance(cause, BaseException) else Exception(str(cause))
        raise AlertDeliveryError("webhook", target, failure_reason(reason, *secrets)) from None
    if not 200 <= status < 300:
        raise AlertDeliveryError("webhook", target, f"HTTP {status}")


def _read_quietly(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read(2048).decode("utf-8", "replace")
    except Exception:
        return ""
    finally:
        exc.close()


def split_recipients(value: str | None) -> list[str]:
    """`a@x, b@y` → `["a@x", "b@y"]` (blanks dropped)."""
    return [r.strip() for r in (value or "").split(",") if r.strip()]


def build_email(alert: Alert, sender: str, recipients: Sequence[str]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = alert.subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="sync-pipeline")
    message.set_content(alert.text() + "\n")
    return message


SMTPS_PORT = 465  # SMTP over implicit TLS
UNENCRYPTED_LOGIN = (
    "refusing to send SMTP credentials over an unencrypted connection: set "
    "SYNC_ALERT_SMTP_STARTTLS=true (or use port 465)"
)


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
    ca_certs: str | None = None,
    timeout: float = 10,
) -> None:
    """Send `alert` as a plain-text email over SMTP: STARTTLS when asked, implicit TLS on port
    465, and a login only over one of those (credentials never cross the network in clear)."""
    target = f"smtp://{host}:{port}"
    recipients = [r.strip() for r in recipients if r and r.strip()]
    if not recipients:
        raise AlertDeliveryError("email", target, "no recipients")
    implicit_tls = port == SMTPS_PORT
    if username and not (starttls or implicit_tls):
        raise AlertDeliveryError("email", target, UNENCRYPTED_LOGIN)
    message = build_email(alert, sender, recipients)
    context = ssl.create_default_context(cafile=ca_certs)
    try:
        connection = (
            smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
            if implicit_tls
            else smtplib.SMTP(host, port, timeout=timeout)
        )
        with connection as smtp:
            smtp.ehlo()
            if starttls and not implicit_tls:
                smtp.starttls(context=context)
                smtp.ehlo()
            if username:
                smtp.login(username, password or "")
            refused = smtp.send_message(message, from_addr=sender, to_addrs=recipients)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        raise AlertDeliveryError("email", target, failure_reason(exc, password)) from None
    if refused:  # some recipients refused, the others accepted
        raise AlertDeliveryError("email", target, f"recipients refused: {', '.join(sorted(refused))}")
