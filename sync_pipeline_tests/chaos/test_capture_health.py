"""Capture that stops without an error (real servers): writes of replica-role sessions, a
disabled trigger, a table re-created by a migration, and the alerts that say so — every alert
kind, through the sensors' own evaluation, into a real webhook delivery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli import main
from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify
from sync_pipeline.core.cdc.triggers import function_name
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline_tests.conftest import CHAOS_RESULTS, Scenario, indexed
from sync_pipeline_tests.support.capture_health import (
    SENSOR,
    _spec,
    _texts,
    _tick,
)


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


def test_a_write_in_a_replica_role_session_is_captured_and_reaches_the_index(scenario, insert_rows, live):
    spec = scenario.spec()
    insert_rows(range(1, 41), "2026-02-01 00:00:00+00")
    servers = Servers(live.pg_url, live.es_url)
    install_capture(scenario.engine, spec)
    superuser = _superuser()
    try:
        assert run_sync(spec, servers=servers).success
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
        assert run_sync(spec, servers=servers).success
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
        assert run_sync(spec, servers=servers).success
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


def test_the_slot_alert_counts_the_wal_kept_from_restart_lsn(scenario, insert_rows, live, pg, receiver):
    url, received = receiver
    spec = _spec(scenario, extra="    capture: logical\n", more="1, slot_lag_alert_mb: 0.5")
    insert_rows(range(1, 21), "2026-02-01 00:00:00+00")
    install_capture(scenario.engine, spec)
    holder = None
    try:
        assert run_sync(spec, servers=Servers(live.pg_url, live.es_url)).success
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
