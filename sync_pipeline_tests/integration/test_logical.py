"""Logical capture on the real servers: install and uninstall, what the slot carries, and the
faults a slot meets — a drain killed before it confirmed, PostgreSQL restarted under a drain,
the slot dropped behind our back (each ends in verify at zero drift). The relation tests
(test_relations.py) run every fan-out case in both capture modes."""

from __future__ import annotations

import os
import threading
import time

import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli.doctor import render
from sync_pipeline.apps.cli.runner import Servers, run_sync
from sync_pipeline.core.cdc import logical
from sync_pipeline.core.cdc.pgoutput import Change, Commit
from sync_pipeline.io import change_stream, replication
from sync_pipeline.io.replication import SlotMissing
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline.ops.health import check
from sync_pipeline_tests.conftest import indexed
from sync_pipeline_tests.support.faults import record, seed
from sync_pipeline_tests.support.logical import _slot


def test_install_creates_slot_and_publication_and_uninstall_drops_both(scenario, logical_spec):
    engine, spec = scenario.engine, logical_spec
    with engine.connect() as conn:
        assert replication.published_tables(conn, spec.name) == {f"public.{scenario.table}"}
        assert replication.slot_state(conn, spec.name).wal_status == "reserved"
    assert install_capture(engine, spec).tables == [scenario.table]  # idempotent
    removed = uninstall_capture(engine, spec)
    assert removed == [
        f"slot {logical.slot_name(spec.name)}",
        f"publication {logical.publication_name(spec.name)}",
    ]
    assert uninstall_capture(engine, spec) == []
    with engine.connect() as conn:
        assert replication.slot_state(conn, spec.name) is None
        assert replication.published_tables(conn, spec.name) is None
    install_capture(engine, spec)  # for the fixture's teardown


def test_updates_deletes_key_changes_and_truncate_reach_the_index(scenario, logical_spec):
    spec, table = logical_spec, scenario.table
    scenario.execute(f"UPDATE {table} SET title = 'renamed' WHERE id <= 10")
    scenario.execute(f"DELETE FROM {table} WHERE id BETWEEN 11 AND 20")
    with scenario.engine.begin() as conn:
        # a key change: the old document goes
        conn.exec_driver_sql(f"UPDATE {table} SET id = 1000 WHERE id = 21")
        applied = logical.lsn_number(replication.insert_lsn(conn))  # after the change, before its commit
    totals = drain(scenario.engine, scenario.es, spec)
    docs = indexed(scenario.es, scenario.index)
    assert docs["1"]["title"] == "renamed" and "11" not in docs and "21" not in docs and "1000" in docs
    assert totals.claimed >= 22 and totals.failed == 0
    # confirmed past what it applied (not within a distance of the WAL's end: any writer moves it)
    assert logical.lsn_number(_slot(scenario.engine, spec).confirmed_lsn) >= applied
    scenario.execute(f"TRUNCATE {table}")
    seed(scenario, 5)
    totals = drain(scenario.engine, scenario.es, spec)
    assert totals.reconciled == 1 and sorted(indexed(scenario.es, scenario.index)) == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    record("logical: updates, deletes, a key change, TRUNCATE", 300, spec)


def test_a_table_without_a_primary_key_still_takes_its_applications_writes(pg, es, live):
    name = "nokey_" + os.urandom(4).hex()
    with pg.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {name} (id bigint NOT NULL, title text, updated_at timestamptz)"))
        conn.execute(sa.text(f"INSERT INTO {name} VALUES (1, 'a', now()), (2, 'b', now())"))
    spec_text = f"""
specs:
  - name: {name}
    capture: logical
    source: {{table: {name}, primary_key: id, updated_at: updated_at}}
    target: {{index: {name}}}
    partitions: {{grain: month, start: "2026-01-01"}}
"""
    from sync_pipeline.core.spec.model import parse_specs

    spec = parse_specs(spec_text)[0]
    try:
        install_capture(pg, spec)
        with pg.begin() as conn:  # published without a key: only REPLICA IDENTITY FULL lets this pass
            conn.execute(sa.text(f"UPDATE {name} SET title = 'c' WHERE id = 1"))
            conn.execute(sa.text(f"DELETE FROM {name} WHERE id = 2"))
            identity = conn.execute(
                sa.text(f"SELECT relreplident FROM pg_class WHERE oid = '{name}'::regclass")
            )
            assert identity.scalar() == "f"
    finally:
        uninstall_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {name}"))


def test_a_stream_read_slower_than_it_arrives_waits_with_a_bounded_backlog_and_loses_nothing(
    scenario, logical_spec, live
):
    spec = logical_spec
    scenario.execute(f"UPDATE {scenario.table} SET title = 'slow ' || id")  # 300 rows, one commit
    before = logical.lsn_number(_slot(scenario.engine, spec).confirmed_lsn)
    stream = change_stream.ChangeStream(live.pg_url, spec.name, queued=change_stream.CHUNK)
    try:
        time.sleep(1.0)  # the drain "applies": the reader fills what it may hold, then waits
        assert stream.backlog <= change_stream.CHUNK
        changed, commit = [], None
        while commit is None:
            message = stream.read(10.0)
            assert message is not None, "the stream stopped before the transaction's end"
            if isinstance(message, Change):
                changed.append(int(message.new["id"]))
            elif isinstance(message, Commit):
                commit = message
        assert sorted(changed) == list(range(1, 301))
        stream.confirm(commit.end_lsn)  # sent by the reader; close sends it at the latest
    finally:
        stream.close()
    deadline = time.monotonic() + 10
    while logical.lsn_number(_slot(scenario.engine, spec).confirmed_lsn) < commit.end_lsn:
        assert time.monotonic() < deadline, "the confirmation never reached the server"
        time.sleep(0.05)
    assert commit.end_lsn > before


def test_a_slot_dropped_behind_our_back_is_a_clear_error_and_a_full_sync_recovers(
    scenario, logical_spec, live
):
    spec, engine = logical_spec, scenario.engine
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_drop_replication_slot(:s)"), {"s": logical.slot_name(spec.name)})
        conn.commit()
    scenario.execute(f"UPDATE {scenario.table} SET title = 'lost' WHERE id <= 5")  # no slot sees it
    with pytest.raises(SlotMissing, match=r"does not exist .* install-triggers .* verify .* --fix"):
        drain(engine, scenario.es, spec)
    report = check(engine, scenario.es, [spec], {spec.name})
    assert report.findings and "no slot" in render(report)
    install_capture(engine, spec)  # a new slot; rows only updated in the gap: a full sync covers them
    summary = run_sync(spec, servers=Servers(live.pg_url, live.es_url))
    assert summary.success, summary.error
    assert indexed(scenario.es, scenario.index)["1"]["title"] == "lost"
    record("logical: slot dropped behind our back, re-installed and fully synced", 5, spec)


def test_doctor_shows_slot_lag_and_flags_it_above_the_threshold(scenario, logical_spec):
    spec = logical_spec.model_copy(
        update={"buffer_sensor": logical_spec.buffer_sensor.model_copy(update={"slot_lag_alert_mb": 0.01})}
    )
    scenario.execute(f"UPDATE {scenario.table} SET title = repeat('x', 200) || id")  # WAL no drain took
    report = check(scenario.engine, scenario.es, [spec], {spec.name})
    (status,) = report.slots
    assert status.lag_bytes > 10_000 and status.age_seconds is not None and status.age_seconds >= 0
    assert "holds" in status.problem and status.fix == [f"sync-pipeline flush --spec {spec.name}"]
    text = render(report)
    assert "replication slots (capture: logical): 1 needs action" in text and "reserved" in text
    drain(scenario.engine, scenario.es, spec)
    (status,) = check(scenario.engine, scenario.es, [logical_spec], {spec.name}).slots
    assert status.problem == "" and status.age_seconds is None


def test_under_a_steady_trickle_a_claim_confirms_only_what_it_applied_and_the_rest_stays_in_the_slot(
    scenario, logical_spec, live
):
    """Commits arriving a few ms apart while a drain reads the slot: the claim it hands out ends
    at a transaction's end, the slot moves only past transactions whose documents Elasticsearch
    acknowledged, and everything after that stays in the slot for the next drain."""
    from sync_pipeline.ops.drain.loop import Drain
    from sync_pipeline.ops.drain.slot import SlotSource

    spec, table, engine = logical_spec, scenario.table, scenario.engine
    committed: list[tuple[int, int, int]] = []  # (commit number, row id, WAL position inside it)
    stop = threading.Event()

    def commit_one() -> None:
        row = len(committed) + 1
        key = (row - 1) % 300 + 1  # the seeded rows, round and round
        with engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE {table} SET title = '{row}' WHERE id = {key}")
            committed.append((row, key, logical.lsn_number(replication.insert_lsn(conn))))

    def trickle() -> None:
        while not stop.is_set() and len(committed) < 3000:
            commit_one()

    run = Drain(engine, scenario.es, spec, batch_size=100_000)
    source = SlotSource(run)
    writer = threading.Thread(target=trickle)
    try:
        source.claim(time.monotonic() + 5)  # opens the stream; nothing yet, or the first commits
        writer.start()
        deadline = time.monotonic() + 60
        claim = None
        while claim is None:
            claim = source.claim(deadline)
        assert 0 < claim.count < 100_000
        run.take(source, claim)  # written, acknowledged, confirmed
        stop.set()
        writer.join()
        for _ in range(5):  # after the claim, whenever it ended: these must wait in the slot
            commit_one()
        source.close()  # the reader sends the confirmation before it closes
        confirmed = logical.lsn_number(_slot(engine, spec).confirmed_lsn)
        assert confirmed == claim.position
        scenario.es.indices.refresh(index=scenario.index)
        docs = indexed(scenario.es, scenario.index)
        # each row's document at least as new as the last commit confirmed for it
        applied = {key: row for row, key, lsn in committed if lsn < confirmed}
        assert applied, "the claim confirmed none of the trickle's commits"
        assert all(int(docs[str(key)]["title"]) >= row for key, row in applied.items())
        later = [row for row, _, lsn in committed if lsn > confirmed]
        totals = drain(engine, scenario.es, spec)  # the rest is still in the slot
        assert later and totals.claimed >= len(later)
        docs = indexed(scenario.es, scenario.index)
        last = {key: row for row, key, _ in committed}
        assert {int(k): int(d["title"]) for k, d in docs.items() if int(k) in last} == last
    finally:
        stop.set()
        if writer.is_alive():
            writer.join()
        source.close()
        run.close()
