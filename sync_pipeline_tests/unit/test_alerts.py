"""Failure alerts: formatting, redaction, and delivery to real local receivers (HTTP and SMTP)."""

import base64
import email
import email.policy
import json
import logging
import socket
import socketserver
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import dagster as dg
import pytest

from sync_pipeline import settings
from sync_pipeline.core.report.failure_alerts import (
    Alert,
    alert_from_check,
    alert_from_run_failure,
    error_rate,
    exceeds_error_rate,
)
from sync_pipeline.core.report.redact import redact
from sync_pipeline.defs.alerts import AlertChannels, alert_channels, alerts_for_finished_run
from sync_pipeline.io.notify import AlertDeliveryError, send_email, send_webhook
from sync_pipeline_tests.support.alerts import (
    HttpReceiver,
)

SECRET = "hunter2"


def make_alert(**overrides) -> Alert:
    values = dict(
        kind="run_failure",
        spec="products",
        partition="2026-10-05",
        run_id="run-1234abcd",
        counts={"indexed": 4990, "failed": 7, "dead_lettered": 3},
        first_error=f"could not connect to postgresql://sync:{SECRET}@db.internal:5432/shop",
        title="Run of products_sync failed",
    )
    values.update(overrides)
    return Alert(**values)


@dataclass
class SmtpSink:
    server: socketserver.ThreadingTCPServer
    messages: list[dict] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    accept_login: bool = True
    tls: ssl.SSLContext | None = None  # offers STARTTLS when set
    ca_file: str | None = None  # the CA a client trusts the sink's certificate by

    @property
    def port(self) -> int:
        return self.server.server_address[1]


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib: EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, QUIT."""

    timeout = 10

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        sink: SmtpSink = self.server.sink  # type: ignore[attr-defined]
        sender, recipients = None, []
        self.reply("220 sink.test ESMTP ready")
        while line := self.rfile.readline():
            command = line.decode().rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250-sink.test")
                if sink.tls is not None:
                    self.reply("250-STARTTLS")
                self.reply("250 AUTH PLAIN")
            elif verb == "STARTTLS" and sink.tls is not None:
                self.reply("220 go ahead")
                self.connection = sink.tls.wrap_socket(self.connection, server_side=True)
                self.rfile = self.connection.makefile("rb")
                self.wfile = self.connection.makefile("wb", buffering=0)
            elif verb == "HELO":
                self.reply("250 sink.test")
            elif verb == "AUTH":
                _, _mechanism, payload = command.split(" ", 2)
                _, user, password = base64.b64decode(payload).decode().split("\0")
                sink.logins.append((user, password))
                self.reply("235 ok" if sink.accept_login else "535 5.7.8 authentication failed")
            elif verb == "MAIL":
                sender, recipients = command.split(":", 1)[1].strip().strip("<>"), []
                self.reply("250 ok")
            elif verb == "RCPT":
                recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                data = bytearray()
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                sink.messages.append(
                    {
                        "sender": sender,
                        "recipients": recipients,
                        "message": email.message_from_bytes(bytes(data), policy=email.policy.default),
                        "raw": bytes(data),
                    }
                )
                self.reply("250 queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 ok")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 command not implemented")


@pytest.fixture()
def smtp_sink() -> Iterator[SmtpSink]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
    server.daemon_threads = True
    sink = SmtpSink(server)
    server.sink = sink  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield sink
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture()
def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture()
def captured() -> Iterator[tuple[logging.Logger, Capture]]:
    logger = logging.getLogger(f"test_alerts.{uuid.uuid4().hex}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = Capture()
    logger.addHandler(handler)
    yield logger, handler
    logger.removeHandler(handler)


# --- formatting and redaction -------------------------------------------------------------------


def test_redact_masks_url_passwords_and_keeps_the_rest():
    assert redact(f"postgresql://sync:{SECRET}@h/db") == "postgresql://sync:***@h/db"
    assert redact(f"a https://u:{SECRET}@es:9200/x b") == "a https://u:***@es:9200/x b"
    assert redact(f"host=db password={SECRET} user=sync") == "host=db password=*** user=sync"
    # no userinfo: untouched, even with ':' and '@' further on
    for clean in ("http://127.0.0.1:9200/_bulk", "https://h:8080/x?to=a@b", "plain text: a@b"):
        assert redact(clean) == clean


def test_alert_text_and_payload_never_contain_the_url_password():
    alert = make_alert(title=f"Run failed against postgresql://sync:{SECRET}@h/db")
    assert SECRET not in alert.first_error and SECRET not in alert.title
    assert SECRET not in alert.text()
    assert SECRET not in json.dumps(alert.slack_payload())
    assert "postgresql://sync:***@db.internal:5432/shop" in alert.text()


def test_alert_text_lists_spec_partition_run_counts_and_first_error():
    text = make_alert().text()
    assert text.splitlines()[0] == "[sync_pipeline] Run of products_sync failed"
    for expected in (
        "products",
        "2026-10-05",
        "run-1234abcd",
        "indexed=4,990",
        "failed=7",
        "dead_lettered=3",
    ):
        assert expected in text
    assert "could not connect to" in text


def test_alert_rejects_unknown_kind():
    with pytest.raises(ValueError, match="alert kind"):
        make_alert(kind="oops")


def assert_slack_shaped(payload: dict) -> None:
    assert isinstance(payload["text"], str) and payload["text"]
    assert isinstance(payload["blocks"], list) and payload["blocks"]
    header = payload["blocks"][0]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert len(header["text"]["text"]) <= 150
    for block in payload["blocks"][1:]:
        assert block["type"] == "section"
        if "fields" in block:
            assert len(block["fields"]) <= 10
            assert all(f["type"] == "mrkdwn" and len(f["text"]) <= 2000 for f in block["fields"])
        else:
            assert block["text"]["type"] == "mrkdwn" and len(block["text"]["text"]) <= 3000


def test_slack_payload_is_block_kit_shaped_and_bounded():
    long_error = "<boom> & " + "x" * 10_000
    payload = make_alert(title="T" * 400, first_error=long_error).slack_payload()
    assert_slack_shaped(payload)
    body = json.dumps(payload)
    assert "&lt;boom&gt; &amp;" in body  # mrkdwn escaping


# --- webhook ------------------------------------------------------------------------------------


def test_send_webhook_posts_slack_json_with_spec_run_counts_and_error(http_receiver: HttpReceiver):
    send_webhook(f"{http_receiver.base}/services/T000/B000/XXXX", make_alert())
    [request] = http_receiver.requests
    assert request["path"] == "/services/T000/B000/XXXX"
    assert request["headers"]["Content-Type"].startswith("application/json")
    payload = json.loads(request["body"])
    assert_slack_shaped(payload)
    body = json.dumps(payload)
    for expected in ("products", "2026-10-05", "run-1234abcd", "4,990", "dead_lettered", "could not connect"):
        assert expected in body
    assert SECRET not in body


def test_send_webhook_sends_url_credentials_as_basic_auth(http_receiver: HttpReceiver):
    url = http_receiver.base.replace("http://", f"http://alerts:{SECRET}@") + "/hook"
    send_webhook(url, make_alert())
    [request] = http_receiver.requests
    expected = base64.b64encode(f"alerts:{SECRET}".encode()).decode()
    assert request["headers"]["Authorization"] == f"Basic {expected}"


def test_webhook_error_status_raises_naming_host_without_secrets(http_receiver: HttpReceiver):
    http_receiver.status = 500
    url = http_receiver.base.replace("http://", f"http://alerts:{SECRET}@") + "/hooks/tok3n?key=abc123"
    with pytest.raises(AlertDeliveryError) as raised:
        send_webhook(url, make_alert())
    message = str(raised.value)
    assert raised.value.channel == "webhook"
    assert "127.0.0.1" in message and "500" in message
    for secret in (SECRET, "tok3n", "abc123", "alerts:"):
        assert secret not in message


def test_webhook_redirect_is_a_failure_not_a_resend(http_receiver: HttpReceiver):
    http_receiver.status = 302
    with pytest.raises(AlertDeliveryError, match="HTTP 302"):
        send_webhook(f"{http_receiver.base}/hook", make_alert())
    assert [r["path"] for r in http_receiver.requests] == ["/hook"]


def test_webhook_to_a_silent_server_times_out():
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with pytest.raises(AlertDeliveryError, match="timed out"):
            send_webhook(f"http://127.0.0.1:{port}/hook", make_alert(), timeout=0.5)


def test_webhook_to_closed_port_raises_delivery_error(closed_port: int):
    with pytest.raises(AlertDeliveryError, match=rf"webhook alert to http://127\.0\.0\.1:{closed_port}"):
        send_webhook(f"http://127.0.0.1:{closed_port}/hook", make_alert(), timeout=2)


def test_webhook_rejects_non_http_urls():
    with pytest.raises(AlertDeliveryError, match="http:// or https://"):
        send_webhook("file:///etc/passwd", make_alert())


# --- email --------------------------------------------------------------------------------------


def test_send_email_delivers_subject_and_body_to_every_recipient(smtp_sink: SmtpSink):
    send_email(
        make_alert(),
        host="127.0.0.1",
        port=smtp_sink.port,
        sender="sync@example.test",
        recipients=["ops@example.test", "oncall@example.test"],
    )
    [sent] = smtp_sink.messages
    assert sent["sender"] == "sync@example.test"
    assert sent["recipients"] == ["ops@example.test", "oncall@example.test"]
    message = sent["message"]
    assert message["Subject"] == "[sync_pipeline] Run of products_sync failed"
    assert message["To"] == "ops@example.test, oncall@example.test"
    body = message.get_content()
    for expected in ("products", "2026-10-05", "run-1234abcd", "indexed=4,990", "failed=7"):
        assert expected in body
    assert SECRET.encode() not in sent["raw"]


@pytest.fixture()
def tls_sink(smtp_sink: SmtpSink, tmp_path) -> SmtpSink:
    """The sink with STARTTLS: a self-signed certificate for 127.0.0.1, trusted as its own CA."""
    cert, key = tmp_path / "sink.crt", tmp_path / "sink.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    smtp_sink.tls, smtp_sink.ca_file = context, str(cert)
    return smtp_sink


def test_send_email_logs_in_over_starttls_when_credentials_are_given(tls_sink: SmtpSink):
    send_email(
        make_alert(),
        host="127.0.0.1",
        port=tls_sink.port,
        sender="sync@example.test",
        recipients=["ops@example.test"],
        username="mailer",
        password="s3cret-pw",
        starttls=True,
        ca_certs=tls_sink.ca_file,
    )
    assert tls_sink.logins == [("mailer", "s3cret-pw")]
    assert len(tls_sink.messages) == 1


def test_credentials_are_never_sent_over_an_unencrypted_connection(smtp_sink: SmtpSink):
    with pytest.raises(AlertDeliveryError, match="unencrypted"):
        send_email(
            make_alert(),
            host="127.0.0.1",
            port=smtp_sink.port,
            sender="sync@example.test",
            recipients=["ops@example.test"],
            username="mailer",
            password="s3cret-pw",
        )
    assert smtp_sink.logins == [] and smtp_sink.messages == []


def test_settings_refuse_smtp_credentials_without_tls():
    with pytest.raises(settings.SettingsError, match="SYNC_ALERT_SMTP_STARTTLS=true"):
        settings.load(
            {"SYNC_ALERT_SMTP_HOST": "mail", "SYNC_ALERT_SMTP_USERNAME": "u", "SYNC_ALERT_SMTP_PASSWORD": "p"}
        )
    assert settings.load(
        {"SYNC_ALERT_SMTP_USERNAME": "u", "SYNC_ALERT_SMTP_STARTTLS": "true"}
    ).alerts.smtp_starttls
    assert (
        settings.load({"SYNC_ALERT_SMTP_USERNAME": "u", "SYNC_ALERT_SMTP_PORT": "465"}).alerts.smtp_port
        == 465
    )


def test_email_login_rejected_raises_without_the_password(smtp_sink: SmtpSink):
    smtp_sink.accept_login = False
    with pytest.raises(AlertDeliveryError) as raised:
        send_email(
            make_alert(),
            host="127.0.0.1",
            port=smtp_sink.port,
            sender="sync@example.test",
            recipients=["ops@example.test"],
            username="mailer",
            password="s3cret-pw",
        )
    assert raised.value.channel == "email"
    assert f"127.0.0.1:{smtp_sink.port}" in str(raised.value)
    assert "s3cret-pw" not in str(raised.value)
    assert smtp_sink.messages == []


def test_email_starttls_against_a_server_without_it_fails_clearly(smtp_sink: SmtpSink):
    with pytest.raises(AlertDeliveryError, match="STARTTLS"):
        send_email(
            make_alert(),
            host="127.0.0.1",
            port=smtp_sink.port,
            sender="s@example.test",
            recipients=["r@example.test"],
            starttls=True,
        )


def test_email_without_recipients_is_a_delivery_error():
    with pytest.raises(AlertDeliveryError, match="no recipients"):
        send_email(make_alert(), host="127.0.0.1", port=25, sender="s@example.test", recipients=[" "])


# --- the resource -------------------------------------------------------------------------------


def test_deliver_sends_to_webhook_and_email(http_receiver, smtp_sink, captured):
    logger, records = captured
    channels = AlertChannels(
        webhook_url=f"{http_receiver.base}/hook",
        smtp_host="127.0.0.1",
        smtp_port=smtp_sink.port,
        smtp_to="ops@example.test, oncall@example.test",
    )
    assert channels.deliver(make_alert(), logger) == ["webhook", "email"]
    assert len(http_receiver.requests) == 1
    [sent] = smtp_sink.messages
    assert sent["recipients"] == ["ops@example.test", "oncall@example.test"]
    assert sent["sender"] == "sync-pipeline@localhost"
    [logged] = records.at(logging.ERROR)
    assert "run-1234abcd" in logged and SECRET not in logged


def test_deliver_continues_to_email_when_the_webhook_is_down(smtp_sink, closed_port, captured):
    logger, records = captured
    channels = AlertChannels(
        webhook_url=f"http://hook:{SECRET}@127.0.0.1:{closed_port}/hook",
        smtp_host="127.0.0.1",
        smtp_port=smtp_sink.port,
        smtp_to="ops@example.test",
    )
    assert channels.deliver(make_alert(), logger) == ["email"]
    assert len(smtp_sink.messages) == 1
    [warning] = records.at(logging.WARNING)
    assert "webhook" in warning and f"127.0.0.1:{closed_port}" in warning
    assert all(SECRET not in r.getMessage() for r in records.records)


def test_deliver_without_channels_only_logs(captured):
    logger, records = captured
    assert AlertChannels().deliver(make_alert(), logger) == []
    assert len(records.at(logging.ERROR)) == 1
    assert records.at(logging.WARNING) == []


@pytest.fixture()
def alert_env(monkeypatch: pytest.MonkeyPatch):
    for name in (
        "SYNC_ALERT_WEBHOOK_URL",
        "SYNC_ALERT_SMTP_HOST",
        "SYNC_ALERT_SMTP_PORT",
        "SYNC_ALERT_SMTP_FROM",
        "SYNC_ALERT_SMTP_TO",
        "SYNC_ALERT_SMTP_USERNAME",
        "SYNC_ALERT_SMTP_PASSWORD",
        "SYNC_ALERT_SMTP_STARTTLS",
        "SYNC_ALERT_SMTP_CA_CERTS",
        "SYNC_ALERT_ERROR_RATE",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def alert_channels_from_env() -> AlertChannels:
    """What the code location builds: the channels for the settings of the current environment."""
    return alert_channels(settings.load().alerts)


def test_channels_from_env_use_envvars_that_resolve_at_initialisation(alert_env):
    alert_env.setenv("SYNC_ALERT_WEBHOOK_URL", f"https://u:{SECRET}@hooks.example.test/T/B/X")
    alert_env.setenv("SYNC_ALERT_SMTP_HOST", "mail.example.test")
    alert_env.setenv("SYNC_ALERT_SMTP_PORT", "2525")
    alert_env.setenv("SYNC_ALERT_SMTP_FROM", "sync@example.test")
    alert_env.setenv("SYNC_ALERT_SMTP_TO", "a@example.test,b@example.test")
    alert_env.setenv("SYNC_ALERT_SMTP_USERNAME", "mailer")
    alert_env.setenv("SYNC_ALERT_SMTP_PASSWORD", SECRET)
    alert_env.setenv("SYNC_ALERT_SMTP_STARTTLS", "true")
    channels = alert_channels_from_env()
    # unresolved: EnvVars (names, not values), so the UI never shows the secrets
    assert isinstance(channels.webhook_url, dg.EnvVar)
    assert isinstance(channels.smtp_password, dg.EnvVar)
    assert SECRET not in repr(channels)
    resolved = channels.process_config_and_initialize()
    assert resolved.webhook_url == f"https://u:{SECRET}@hooks.example.test/T/B/X"
    assert resolved.smtp_host == "mail.example.test"
    assert resolved.smtp_port == 2525 and type(resolved.smtp_port) is int
    assert resolved.smtp_from == "sync@example.test"
    assert resolved.smtp_to == "a@example.test,b@example.test"
    assert (resolved.smtp_username, resolved.smtp_password) == ("mailer", SECRET)
    assert resolved.smtp_starttls is True
    assert channels.resolved().smtp_port == 2525


def test_channels_from_env_default_when_unset(alert_env):
    channels = alert_channels_from_env()
    assert channels.configured_channels() == []
    assert (channels.smtp_port, channels.smtp_from, channels.smtp_starttls) == (
        25,
        "sync-pipeline@localhost",
        False,
    )


def test_channels_from_env_reject_bad_port_and_starttls(alert_env):
    alert_env.setenv("SYNC_ALERT_SMTP_PORT", "smtp")
    with pytest.raises(ValueError, match="SYNC_ALERT_SMTP_PORT"):
        alert_channels_from_env()
    alert_env.setenv("SYNC_ALERT_SMTP_PORT", "25")
    alert_env.setenv("SYNC_ALERT_SMTP_STARTTLS", "maybe")
    with pytest.raises(ValueError, match="SYNC_ALERT_SMTP_STARTTLS"):
        alert_channels_from_env()


def test_deliver_resolves_env_channels_used_outside_dagster(alert_env, http_receiver, smtp_sink, captured):
    logger, _ = captured
    alert_env.setenv("SYNC_ALERT_WEBHOOK_URL", f"{http_receiver.base}/hook")
    alert_env.setenv("SYNC_ALERT_SMTP_HOST", "127.0.0.1")
    alert_env.setenv("SYNC_ALERT_SMTP_PORT", str(smtp_sink.port))
    alert_env.setenv("SYNC_ALERT_SMTP_TO", "ops@example.test")
    assert alert_channels_from_env().deliver(make_alert(), logger) == ["webhook", "email"]
    assert len(http_receiver.requests) == 1 and len(smtp_sink.messages) == 1


def test_deliver_with_an_env_var_gone_since_build_logs_and_returns_nothing(alert_env, captured):
    logger, records = captured
    alert_env.setenv("SYNC_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    channels = alert_channels_from_env()
    alert_env.delenv("SYNC_ALERT_WEBHOOK_URL")
    assert channels.deliver(make_alert(), logger) == []
    assert len(records.at(logging.ERROR)) == 1
    [warning] = records.at(logging.WARNING)
    assert "not usable" in warning and "SYNC_ALERT_WEBHOOK_URL" in warning


def test_env_channels_work_as_a_resource_in_a_dagster_run(alert_env, http_receiver):
    alert_env.setenv("SYNC_ALERT_WEBHOOK_URL", f"{http_receiver.base}/hook")

    @dg.asset
    def failing_thing(context: dg.AssetExecutionContext, alerts: AlertChannels) -> None:
        delivered = alerts.deliver(make_alert(run_id=context.run.run_id), context.log)
        assert delivered == ["webhook"]

    result = dg.materialize([failing_thing], resources={"alerts": alert_channels_from_env()})
    assert result.success
    [request] = http_receiver.requests
    assert result.run_id in request["body"].decode()


# --- helpers for sensors ------------------------------------------------------------------------


def test_error_rate_is_errors_over_all_documents():
    assert error_rate(990, 7, 3) == pytest.approx(0.01)
    assert error_rate(0, 0, 0) == 0.0
    assert error_rate(0, 2, 0) == 1.0


def test_exceeds_error_rate_counts_deletes_and_stale_as_successes():
    assert not exceeds_error_rate({"indexed": 990, "failed": 10}, threshold=0.01)  # exactly 1%
    assert exceeds_error_rate({"indexed": 989, "failed": 11}, threshold=0.01)
    assert not exceeds_error_rate({"deleted": 500, "stale_skipped": 499, "dead_lettered": 1}, threshold=0.01)
    assert not exceeds_error_rate({}, threshold=0.0)
    assert exceeds_error_rate({"indexed": 10_000, "dead_lettered": 1}, threshold=0.0)


def test_error_rate_threshold_defaults_from_env(alert_env):
    @dg.asset(name="rated_index")
    def rated_index() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"indexed": 95, "failed": 5})  # 5%

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([rated_index], instance=instance)
    run = instance.get_run_by_id(result.run_id)

    # the threshold the quality sensor applies: SYNC_ALERT_ERROR_RATE, read when it evaluates
    [alert] = alerts_for_finished_run(instance, run)  # default 1%
    assert alert.kind == "error_rate" and alert.title.startswith("Error rate 5.0% in ")
    assert exceeds_error_rate({"indexed": 95, "failed": 5}, settings.load().alerts.error_rate)
    alert_env.setenv("SYNC_ALERT_ERROR_RATE", "0.10")
    assert alerts_for_finished_run(instance, run) == []
    assert not exceeds_error_rate({"indexed": 95, "failed": 5}, settings.load().alerts.error_rate)
    assert len(alerts_for_finished_run(instance, run, threshold=0.01)) == 1  # or passed in
    alert_env.setenv("SYNC_ALERT_ERROR_RATE", "lots")
    with pytest.raises(ValueError, match="SYNC_ALERT_ERROR_RATE"):
        alerts_for_finished_run(instance, run)


def test_alert_from_run_failure_takes_spec_and_partition_from_tags():
    alert = alert_from_run_failure(
        "r1",
        "products_sync",
        {"sync_pipeline/spec": "products", "dagster/partition": "2026-10-05"},
        f"boom at postgresql://sync:{SECRET}@h/db",
        {"indexed": 5, "failed": 1},
    )
    assert (alert.kind, alert.spec, alert.partition, alert.run_id) == (
        "run_failure",
        "products",
        "2026-10-05",
        "r1",
    )
    assert alert.counts == {"indexed": 5, "failed": 1}
    assert alert.first_error == "boom at postgresql://sync:***@h/db"
    assert "products_sync" in alert.title and "2026-10-05" in alert.title


def test_alert_from_run_failure_formats_a_partition_range():
    tags = {
        "sync_pipeline/spec": "products",
        "dagster/asset_partition_range_start": "2026-10-01",
        "dagster/asset_partition_range_end": "2026-10-07",
    }
    alert = alert_from_run_failure("r2", "products_sync", tags, None, {})
    assert alert.partition == "2026-10-01…2026-10-07"
    assert alert.first_error is None
    untagged = alert_from_run_failure("r3", "other_job", {}, "x", {})
    assert (untagged.spec, untagged.partition) == (None, None)


def test_alert_from_check_counts_integer_metadata_and_finds_first_error():
    metadata = {
        "dead_lettered": dg.MetadataValue.int(3),
        "failed": 0,
        "seconds": 1.5,
        "passed_flag": True,
        "hint": "run verify",
        "first_errors": dg.MetadataValue.json([{"type": "mapper_parsing_exception", "reason": "bad"}]),
    }
    alert = alert_from_check(
        "r4", "products_index", "no_dead_letters", "2026-10-05", metadata, spec="products"
    )
    assert alert.kind == "check_failure"
    assert alert.counts == {"dead_lettered": 3, "failed": 0}
    assert "mapper_parsing_exception" in alert.first_error
    assert "no_dead_letters" in alert.title and "products_index" in alert.title
    assert (alert.spec, alert.partition, alert.run_id) == ("products", "2026-10-05", "r4")


def test_alert_from_check_without_errors_has_no_first_error():
    alert = alert_from_check(
        "r5", "products_index", "window_matches_source", None, {"postgres_count": 9}, None
    )
    assert alert.first_error is None and alert.counts == {"postgres_count": 9}
