"""Capture that stops without an error (real servers): writes of replica-role sessions, a
disabled trigger, a table re-created by a migration, and the alerts that say so — every alert
kind, through the sensors' own evaluation, into a real webhook delivery."""

from __future__ import annotations

import time

import dagster as dg

from sync_pipeline.apps.cli.runner import run_sync
from sync_pipeline.core.cdc.triggers import truncate_trigger_name
from sync_pipeline.core.report.failure_alerts import ALERT_KINDS
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.defs.alerts import AlertChannels, quality_alerts, run_failure_alerts
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline_tests.support.capture_health import (
    _kind,
    _spec,
    _texts,
    _tick,
)


def _event(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType):
    (entry,) = instance.all_logs(run_id, of_type=event_type)
    return entry.dagster_event


def test_every_alert_kind_reaches_the_webhook_through_its_sensor(
    scenario, insert_rows, live, pg, receiver, monkeypatch
):
    url, received = receiver
    channels = {"alert_channels": AlertChannels(webhook_url=url)}
    insert_rows(range(1, 9), "2026-02-01 00:00:00+00", title="5")
    insert_rows([9, 10], "2026-02-01 00:00:00+00", title="five")
    typed = scenario.spec_text().replace("title: {cleanse: [trim, empty_to_null]}", "title: {type: integer}")
    spec = parse_specs(typed)[0]
    instance = dg.DagsterInstance.get()

    # check_failure and error_rate: a run with dead letters, through the quality sensor
    summary = run_sync(spec)
    assert summary.success and summary.dead_lettered == 2
    run = instance.get_run_by_id(summary.run_id)
    quality_alerts(
        dg.build_run_status_sensor_context(
            sensor_name="sync_quality_alerts", dagster_instance=instance, dagster_run=run,
            dagster_event=_event(instance, run.run_id, dg.DagsterEventType.RUN_SUCCESS), resources=channels,
        )
    )  # fmt: skip
    # run_failure: a run that cannot reach Elasticsearch, through the failure sensor
    with monkeypatch.context() as patch:  # PostgreSQL refuses at once (Elasticsearch would be retried)
        patch.setenv("SYNC_PG_URL", "postgresql://sync:sync@127.0.0.1:1/sync_pipeline")
        failed = run_sync(spec)
    assert not failed.success
    run = instance.get_run_by_id(failed.run_id)
    run_failure_alerts(
        dg.build_run_status_sensor_context(
            sensor_name="sync_run_failure_alerts", dagster_instance=instance, dagster_run=run,
            dagster_event=_event(instance, run.run_id, dg.DagsterEventType.RUN_FAILURE), resources=channels,
        ).for_run_failure()
    )  # fmt: skip

    # buffer_lag and capture_missing: the buffer sensor of a trigger spec
    captured = _spec(scenario, more="0.2")
    logical = _spec(scenario, f"{scenario.table}_l", "    capture: logical\n", "1, slot_lag_alert_mb: 0.01")
    install_capture(scenario.engine, captured)
    try:
        scenario.execute(f"UPDATE {scenario.table} SET title = '6' WHERE id = 1")
        time.sleep(0.3)  # the oldest change waited past lag_alert_seconds
        table = scenario.table
        scenario.execute(f"ALTER TABLE {table} DISABLE TRIGGER {truncate_trigger_name(table, table)}")
        _tick(captured, pg, url)
        # slot_lag: the buffer sensor of a logical spec whose slot keeps more WAL than its limit
        install_capture(scenario.engine, logical)
        scenario.execute("SELECT pg_logical_emit_message(true, 'sync_test', repeat('x', 100000))")
        _tick(logical, pg, url)
    finally:
        scenario.engine.dispose()
        uninstall_capture(scenario.engine, logical)
        uninstall_capture(scenario.engine, captured)

    kinds = {_kind(payload) for payload in received}
    # stale comes from Dagster's freshness state: test_alert_sensors.py drives it through its sensor
    assert kinds == set(ALERT_KINDS) - {"stale"} and {"slot_lag", "capture_missing"} <= kinds, kinds
    (capture,) = _texts(received, "capture_missing")
    assert truncate_trigger_name(table, table) in capture and "disabled" in capture
    (slot,) = _texts(received, "slot_lag")
    assert logical.name in slot
