"""Failure alerts end to end: a real run fails or fails a check, the real sensor turns it into
an alert, and a real local HTTP receiver gets it."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from sync_pipeline.apps.cli.runner import run_sync
from sync_pipeline.core.specs import parse_specs
from sync_pipeline.defs.alerts import AlertChannels, quality_alerts, run_failure_alerts

pytestmark = pytest.mark.integration


@pytest.fixture()
def receiver():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def _event(instance, run_id, event_type):
    (entry,) = instance.all_logs(run_id, of_type=event_type)
    return entry.dagster_event


def test_dead_letters_raise_one_check_alert_with_counts(scenario, insert_rows, receiver):
    url, received = receiver
    insert_rows(range(1, 9), "2026-02-01 00:00:00+00", title="5")
    insert_rows([9, 10], "2026-02-01 00:00:00+00", title="five")
    text = scenario.spec_text().replace("title: {cleanse: [trim, empty_to_null]}", "title: {type: integer}")
    spec = parse_specs(text)[0]
    summary = run_sync([spec], spec)
    assert summary.success and summary.dead_lettered == 2

    instance = dg.DagsterInstance.get()
    run = instance.get_run_by_id(summary.run_id)
    context = dg.build_run_status_sensor_context(
        sensor_name="sync_quality_alerts",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=_event(instance, run.run_id, dg.DagsterEventType.RUN_SUCCESS),
        resources={"alert_channels": AlertChannels(webhook_url=url)},
    )
    quality_alerts(context)

    texts = [json.dumps(payload, ensure_ascii=False) for payload in received]
    # one alert each: the dead-letter check, the window check (2 rows short in ES), the 20% error rate
    assert len(texts) == 3, texts
    (dead,) = [t for t in texts if "no_dead_letters" in t]
    assert summary.run_id in dead and spec.name in dead and "document_parsing_exception" in dead
    assert "dead_lettered: *2*" in dead
    assert sum("window_matches_source" in t for t in texts) == 1
    assert sum("Error rate 20.0%" in t for t in texts) == 1


def test_a_failed_run_raises_one_alert_naming_spec_partition_and_error(
    scenario, insert_rows, receiver, monkeypatch
):
    url, received = receiver
    insert_rows(range(1, 4), "2026-02-01 00:00:00+00")
    monkeypatch.setenv("SYNC_ES_URL", "http://127.0.0.1:1")  # Elasticsearch unreachable
    spec = parse_specs(
        scenario.spec_text().replace("    batch_size: 50", "    batch_size: 50\n    retry: {attempts: 1}")
    )[0]
    summary = run_sync([spec], spec)
    assert not summary.success

    instance = dg.DagsterInstance.get()
    run = instance.get_run_by_id(summary.run_id)
    context = dg.build_run_status_sensor_context(
        sensor_name="sync_run_failure_alerts",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=_event(instance, run.run_id, dg.DagsterEventType.RUN_FAILURE),
        resources={"alert_channels": AlertChannels(webhook_url=url)},
    ).for_run_failure()
    run_failure_alerts(context)

    (payload,) = received
    text = json.dumps(payload, ensure_ascii=False)
    assert spec.name in text and summary.run_id in text
    assert "2026-01-01" in text  # the partition range starts at the first window
    assert "Connection" in text or "connect" in text
