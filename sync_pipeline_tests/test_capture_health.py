"""Capture that stops without an error (real servers): writes of replica-role sessions, a
disabled trigger, a table re-created by a migration, and the alerts that say so — every alert
kind, through the sensors' own evaluation, into a real webhook delivery."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli import main
from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify
from sync_pipeline.core.alerts import ALERT_KINDS
from sync_pipeline.core.capture import function_name, truncate_trigger_name
from sync_pipeline.core.specs import SyncSpec, parse_specs
from sync_pipeline.defs.alerts import AlertChannels, quality_alerts, run_failure_alerts
from sync_pipeline.defs.resources import PostgresResource
from sync_pipeline.defs.sensors import build_buffer_sensor
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain

from .conftest import CHAOS_RESULTS, Scenario, indexed

pytestmark = pytest.mark.integration

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


def _superuser() -> sa.Engine:
    """The local cluster's superuser: `session_replication_role` is a superuser setting (what
    a subscription's apply worker and pg_restore run as)."""
    from sync_pipeline.io.postgres import engine_for
    from sync_pipeline_devtools.services.postgres import pg_superuser_url

    url = pg_superuser_url()
    if not Path(url.split("host=", 1)[1].split("&", 1)[0]).exists() or os.geteuid() != 0:
        pytest.skip("needs the local cluster of this checkout and root (its superuser's socket is private)")
    return engine_for(url)


def _doctor(capsys, path: Path, spec: SyncSpec) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--config", str(path), "doctor", "--spec", spec.name])
    return code, capsys.readouterr().out


@pytest.mark.chaos
def test_a_write_in_a_replica_role_session_is_captured_and_reaches_the_index(scenario, insert_rows, live):
    spec = scenario.spec()
    insert_rows(range(1, 41), "2026-02-01 00:00:00+00")
    servers = Servers(live.pg_url, live.es_url)
    install_capture(scenario.engine, spec)
    superuser = _superuser()
    try:
        assert run_sync([spec], spec, servers=servers).success
        with superuser.begin() as conn:  # as a logical-replication subscriber applies its changes
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            conn.execute(sa.text(f"UPDATE {scenario.table} SET title = 'replicated' WHERE id <= 10"))
            conn.execute(sa.text(f"DELETE FROM {scenario.table} WHERE id > 35"))
        drain(scenario.engine, scenario.es, spec)
        documents = indexed(scenario.es, scenario.index)
        assert documents["1"]["title"] == "replicated" and "36" not in documents and len(documents) == 35
        (report,) = run_verify([spec], [spec], servers=servers)
        assert report.drift == 0 and report.pg_count == 35
        CHAOS_RESULTS.append(("writes of a session_replication_role = replica session", 15, report.drift, 0))
    finally:
        superuser.dispose()
        uninstall_capture(scenario.engine, spec)


def _bypass(scenario: Scenario, how: str) -> str:
    """Stop the spec's row trigger from capturing, as `how` does; the trigger doctor must name."""
    table = scenario.table
    trigger = function_name(table, table)
    if how == "disable":
        scenario.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
    elif how == "recreate":  # a migration: the new table has no trigger, the function stays
        scenario.execute(
            f"CREATE TABLE {table}_new (LIKE {table} INCLUDING ALL); "
            f"INSERT INTO {table}_new SELECT * FROM {table}; DROP TABLE {table}; "
            f"ALTER TABLE {table}_new RENAME TO {table}"
        )
    else:  # the old table kept under another name: its triggers move with it
        scenario.execute(
            f"CREATE TABLE {table}_new (LIKE {table} INCLUDING ALL); "
            f"INSERT INTO {table}_new SELECT * FROM {table}; ALTER TABLE {table} RENAME TO {table}_old; "
            f"ALTER TABLE {table}_new RENAME TO {table}"
        )
    return trigger


@pytest.mark.chaos
@pytest.mark.parametrize("how", ["disable", "recreate", "rename"])
def test_a_bypassed_trigger_is_named_by_doctor_and_alerted_by_the_sensor(
    scenario, insert_rows, live, pg, receiver, tmp_path, capsys, how
):
    url, received = receiver
    spec = _spec(scenario, more="600")
    path = tmp_path / "sync.yaml"
    path.write_text(scenario.spec_text(extra=SENSOR.format(more="600")))
    insert_rows(range(1, 21), "2026-02-01 00:00:00+00")
    servers = Servers(live.pg_url, live.es_url)
    install_capture(scenario.engine, spec)
    try:
        assert run_sync([spec], spec, servers=servers).success
        trigger = _bypass(scenario, how)
        scenario.execute(f"UPDATE {scenario.table} SET title = 'unseen' WHERE id <= 4")  # not captured

        code, out = _doctor(capsys, path, spec)
        assert code == 1 and scenario.table in out and trigger in out, out
        assert f"sync-pipeline verify --spec {spec.name} --fix" in out
        context = _tick(spec, pg, url)
        (alert,) = _texts(received, "capture_missing")
        assert scenario.table in alert and trigger in alert
        _tick(spec, pg, url, context.cursor)
        assert len(_texts(received, "capture_missing")) == 1  # not again while it lasts

        # the fix doctor printed: capture back (ENABLE ALWAYS), then the changes made meanwhile
        assert main(["--config", str(path), "install-triggers", "--spec", spec.name]) == 0
        assert _doctor(capsys, path, spec)[0] == 0
        run_verify([spec], [spec], fix=True, servers=servers)
        scenario.execute(f"UPDATE {scenario.table} SET title = 'seen' WHERE id = 5")
        drain(scenario.engine, scenario.es, spec)
        documents = indexed(scenario.es, scenario.index)
        assert documents["1"]["title"] == "unseen" and documents["5"]["title"] == "seen"
        (report,) = run_verify([spec], [spec], servers=servers)
        assert report.drift == 0 and report.pg_count == 20
        CHAOS_RESULTS.append((f"capture trigger bypassed ({how}), doctor's fix applied", 5, report.drift, 0))
    finally:
        uninstall_capture(scenario.engine, spec)
        scenario.execute(f"DROP TABLE IF EXISTS {scenario.table}_old")


@pytest.mark.chaos
def test_a_trigger_disabled_on_one_partition_is_found_and_enabled_again(
    scenario, insert_rows, live, pg, receiver, tmp_path, capsys
):
    url, received = receiver
    table = scenario.table
    scenario.execute(f"DROP TABLE {table}")
    scenario.execute(
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, title text, price numeric(10, 2), payload jsonb, "
        "tags text[], deleted boolean NOT NULL DEFAULT false, updated_at timestamptz) PARTITION BY RANGE (id)"
    )
    scenario.execute(f"CREATE TABLE {table}_low PARTITION OF {table} FOR VALUES FROM (0) TO (10)")
    scenario.execute(f"CREATE TABLE {table}_high PARTITION OF {table} FOR VALUES FROM (10) TO (1000)")
    spec = _spec(scenario, more="600")
    path = tmp_path / "sync.yaml"
    path.write_text(scenario.spec_text(extra=SENSOR.format(more="600")))
    insert_rows(range(1, 21), "2026-02-01 00:00:00+00")
    servers = Servers(live.pg_url, live.es_url)
    install_capture(scenario.engine, spec)
    try:
        assert run_sync([spec], spec, servers=servers).success
        trigger = function_name(table, table)
        scenario.execute(f"ALTER TABLE {table}_high DISABLE TRIGGER {trigger}")  # that partition alone
        scenario.execute(f"UPDATE {table} SET title = 'unseen' WHERE id IN (3, 15)")  # 15: not captured

        code, out = _doctor(capsys, path, spec)
        assert code == 1 and f"{table}_high" in out and trigger in out, out
        _tick(spec, pg, url)
        (alert,) = _texts(received, "capture_missing")
        assert f"{table}_high" in alert and trigger in alert
        assert main(["--config", str(path), "install-triggers", "--spec", spec.name]) == 0
        assert _doctor(capsys, path, spec)[0] == 0
        # a partition created since: its own TRUNCATE trigger is missing until the next drain
        scenario.execute(f"CREATE TABLE {table}_top PARTITION OF {table} FOR VALUES FROM (1000) TO (2000)")
        code, out = _doctor(capsys, path, spec)
        assert code == 1 and f"{table}_top" in out and "TRUNCATE trigger" in out, out
        drain(scenario.engine, scenario.es, spec)
        assert _doctor(capsys, path, spec)[0] == 0
        run_verify([spec], [spec], fix=True, servers=servers)
        scenario.execute(f"UPDATE {table} SET title = 'seen' WHERE id = 16")
        drain(scenario.engine, scenario.es, spec)
        documents = indexed(scenario.es, scenario.index)
        assert documents["15"]["title"] == "unseen" and documents["16"]["title"] == "seen"
        (report,) = run_verify([spec], [spec], servers=servers)
        assert report.drift == 0 and report.pg_count == 20
        CHAOS_RESULTS.append(("capture trigger disabled on one partition, re-enabled", 3, report.drift, 0))
    finally:
        uninstall_capture(scenario.engine, spec)


def _hold_restart_lsn(pg: sa.Engine) -> sa.Connection:
    """A transaction left open after writing WAL (a temp table's catalog rows): every slot must
    keep the WAL from its start, whatever it confirmed since."""
    conn = pg.connect()
    conn.execute(sa.text("CREATE TEMP TABLE sync_pipeline_hold (x int)"))
    return conn


@pytest.mark.chaos
def test_the_slot_alert_counts_the_wal_kept_from_restart_lsn(scenario, insert_rows, live, pg, receiver):
    url, received = receiver
    spec = _spec(scenario, extra="    capture: logical\n", more="1, slot_lag_alert_mb: 0.5")
    insert_rows(range(1, 21), "2026-02-01 00:00:00+00")
    install_capture(scenario.engine, spec)
    holder = None
    try:
        assert run_sync([spec], spec, servers=Servers(live.pg_url, live.es_url)).success
        drain(scenario.engine, scenario.es, spec)
        holder = _hold_restart_lsn(pg)
        with scenario.engine.begin() as conn:  # 2 MB of WAL the drain reads past and confirms
            conn.execute(sa.text("SELECT pg_logical_emit_message(true, 'sync_test', repeat('x', 2000000))"))
            conn.execute(sa.text(f"UPDATE {scenario.table} SET title = 'after' WHERE id <= 3"))
        drain(scenario.engine, scenario.es, spec)
        _tick(spec, pg, url)
        (alert,) = _texts(received, "slot_lag")
        assert spec.name in alert and "retained_bytes" in alert
        holder.rollback()
        holder.close()
        holder = None
        drain(scenario.engine, scenario.es, spec)
        assert indexed(scenario.es, scenario.index)["3"]["title"] == "after"
        (report,) = run_verify([spec], [spec], servers=Servers(live.pg_url, live.es_url))
        assert report.drift == 0 and report.pg_count == 20
        CHAOS_RESULTS.append(("slot held back by an open transaction, alerted", 3, report.drift, 0))
    finally:
        if holder is not None:
            holder.close()
        scenario.engine.dispose()
        uninstall_capture(scenario.engine, spec)


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
    summary = run_sync([spec], spec)
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
        failed = run_sync([spec], spec)
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
