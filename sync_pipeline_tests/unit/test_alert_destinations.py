"""Alerts through Dagster's integrations (Slack, PagerDuty, Microsoft Teams), delivered by the
integrations' own clients to a real local HTTP server standing in for the service's endpoint."""

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from sync_pipeline import settings
from sync_pipeline.core.report.alert_payloads import pagerduty_event
from sync_pipeline.core.report.alert_state import track
from sync_pipeline.core.report.failure_alerts import Alert, alert_for_buffer_lag
from sync_pipeline.defs.alert_destinations import send_pagerduty, send_slack, send_teams, teams_payload
from sync_pipeline.defs.alerts import AlertChannels, alert_channels
from sync_pipeline.io.notify import AlertDeliveryError
from sync_pipeline.settings import SettingsError

TOKEN = "xoxb-0000-secret-token"
HOOK_SECRET = "IncomingWebhook/abc123secret"


def make_alert() -> Alert:
    return Alert(
        "run_failure", "orders", "2026-10-05", "run-1234", {"indexed": 10, "failed": 2}, "boom", "Run failed"
    )


@dataclass
class Endpoint:
    """A local HTTP server: keeps each request, answers `answer` (status, body)."""

    server: ThreadingHTTPServer
    requests: list[dict] = field(default_factory=list)
    answer: tuple[int, bytes] = (200, b"1")

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def json_bodies(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture()
def endpoint() -> Iterator[Endpoint]:
    found: Endpoint

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            found.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status, answer = found.answer
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if answer.startswith(b"{") else "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found = Endpoint(server)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()
    thread.join(5)


# --- Slack (dagster-slack's SlackResource client) -----------------------------------------------


def test_slack_posts_the_block_kit_message_with_the_bot_token(endpoint):
    endpoint.answer = (200, b'{"ok": true, "ts": "1.2"}')
    alert = make_alert()
    send_slack(alert, TOKEN, "#ops", api_url=f"{endpoint.base}/api")
    (request,) = endpoint.requests
    assert request["path"] == "/api/chat.postMessage"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    sent = json.loads(request["body"])
    assert sent["channel"] == "#ops"
    assert sent["blocks"] == alert.slack_payload()["blocks"] and sent["text"] == alert.slack_payload()["text"]


def test_slack_refusal_names_slacks_error_and_not_the_token(endpoint):
    endpoint.answer = (200, b'{"ok": false, "error": "channel_not_found"}')
    with pytest.raises(AlertDeliveryError, match="channel_not_found") as caught:
        send_slack(make_alert(), TOKEN, "#nowhere", api_url=f"{endpoint.base}/api/")
    assert caught.value.channel == "slack" and TOKEN not in str(caught.value)


# --- PagerDuty (dagster-pagerduty's PagerDutyService, over pypd) ---------------------------------
# pypd posts to a class attribute, `pypd.EventV2.base_url`, with no setting of its own to change it:
# only a test points it at the local endpoint (monkeypatch restores it)

ROUTING_KEY = "R0UTINGKEY0000000000000000secret"


@pytest.fixture()
def pagerduty(endpoint, monkeypatch) -> Endpoint:
    import pypd

    monkeypatch.setattr(pypd.EventV2, "base_url", f"{endpoint.base}/v2/enqueue")
    endpoint.answer = (202, b'{"status": "success", "message": "Event processed", "dedup_key": "k"}')
    return endpoint


def test_pagerduty_triggers_then_resolves_the_same_incident(pagerduty):
    lagging = alert_for_buffer_lag("orders", 12, 700.0, "drains not running")
    opened: dict = {}
    for tick, firing in enumerate([[lagging], [lagging], []]):
        sent, opened = track(opened, firing, now=100.0 + 15 * tick)
        for alert in sent:
            send_pagerduty(alert, ROUTING_KEY)
    trigger, resolve = pagerduty.json_bodies()
    assert pagerduty.requests[0]["path"].startswith("/v2/enqueue")
    assert trigger["routing_key"] == ROUTING_KEY and trigger["event_action"] == "trigger"
    assert trigger["payload"]["summary"] == lagging.title and trigger["payload"]["severity"] == "warning"
    assert trigger["payload"]["class"] == "buffer_lag" and trigger["payload"]["component"] == "orders"
    assert resolve["event_action"] == "resolve" and resolve["dedup_key"] == trigger["dedup_key"]
    assert trigger["dedup_key"] == "sync_pipeline/buffer_lag/orders"


def test_pagerduty_refusal_is_a_delivery_error_without_the_routing_key(pagerduty):
    pagerduty.answer = (400, b'{"status": "invalid event", "message": "Event object is invalid"}')
    with pytest.raises(AlertDeliveryError, match=r"pagerduty alert to http://127\.0\.0\.1") as caught:
        send_pagerduty(make_alert(), ROUTING_KEY)
    assert "400" in str(caught.value) and ROUTING_KEY not in str(caught.value)


def test_pagerduty_that_never_answers_is_given_up_after_the_timeout(monkeypatch):
    import pypd

    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        monkeypatch.setattr(
            pypd.EventV2, "base_url", f"http://127.0.0.1:{silent.getsockname()[1]}/v2/enqueue"
        )
        with pytest.raises(AlertDeliveryError, match=r"no answer within 0\.5s"):
            send_pagerduty(make_alert(), ROUTING_KEY, timeout=0.5)


def test_pagerduty_event_passes_pypds_own_validation():
    import pypd

    event = pagerduty_event(make_alert())
    data = {"routing_key": ROUTING_KEY, "event_action": event["event_action"]}
    data["payload"] = {k: event[k] for k in ("summary", "source", "severity")}
    pypd.EventV2.validate(data)  # asserts, as EventV2.create does before sending


# --- Microsoft Teams (dagster-msteams' TeamsClient) ---------------------------------------------


def test_teams_posts_an_adaptive_card_of_the_alert(endpoint):
    alert = make_alert()
    send_teams(alert, f"{endpoint.base}/{HOOK_SECRET}")
    (request,) = endpoint.requests
    assert request["path"] == f"/{HOOK_SECRET}"
    card = json.loads(request["body"])
    assert card == teams_payload(alert)
    (attachment,) = card["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    texts = [block["text"] for block in attachment["content"]["body"]]
    assert texts[0] == "**Run failed**" and any("run-1234" in t for t in texts)


def test_teams_failure_names_the_host_not_the_webhook_path(endpoint):
    endpoint.answer = (500, b"internal trouble")
    with pytest.raises(AlertDeliveryError) as caught:
        send_teams(make_alert(), f"{endpoint.base}/{HOOK_SECRET}")
    message = str(caught.value)
    assert caught.value.channel == "teams" and endpoint.base in message
    assert "abc123secret" not in message


# --- the resource: every channel, and a condition opened then resolved --------------------------


@pytest.fixture()
def captured() -> Iterator[logging.Logger]:
    logger = logging.getLogger(f"test_alert_destinations.{id(object())}")
    logger.propagate = False
    yield logger


def test_a_condition_reaches_slack_and_teams_once_and_its_resolution_once(endpoint, captured):
    endpoint.answer = (200, b'{"ok": true}')
    slack = endpoint
    channels = AlertChannels(slack_token=TOKEN, slack_channel="#ops", slack_api_url=f"{slack.base}/api/")
    assert channels.configured_channels() == ["slack"]
    lagging = alert_for_buffer_lag("orders", 12, 700.0, "drains not running")
    opened: dict = {}
    for tick, firing in enumerate([[lagging], [lagging], [lagging], [], []]):
        sent, opened = track(opened, firing, now=100.0 + 15 * tick)
        for alert in sent:
            assert channels.deliver(alert, captured) == ["slack"]
    headers = [body["blocks"][0]["text"]["text"] for body in slack.json_bodies()]
    assert headers == [lagging.title, f"Resolved: {lagging.title}"]


# --- settings -----------------------------------------------------------------------------------


ALERT_VARIABLES = (
    "SYNC_ALERT_SLACK_TOKEN",
    "SYNC_ALERT_SLACK_CHANNEL",
    "SYNC_ALERT_SLACK_API_URL",
    "SYNC_ALERT_PAGERDUTY_ROUTING_KEY",
    "SYNC_ALERT_TEAMS_WEBHOOK_URL",
)


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"SYNC_ALERT_SLACK_TOKEN": TOKEN}, "SYNC_ALERT_SLACK_CHANNEL is not set"),
        ({"SYNC_ALERT_SLACK_CHANNEL": "#ops"}, "SYNC_ALERT_SLACK_TOKEN is not set"),
        ({"SYNC_ALERT_TEAMS_WEBHOOK_URL": "outlook.office.com/webhook"}, "SYNC_ALERT_TEAMS_WEBHOOK_URL"),
        (
            {
                "SYNC_ALERT_SLACK_TOKEN": TOKEN,
                "SYNC_ALERT_SLACK_CHANNEL": "#o",
                "SYNC_ALERT_SLACK_API_URL": "ftp://x",
            },
            "SYNC_ALERT_SLACK_API_URL",
        ),
    ],
)
def test_settings_refuse_an_incomplete_or_malformed_destination_naming_the_variable(variables, named):
    with pytest.raises(SettingsError, match=named) as caught:
        settings.load(variables)
    assert TOKEN not in str(caught.value)


def test_channels_from_env_pass_the_secrets_as_envvars(monkeypatch):
    for name in ALERT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SYNC_ALERT_SLACK_TOKEN", TOKEN)
    monkeypatch.setenv("SYNC_ALERT_SLACK_CHANNEL", "#ops")
    monkeypatch.setenv("SYNC_ALERT_PAGERDUTY_ROUTING_KEY", "R0UTINGKEY0000000000000000000000")
    monkeypatch.setenv("SYNC_ALERT_TEAMS_WEBHOOK_URL", f"https://example.webhook.office.com/{HOOK_SECRET}")
    channels = alert_channels(settings.load().alerts)
    assert isinstance(channels.slack_token, dg.EnvVar) and isinstance(channels.teams_webhook_url, dg.EnvVar)
    assert TOKEN not in repr(channels) and HOOK_SECRET not in repr(channels)
    resolved = channels.resolved()
    assert resolved.configured_channels() == ["slack", "pagerduty", "teams"]
    assert (resolved.slack_token, resolved.slack_channel) == (TOKEN, "#ops")
