"""Alerts end to end: a real run fails or fails a check, or a real buffer lags, the real sensor
turns it into an alert (a lasting one once, and once resolved), and a real local HTTP receiver
gets it."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from sync_pipeline.apps.cli.runner import run_sync
from sync_pipeline.core.naming import index_asset
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.defs import build_definitions
from sync_pipeline.defs.alerts import AlertChannels, quality_alerts, run_failure_alerts
from sync_pipeline.defs.freshness import build_freshness_alert_sensor
from sync_pipeline.defs.resources import PostgresResource
from sync_pipeline.defs.sensors import build_buffer_sensor
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline_tests.conftest import indexed


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
    summary = run_sync(spec)
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
    summary = run_sync(spec)
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


def test_a_lagging_buffer_alerts_once_while_it_lasts_and_once_resolved(scenario, insert_rows, pg, receiver):
    url, received = receiver
    # drains only by hand here (thresholds never reached); a change is late after 0.2 s
    sensor = (
        "    buffer_sensor: {min_changes: 1000, max_wait_seconds: 3600, follow_seconds: 0, "
        "lag_alert_seconds: 0.2}\n"
    )
    spec = parse_specs(scenario.spec_text(extra=sensor), origin="test")[0]
    insert_rows(range(1, 6), "2026-02-01 00:00:00+00")
    assert run_sync(spec).success
    resources = {
        "postgres": PostgresResource(url=pg.url.render_as_string(hide_password=False)),
        "alert_channels": AlertChannels(webhook_url=url),
    }
    sensor_def = build_buffer_sensor(spec)

    def tick(cursor: str | None) -> str | None:
        context = dg.build_sensor_context(
            instance=dg.DagsterInstance.get(), resources=resources, cursor=cursor
        )
        sensor_def(context)
        return context.cursor

    install_capture(scenario.engine, spec)
    try:
        scenario.execute(f"UPDATE {scenario.table} SET title = 'late' WHERE id <= 3")
        time.sleep(0.3)  # the oldest buffered change is now past lag_alert_seconds
        cursor = tick(None)
        (opened,) = received
        assert opened["blocks"][0]["text"]["text"].startswith(f"Change buffer of {spec.name} is")
        cursor = tick(cursor)
        cursor = tick(cursor)
        assert len(received) == 1  # it lasts: not sent again

        drain(scenario.engine, scenario.es, spec)  # the buffer empties: the condition clears
        cursor = tick(cursor)
        assert len(received) == 2
        resolved = json.dumps(received[1], ensure_ascii=False)
        assert f"Resolved: Change buffer of {spec.name}" in resolved and "open_seconds" in resolved
        tick(cursor)
        assert len(received) == 2  # cleared stays quiet
        assert indexed(scenario.es, scenario.index)["1"]["title"] == "late"
    finally:
        uninstall_capture(scenario.engine, spec)


def test_a_stale_index_alerts_once_and_once_resolved_from_dagsters_freshness(scenario, insert_rows, receiver):
    # Dagster's daemon records each asset's freshness state (its freshness loop, step by step
    # here with the clock set ahead): the alert sensor sends FAIL once and the return to PASS once
    import asyncio
    from datetime import UTC, datetime, timedelta

    from dagster._core.loader import LoadingContextForTest
    from dagster._core.test_utils import freeze_time
    from dagster._daemon.freshness import FreshnessDaemon

    url, received = receiver
    spec = scenario.spec()  # month windows: stale 31 days + 1 hour after the last sync
    insert_rows(range(1, 4), "2026-02-01 00:00:00+00")
    assert run_sync(spec).success
    instance = dg.DagsterInstance.get()
    index = dg.AssetKey(index_asset(spec.name))
    node = build_definitions([spec]).resolve_asset_graph().get(index)
    daemon = FreshnessDaemon()
    sensor_def = build_freshness_alert_sensor([spec])
    resources = {"alert_channels": AlertChannels(webhook_url=url)}

    def evaluate(at: datetime) -> str:
        with freeze_time(at):
            asyncio.run(daemon._evaluate_asset(context=LoadingContextForTest(instance), node=node))
        return instance.get_freshness_state_records([index])[index].freshness_state.value

    def tick(cursor: str | None) -> str | None:
        context = dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
        sensor_def(context)
        return context.cursor

    now = datetime.now(UTC)
    assert evaluate(now) == "PASS"
    cursor = tick(None)
    assert received == []

    assert evaluate(now + timedelta(days=32)) == "FAIL"
    cursor = tick(tick(cursor))
    (stale,) = received
    assert stale["blocks"][0]["text"]["text"] == f"Index of {spec.name} is stale: {spec.name}_index"

    assert evaluate(now) == "PASS"  # synced since (the same sync, seen at the real time)
    cursor = tick(cursor)
    assert len(received) == 2
    assert (
        received[1]["blocks"][0]["text"]["text"]
        == f"Resolved: Index of {spec.name} is stale: {spec.name}_index"
    )
