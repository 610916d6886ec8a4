"""Logical capture at its edges (issue 30, items 2, 4 and 11), on the real servers: keys whose
pgoutput text is not their canonical text, a switch of capture mode with changes pending, the
visibility wait, and the repair a lost slot's advice names. Each ends in verify at zero drift."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify
from sync_pipeline.core.cdc import logical
from sync_pipeline.core.spec.model import BufferSensorSpec
from sync_pipeline.defs.alerts import AlertChannels
from sync_pipeline.defs.resources import PostgresResource
from sync_pipeline.defs.sensors import build_buffer_sensor
from sync_pipeline.io import buffer, replication
from sync_pipeline.io.replication import SlotMissing
from sync_pipeline.io.search.indices import drop_target
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline.ops.health import check
from sync_pipeline_tests.conftest import CHAOS_RESULTS, indexed, wait_until
from sync_pipeline_tests.support.faults import seed
from sync_pipeline_tests.support.keys_versions import _spec
from sync_pipeline_tests.support.logical import LOGICAL

# key kind: (key columns, primary_key, rows' key values as SQL over g, spec extra, changed rows)
KEYS = {
    "timestamptz in a composite key": (
        "device_id int, recorded_at timestamptz, PRIMARY KEY (device_id, recorded_at)",
        "[device_id, recorded_at]",
        "g % 4, timestamptz '2026-02-01 10:00:00.5+02' + g * interval '1 minute'",
        "",
        "device_id = 1",
    ),
    "bool in a composite key": (
        "n int, flag bool, PRIMARY KEY (n, flag)",
        "[n, flag]",
        "g / 2, g % 2 = 0",
        "",
        "flag",
    ),
    "char(n)": ("code char(8) PRIMARY KEY", "code", "'c' || g", "", "g_mod = 1"),
    "naive timestamp under naive_timezone": (
        "at timestamp PRIMARY KEY",
        "at",
        "timestamp '2026-02-01 10:00:00' + g * interval '1 hour'",
        "    naive_timezone: America/New_York",
        "g_mod = 1",
    ),
}


def _verified(name: str, changed: int, spec, servers: Servers) -> None:
    (report,) = run_verify([spec], [spec], servers=servers)
    CHAOS_RESULTS.append((name, changed, report.drift, 0))
    assert report.ok and report.drift == 0, report.lines()


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_logical_updates_and_deletes_find_the_documents_of_every_key_kind(kind, pg, es, live):
    """The root-only path of the logical drain names documents by the keys pgoutput sends: they
    must become the same _id the full sync wrote (core/sql/keys.py), or deletes miss their document."""
    table = f"lk_{uuid.uuid4().hex[:8]}"
    columns, key, values, extra, changed = KEYS[kind]
    servers = Servers(live.pg_url, live.es_url)
    spec = _spec(table, key, f"{LOGICAL}\n{extra}")
    with pg.begin() as conn:
        conn.execute(
            sa.text(f"CREATE TABLE {table} ({columns}, g_mod int, note text, updated_at timestamptz)")
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {table} SELECT {values}, g % 3, 'x', '2026-02-01+00' "
                "FROM generate_series(1, 60) AS g"
            )
        )
    try:
        install_capture(pg, spec)
        assert run_sync(spec, servers=servers).success
        assert len(indexed(es, table)) == 60
        with pg.begin() as conn:
            updated = conn.execute(sa.text(f"UPDATE {table} SET note = 'changed' WHERE NOT ({changed})"))
            deleted = conn.execute(sa.text(f"DELETE FROM {table} WHERE {changed}"))
        assert 0 < deleted.rowcount < 60
        totals = drain(pg, es, spec)
        assert totals.failed == 0 and totals.deleted == deleted.rowcount, totals
        docs = indexed(es, table)
        assert len(docs) == 60 - deleted.rowcount and {d["note"] for d in docs.values()} == {"changed"}
        _verified(f"logical key: {kind}", updated.rowcount + deleted.rowcount, spec, servers)
    finally:
        uninstall_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        drop_target(es, table)


def _sensor_tick(spec, live):
    """One tick of the spec's buffer sensor, launching on 5 changes (no follower)."""
    policy = BufferSensorSpec(min_changes=5, max_wait_seconds=3600, follow_seconds=0)
    resources = {"postgres": PostgresResource(url=live.pg_url), "alert_channels": AlertChannels()}
    sensor = build_buffer_sensor(spec.model_copy(update={"buffer_sensor": policy}))
    with dg.instance_for_test() as instance:
        return sensor(dg.build_sensor_context(instance=instance, resources=resources))


def test_triggers_to_logical_drains_what_the_buffer_still_holds(scenario, live):
    servers, engine, table = Servers(live.pg_url, live.es_url), scenario.engine, scenario.table
    triggers, logical_spec = scenario.spec(), scenario.spec(extra=LOGICAL)
    seed(scenario, 200)
    install_capture(engine, triggers)
    assert run_sync(triggers, servers=servers).success
    try:
        scenario.execute(f"UPDATE {table} SET title = 'buffered' WHERE id <= 20")
        scenario.execute(f"DELETE FROM {table} WHERE id BETWEEN 21 AND 30")
        install_capture(engine, logical_spec)  # the switch, with 30 changes buffered
        report = check(engine, scenario.es, [logical_spec], {logical_spec.name})
        (backlog,) = report.backlog
        assert backlog.pending >= 30 and "capture: logical" in backlog.problem, backlog
        assert backlog.fix == [f"sync-pipeline flush --spec {logical_spec.name}"]
        assert isinstance(_sensor_tick(logical_spec, live), dg.RunRequest)  # the slot alone is quiet
        scenario.execute(f"UPDATE {table} SET title = 'slot' WHERE id BETWEEN 31 AND 40")
        totals = drain(engine, scenario.es, logical_spec)
        assert totals.failed == 0 and totals.deleted == 10, totals
        docs = indexed(scenario.es, scenario.index)
        assert docs["1"]["title"] == "buffered" and docs["31"]["title"] == "slot" and "21" not in docs
        with engine.connect() as conn:
            assert buffer.buffer_state(conn, logical_spec).pending == 0
        _verified("switch triggers -> logical with 30 changes buffered", 40, logical_spec, servers)
    finally:
        scenario.engine.dispose()
        uninstall_capture(engine, logical_spec)


def test_logical_to_triggers_carries_the_slots_changes_over_to_the_buffer(scenario, live):
    servers, engine, table = Servers(live.pg_url, live.es_url), scenario.engine, scenario.table
    triggers, logical_spec = scenario.spec(), scenario.spec(extra=LOGICAL)
    install_capture(engine, logical_spec)
    seed(scenario, 200)
    assert run_sync(logical_spec, servers=servers).success
    try:
        drain(engine, scenario.es, logical_spec)  # the seed's inserts
        scenario.execute(f"UPDATE {table} SET title = 'in the slot' WHERE id <= 20")
        scenario.execute(f"DELETE FROM {table} WHERE id BETWEEN 21 AND 30")
        # the doctor of a spec now on triggers sees the slot the logical capture left
        report = check(engine, scenario.es, [triggers])
        (leftover,) = [s for s in report.slots if s.spec == triggers.name]
        assert "left by capture: logical" in leftover.problem, leftover
        assert leftover.fix == [f"sync-pipeline install-triggers --spec {triggers.name}"]
        skipped = _sensor_tick(triggers, live)
        assert isinstance(skipped, dg.SkipReason) and "left by capture: logical" in skipped.skip_message
        install_capture(engine, triggers)  # the switch, with 30 changes unconfirmed in the slot
        with engine.connect() as conn:
            assert replication.slot_state(conn, triggers.name) is None
            assert buffer.buffer_state(conn, triggers).pending >= 30
        scenario.execute(f"UPDATE {table} SET title = 'buffered' WHERE id BETWEEN 31 AND 40")
        totals = drain(engine, scenario.es, triggers)
        assert totals.failed == 0 and totals.deleted == 10, totals
        docs = indexed(scenario.es, scenario.index)
        assert docs["1"]["title"] == "in the slot" and docs["31"]["title"] == "buffered"
        _verified("switch logical -> triggers with 30 changes in the slot", 40, triggers, servers)
    finally:
        scenario.engine.dispose()
        uninstall_capture(engine, triggers)


@pytest.fixture()
def logical_spec(scenario, live):
    spec = scenario.spec(extra=LOGICAL)
    install_capture(scenario.engine, spec)
    seed(scenario, 100)
    assert run_sync(spec, servers=Servers(live.pg_url, live.es_url)).success
    drain(scenario.engine, scenario.es, spec)
    yield spec
    scenario.engine.dispose()
    uninstall_capture(scenario.engine, spec)


def test_the_visibility_wait_takes_a_new_snapshot_instead_of_crashing(
    scenario, logical_spec, live, monkeypatch
):
    """A decoded transaction the drain's first snapshot does not see yet (a commit's WAL record
    precedes its visibility): the drain waits for a snapshot that sees it, with another session's
    transaction held open across the drain."""
    engine, table = scenario.engine, scenario.table
    scenario.execute(f"UPDATE {table} SET title = 'waited for' WHERE id <= 10")
    scenario.execute(f"DELETE FROM {table} WHERE id BETWEEN 11 AND 15")
    looks: list[str] = []
    seen = logical.visible_in

    def late(xid: int, snapshot: str) -> bool:
        looks.append(snapshot)
        return len(looks) > 3 and seen(xid, snapshot)  # the first snapshots miss it

    monkeypatch.setattr(logical, "visible_in", late)
    with engine.connect() as open_conn:
        open_conn.execute(sa.text(f"UPDATE {table} SET title = 'open' WHERE id = 50"))  # held open
        totals = drain(engine, scenario.es, logical_spec)
        open_conn.rollback()
    assert len(looks) > 3 and totals.failed == 0 and totals.deleted == 5, totals
    docs = indexed(scenario.es, scenario.index)
    assert docs["1"]["title"] == "waited for" and "11" not in docs and docs["50"]["title"] != "open"
    _verified(
        "logical: visibility wait with a transaction open",
        15,
        logical_spec,
        Servers(live.pg_url, live.es_url),
    )


def test_a_slot_gap_is_repaired_by_the_verify_fix_its_advice_names(scenario, logical_spec, live):
    """Rows deleted while no slot captured are never found by a full sync (it only writes rows
    that exist): the advice is verify --fix, which deletes their documents too."""
    spec, engine, servers = logical_spec, scenario.engine, Servers(live.pg_url, live.es_url)
    # the fixture's drain closed its stream; its walsender may take a moment to release the slot
    wait_until(lambda: _slot(engine, spec).active_pid is None, 10, "the slot released", 0.05)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_drop_replication_slot(:s)"), {"s": logical.slot_name(spec.name)})
        conn.commit()
    scenario.execute(f"UPDATE {scenario.table} SET title = 'gap' WHERE id <= 5")
    scenario.execute(f"DELETE FROM {scenario.table} WHERE id BETWEEN 6 AND 10")  # no slot sees them
    fix = f"sync-pipeline verify --spec {spec.name} --fix"
    with pytest.raises(SlotMissing) as raised:
        drain(engine, scenario.es, spec)
    assert fix in str(raised.value) and "--full" not in str(raised.value)
    (status,) = check(engine, scenario.es, [spec], {spec.name}).slots
    assert status.fix[-1] == fix and not any("--full" in line for line in status.fix)
    install_capture(engine, spec)
    (report,) = run_verify([spec], [spec], fix=True, servers=servers)
    assert report.drift == 10, report.lines()  # 5 changed, 5 extra: what the gap left
    assert "6" not in indexed(scenario.es, scenario.index)
    _verified("logical: slot dropped, re-installed, verify --fix", 10, spec, servers)


def _slot(engine, spec):
    with engine.connect() as conn:
        return replication.slot_state(conn, spec.name)
