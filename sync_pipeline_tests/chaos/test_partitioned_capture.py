"""Partitioned tables under both capture modes (issue 30, item 1): changes to a partitioned root
reach the index, and so do a TRUNCATE of one partition and a partition detached or attached,
which fire no trigger of the root. Each ends in verify at zero drift."""

from __future__ import annotations

import itertools

import pytest

from sync_pipeline.apps.cli.runner import Servers, run_sync
from sync_pipeline.core.cdc.triggers import function_name, truncate_trigger_name
from sync_pipeline.io import buffer
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline_tests.conftest import indexed
from sync_pipeline_tests.support.faults import record

ROWS = 400
MONTHS = ("2026-01-01", "2026-02-01", "2026-03-01", "2026-04-01")
MODES = ["logical", "triggers"]


def _partitioned(scenario) -> list[str]:
    """The scenario's table as `ev(id, ts, title, updated_at, PRIMARY KEY (id, ts)) PARTITION BY
    RANGE (ts)`, one partition per month; the partitions' names."""
    table = scenario.table
    scenario.execute(f"DROP TABLE {table}")
    scenario.execute(
        f"CREATE TABLE {table} (id bigint, ts timestamptz, title text, updated_at timestamptz, "
        "PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)"
    )
    parts = []
    for i, (low, high) in enumerate(itertools.pairwise(MONTHS)):
        parts.append(f"{table}_p{i}")
        scenario.execute(
            f"CREATE TABLE {parts[-1]} PARTITION OF {table} FOR VALUES FROM ('{low}') TO ('{high}')"
        )
    return parts


def _seed(scenario, first: int, last: int) -> None:
    scenario.execute(
        f"INSERT INTO {scenario.table} (id, ts, title, updated_at) "
        "SELECT g, timestamptz '2026-01-15 00:00:00+00' + (g % 3) * interval '1 month', 'item ' || g, "
        "timestamptz '2026-02-01 00:00:00+00' + (g / 50) * interval '1 minute' "
        "FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) g",
        {"first": first, "last": last},
    )


@pytest.fixture(params=MODES)
def captured(request, scenario, live):
    """A partitioned table, its spec in the given capture mode, installed and fully synced."""
    parts = _partitioned(scenario)
    spec = scenario.spec(extra=f"    capture: {request.param}")
    install_capture(scenario.engine, spec)
    _seed(scenario, 1, ROWS)
    summary = run_sync(spec, servers=Servers(live.pg_url, live.es_url))
    assert summary.success and summary.indexed == ROWS, summary.error
    drain(scenario.engine, scenario.es, spec)
    yield spec, parts
    scenario.engine.dispose()
    uninstall_capture(scenario.engine, spec)
    for part in parts:
        scenario.execute(f"DROP TABLE IF EXISTS {part}")  # a detached one is no longer the root's


def test_updates_and_deletes_of_a_partitioned_table_reach_the_index(scenario, captured):
    spec, _ = captured
    scenario.execute(f"UPDATE {scenario.table} SET title = 'changed ' || id WHERE id % 10 = 0")
    scenario.execute(f"DELETE FROM {scenario.table} WHERE id % 7 = 0")
    totals = drain(scenario.engine, scenario.es, spec)
    assert totals.claimed >= ROWS // 10 + ROWS // 7 and totals.failed == 0
    docs = indexed(scenario.es, scenario.index)
    assert docs["10"]["title"] == "changed 10" and "7" not in docs and len(docs) == ROWS - ROWS // 7
    record(f"partitioned root ({spec.capture}): 10% updated, 1/7 deleted", ROWS // 10 + ROWS // 7, spec)


def test_a_truncate_of_one_partition_reaches_the_index(scenario, captured):
    spec, parts = captured
    scenario.execute(f"TRUNCATE {parts[1]}")  # ids with id % 3 = 1
    totals = drain(scenario.engine, scenario.es, spec)
    assert totals.reconciled == 1
    docs = indexed(scenario.es, scenario.index)
    assert "1" not in docs and "2" in docs and len(docs) == ROWS - len(range(1, ROWS + 1, 3))
    record(f"partitioned root ({spec.capture}): TRUNCATE of one partition", ROWS // 3, spec)


def test_a_partition_detached_then_attached_again_reaches_the_index(scenario, captured):
    spec, parts = captured
    table, gone = scenario.table, len(range(2, ROWS + 1, 3))  # p2 holds ids with id % 3 = 2
    scenario.execute(f"ALTER TABLE {table} DETACH PARTITION {parts[2]}")  # fires nothing
    totals = drain(scenario.engine, scenario.es, spec)
    docs = indexed(scenario.es, scenario.index)
    assert totals.reconciled == 1 and "2" not in docs and "3" in docs and len(docs) == ROWS - gone
    record(f"partitioned root ({spec.capture}): a partition detached", gone, spec)
    scenario.execute(f"UPDATE {parts[2]} SET title = 'while detached' WHERE id = 2")
    scenario.execute(
        f"ALTER TABLE {table} ATTACH PARTITION {parts[2]} FOR VALUES FROM ('{MONTHS[2]}') TO ('{MONTHS[3]}')"
    )
    scenario.execute(f"TRUNCATE {parts[0]}")  # heard by the attached partition's sibling as before
    totals = drain(scenario.engine, scenario.es, spec)
    docs = indexed(scenario.es, scenario.index)
    assert totals.reconciled >= 1 and docs["2"]["title"] == "while detached" and "3" not in docs
    scenario.execute(f"TRUNCATE {parts[2]}")  # the re-attached partition's TRUNCATE is heard too
    assert drain(scenario.engine, scenario.es, spec).reconciled == 1
    assert len(indexed(scenario.es, scenario.index)) == ROWS - len(range(3, ROWS + 1, 3)) - gone
    record(f"partitioned root ({spec.capture}): attached again, TRUNCATEs", ROWS, spec)


@pytest.mark.parametrize("mode", MODES)
def test_a_partitioned_related_table_reaches_its_parents(scenario, live, mode):
    """Reviews in a table partitioned by month, nested in their product's document: a review
    changed, moved to another product (its old link must be logged: REPLICA IDENTITY FULL on each
    partition), deleted, its partition truncated or detached."""
    table, reviews = scenario.table, f"{scenario.table}_reviews"
    scenario.execute(
        f"CREATE TABLE {reviews} (id bigint, product_id bigint, ts timestamptz, stars int, "
        "PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)"
    )
    parts = [f"{reviews}_p{i}" for i in range(3)]
    for part, low, high in zip(parts, MONTHS, MONTHS[1:], strict=False):
        scenario.execute(
            f"CREATE TABLE {part} PARTITION OF {reviews} FOR VALUES FROM ('{low}') TO ('{high}')"
        )
    relation = f"{{name: reviews, table: {reviews}, kind: one_to_many, on: {{product_id: id}}, nested: true}}"
    source = f"table: {table}\n      relations:\n        - {relation}"
    spec = scenario.spec(source=source, extra=f"    capture: {mode}")
    install_capture(scenario.engine, spec)
    try:
        scenario.execute(
            f"INSERT INTO {table} (id, title, updated_at) SELECT g, 'item ' || g, "
            "timestamptz '2026-02-01 00:00:00+00' FROM generate_series(1, 100) g"
        )
        scenario.execute(
            f"INSERT INTO {reviews} SELECT g, 1 + g % 100, "
            "timestamptz '2026-01-15 00:00:00+00' + (g % 3) * interval '1 month', g % 5 "
            "FROM generate_series(1, 300) g"
        )
        summary = run_sync(spec, servers=Servers(live.pg_url, live.es_url))
        assert summary.success and summary.indexed == 100, summary.error
        drain(scenario.engine, scenario.es, spec)
        scenario.execute(f"UPDATE {reviews} SET stars = 9 WHERE id % 10 = 0")
        scenario.execute(f"UPDATE {reviews} SET product_id = 50 WHERE id IN (3, 6, 9)")  # moved
        scenario.execute(f"DELETE FROM {reviews} WHERE id % 7 = 0")
        assert drain(scenario.engine, scenario.es, spec).failed == 0
        docs = indexed(scenario.es, scenario.index)
        assert not any(r["id"] == 3 for r in docs["4"]["reviews"])  # left its old product
        record(f"partitioned related table ({mode}): updated, moved, deleted", 80, spec)
        scenario.execute(f"TRUNCATE {parts[0]}")
        scenario.execute(f"ALTER TABLE {reviews} DETACH PARTITION {parts[1]}")
        assert drain(scenario.engine, scenario.es, spec).reconciled >= 1
        docs = indexed(scenario.es, scenario.index)
        assert {r["ts"][:7] for d in docs.values() for r in d.get("reviews") or []} == {"2026-03"}
        record(f"partitioned related table ({mode}): one partition truncated, one detached", 200, spec)
    finally:
        scenario.engine.dispose()
        uninstall_capture(scenario.engine, spec)
        for part in parts:
            scenario.execute(f"DROP TABLE IF EXISTS {part}")
        scenario.execute(f"DROP TABLE IF EXISTS {reviews}")


def test_uninstall_lists_no_trigger_postgresql_would_refuse_to_drop(scenario):
    """A partitioned table's row trigger is cloned onto each partition; dropping a clone alone is
    refused, so uninstall must drop the parent's (it takes the clones) and never name a clone."""
    parts = _partitioned(scenario)
    spec = scenario.spec()
    install_capture(scenario.engine, spec)
    try:
        with scenario.engine.connect() as conn:
            listed = {(i.relation, i.trigger) for i in buffer.installed(conn, spec)}
        row = function_name(spec.name, scenario.table)
        assert (scenario.table, row) in listed
        assert {(p, truncate_trigger_name(spec.name, scenario.table)) for p in parts} <= listed
        assert not {(p, row) for p in parts} & listed  # the clones
    finally:
        uninstall_capture(scenario.engine, spec)
    with scenario.engine.connect() as conn:
        assert buffer.installed(conn, spec) == []


def test_switching_a_partitioned_table_from_logical_to_triggers_hands_its_changes_over(scenario, live):
    """The slot reports a partitioned table's changes under its partitions' ids: the handover to
    the buffer maps them as the logical drain does, or they would be dropped with the slot."""
    parts = _partitioned(scenario)
    logical_spec, triggers = scenario.spec(extra="    capture: logical"), scenario.spec()
    install_capture(scenario.engine, logical_spec)
    _seed(scenario, 1, ROWS)
    try:
        assert run_sync(logical_spec, servers=Servers(live.pg_url, live.es_url)).success
        drain(scenario.engine, scenario.es, logical_spec)
        scenario.execute(f"UPDATE {scenario.table} SET title = 'in the slot' WHERE id <= 20")
        scenario.execute(f"DELETE FROM {scenario.table} WHERE id BETWEEN 21 AND 30")
        install_capture(scenario.engine, triggers)  # 30 changes unconfirmed in the slot
        with scenario.engine.connect() as conn:
            assert buffer.buffer_state(conn, triggers).pending >= 30
        totals = drain(scenario.engine, scenario.es, triggers)
        assert totals.failed == 0 and totals.deleted == 10, totals
        assert indexed(scenario.es, scenario.index)["1"]["title"] == "in the slot"
        record("partitioned root: switch logical -> triggers with 30 changes in the slot", 30, triggers)
    finally:
        scenario.engine.dispose()
        uninstall_capture(scenario.engine, triggers)
        for part in parts:
            scenario.execute(f"DROP TABLE IF EXISTS {part}")
