"""The capture-health checks' common parts: the buffer sensor's name, a webhook `receiver`
(a fixture of every module), one sensor tick, and the alert texts it sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.core.spec.model import SyncSpec, parse_specs
from sync_pipeline.defs.alerts import AlertChannels
from sync_pipeline.defs.resources import PostgresResource
from sync_pipeline.defs.sensors import build_buffer_sensor
from sync_pipeline_tests.conftest import Scenario

# never launches a drain on its own (the tests drain themselves); {more}: lag_alert_seconds, …
SENSOR = (
    "    buffer_sensor: {{min_changes: 1000, max_wait_seconds: 3600, follow_seconds: 0, "
    "lag_alert_seconds: {more}}}\n"
)


@pytest.fixture()
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """The user's webhook: a local HTTP endpoint that keeps what it is sent."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def _kind(payload: dict) -> str:
    (field,) = [f["text"] for f in payload["blocks"][1]["fields"] if f["text"].startswith("*Kind*")]
    return field.split("`")[1]


def _texts(received: list[dict], kind: str) -> list[str]:
    return [json.dumps(p, ensure_ascii=False) for p in received if _kind(p) == kind]


def _spec(scenario: Scenario, name: str | None = None, extra: str = "", more: str = "1") -> SyncSpec:
    text = scenario.spec_text(extra=SENSOR.format(more=more) + extra)
    if name:
        text = text.replace(f"name: {scenario.table}", f"name: {name}")
    return parse_specs(text, origin="test")[0]


def _tick(spec: SyncSpec, pg: sa.Engine, url: str, cursor: str | None = None) -> dg.SensorEvaluationContext:
    resources = {
        "postgres": PostgresResource(url=pg.url.render_as_string(hide_password=False)),
        "alert_channels": AlertChannels(webhook_url=url),
    }
    context = dg.build_sensor_context(instance=dg.DagsterInstance.get(), resources=resources, cursor=cursor)
    build_buffer_sensor(spec)(context)
    return context
