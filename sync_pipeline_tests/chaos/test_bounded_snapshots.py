"""Long reads hold no long snapshot (issue 30, item 13).

`verify`, `verify --fix`, the TRUNCATE reconcile and a rebuild's fill and repair
passes read a whole table. Each key range of it is now read in a transaction of
its own, so no transaction of ours stays open across the read (vacuum is never
held back by it) and what is written meanwhile is seen by the ranges read after
it. Each scenario watches from another session, at every Elasticsearch request
of the read, which of our transactions over the table are open; writes land in
the middle of the read, and every scenario ends in `verify` = 0 drift.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli.runner import Servers, run_drain, run_sync, run_verify
from sync_pipeline.io.buffer import BUFFER
from sync_pipeline.io.postgres import sqlalchemy_url
from sync_pipeline.io.search.indices import backing_indices
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline.ops.rebuild import rebuild
from sync_pipeline_tests.conftest import CHAOS_RESULTS

ROWS = 300  # the scenarios' batch_size is 50: six key ranges

# our sessions (application_name sync_pipeline) in a transaction whose last statement read the table
OPEN_OVER_TABLE = (
    "SELECT pid, xact_start FROM pg_stat_activity WHERE datname = current_database() "
    "AND application_name = 'sync_pipeline' AND xact_start IS NOT NULL "
    "AND position(CAST(:table AS text) IN query) > 0"
)


class Watching:
    """An Elasticsearch client that, before each search and bulk request, calls `watch` (and
    passes everything else through)."""

    def __init__(self, es: Any, watch: Callable[[], None]) -> None:
        self._es, self._watch = es, watch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._es, name)

    def search(self, **kwargs: Any) -> Any:
        self._watch()
        return self._es.search(**kwargs)

    def bulk(self, **kwargs: Any) -> Any:
        self._watch()
        return self._es.bulk(**kwargs)


@dataclass
class Observer:
    """At each call: records our open transactions over the table; at the `write_at`-th, runs
    `write` once (a write committed in the middle of the read)."""

    engine: sa.Engine
    table: str
    write: Callable[[], None]
    write_at: int = 2
    seen: list[set[tuple[int, Any]]] = field(default_factory=list)

    def __call__(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(OPEN_OVER_TABLE), {"table": self.table}).all()
        self.seen.append({(row.pid, row.xact_start) for row in rows})
        if len(self.seen) == self.write_at:
            self.write()

    def longest_transaction(self) -> int:
        """In how many of the observations the longest-lived of our transactions was open."""
        counts = Counter(txn for seen in self.seen for txn in seen)
        return max(counts.values(), default=0)


@dataclass(frozen=True)
class WatchedServers(Servers):
    watch: Callable[[], None] = lambda: None

    def search_client(self) -> Any:
        return Watching(super().search_client(), self.watch)


@pytest.fixture()
def observer_engine(live):
    engine = sa.create_engine(
        sqlalchemy_url(live.pg_url), connect_args={"application_name": "bounded_snapshots_observer"}
    )
    yield engine
    engine.dispose()


@pytest.fixture()
def versioned_indices_dropped(scenario):
    """The scenario drops what its alias points at; a rebuild leaves the index it replaced."""
    yield
    for name in scenario.es.indices.get(index=f"{scenario.index}_*", allow_no_indices=True):
        scenario.es.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture()
def captured(scenario, insert_rows):
    """The scenario's 300 rows synced, with trigger capture installed (what is written during a
    read arrives by the drain); the buffer and triggers are removed afterwards."""
    insert_rows(range(1, ROWS + 1), "2026-02-01 00:00:00+00")
    spec = scenario.spec()
    assert run_sync(spec).success
    install_capture(scenario.engine, spec)
    yield spec
    uninstall_capture(scenario.engine, spec)
    with scenario.engine.begin() as conn:
        conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))


def _write_during_the_read(scenario) -> Callable[[], None]:
    """Behind the cursor (ids 1, 2) and ahead of it (290, a new 1000): after the first range."""

    def write() -> None:
        table = scenario.table
        scenario.execute(f"UPDATE {table} SET title = 'behind', updated_at = now() WHERE id = 1")
        scenario.execute(f"DELETE FROM {table} WHERE id = 2")
        scenario.execute(f"UPDATE {table} SET title = 'ahead', updated_at = now() WHERE id = 290")
        scenario.execute(f"INSERT INTO {table} (id, title, updated_at) VALUES (1000, 'new', now())")

    return write


def _settle(spec) -> Any:
    """What the read did not see arrives the ordinary way; then both sides agree."""
    assert run_drain(spec).success
    (after,) = run_verify([spec], [spec])
    assert after.ok and after.pg_count == ROWS, after.lines()
    return after


@pytest.mark.parametrize("fix", [False, True], ids=["verify", "verify-fix"])
def test_verify_reads_key_ranges_each_in_a_snapshot_of_its_own(
    scenario, captured, live, observer_engine, fix
):
    spec = captured
    observer = Observer(observer_engine, scenario.table, _write_during_the_read(scenario))
    servers = WatchedServers(live.pg_url, live.es_url, watch=observer)

    (report,) = run_verify([spec], [spec], fix=fix, servers=servers)

    # no transaction of ours over the table stays open from one range to the next
    assert observer.longest_transaction() <= 1, observer.seen
    assert len(observer.seen) >= 6, observer.seen  # one search per range of 50 documents
    # the ranges after the write read it: the row inserted ahead of the cursor is counted
    assert report.pg_count == ROWS + 1 and report.missing >= 1, report.lines()
    if fix:
        assert report.repaired is not None and report.repaired.indexed >= 2  # 290 and 1000
    after = _settle(spec)
    command = "verify --fix" if fix else "verify"
    CHAOS_RESULTS.append((f"writes during {command} by key ranges", ROWS, after.drift, 0))


def test_rebuild_fills_and_repairs_by_key_ranges(
    scenario, captured, es, observer_engine, versioned_indices_dropped
):
    spec = captured
    observer = Observer(observer_engine, scenario.table, _write_during_the_read(scenario))

    report = rebuild(scenario.engine, Watching(es, observer), spec)

    assert report.swapped and backing_indices(es, scenario.index) == [f"{scenario.index}_v2"]
    assert len(observer.seen) >= 6, observer.seen  # the fill's bulk requests, the passes' searches
    assert observer.longest_transaction() <= 1, observer.seen
    after = _settle(spec)
    CHAOS_RESULTS.append(("writes during a rebuild read by key ranges", ROWS, after.drift, 0))


def test_the_truncate_reconcile_holds_neither_its_claim_nor_a_snapshot_open(
    scenario, captured, insert_rows, es, observer_engine
):
    spec = captured
    scenario.execute(f"TRUNCATE {scenario.table}")
    insert_rows(range(1, ROWS + 1), "2026-03-01 00:00:00+00", title="after the truncate")
    claimed_meanwhile: list[int] = []

    def write() -> None:
        _write_during_the_read(scenario)()
        # the TRUNCATE entry is not held by a claim's transaction while the table is read
        with observer_engine.begin() as conn:
            entries = BUFFER.select().where(BUFFER.c.spec == spec.name, BUFFER.c.op == "T")
            claimed_meanwhile.extend(conn.execute(entries.with_for_update(skip_locked=True)).scalars())

    observer = Observer(observer_engine, scenario.table, write)
    run_id = str(uuid.uuid4())

    totals = drain(scenario.engine, Watching(es, observer), spec, run_id=run_id)

    assert totals.reconciled == 1 and totals.failed == 0, totals
    assert len(observer.seen) >= 6, observer.seen
    assert observer.longest_transaction() <= 1, observer.seen
    assert len(claimed_meanwhile) == 1, claimed_meanwhile
    after = _settle(spec)
    CHAOS_RESULTS.append(("writes during a TRUNCATE reconcile by key ranges", ROWS, after.drift, 0))


def test_a_logical_truncate_reconcile_holds_no_transaction_across_the_read(
    scenario, insert_rows, live, es, observer_engine
):
    spec = scenario.spec(extra="    capture: logical")
    install_capture(scenario.engine, spec)  # the slot first, then the full sync
    try:
        insert_rows(range(1, ROWS + 1), "2026-02-01 00:00:00+00")
        assert run_sync(spec).success
        drain(scenario.engine, es, spec)  # the inserts are in the slot too
        scenario.execute(f"TRUNCATE {scenario.table}")
        insert_rows(range(1, ROWS + 1), "2026-03-01 00:00:00+00", title="after the truncate")
        observer = Observer(observer_engine, scenario.table, _write_during_the_read(scenario))

        totals = drain(scenario.engine, Watching(es, observer), spec)

        assert totals.reconciled == 1 and totals.failed == 0, totals
        assert observer.longest_transaction() <= 1, observer.seen
        assert len(observer.seen) >= 6, observer.seen
        drain(scenario.engine, es, spec)  # what the reconcile's ranges did not see
        (after,) = run_verify([spec], [spec])
        assert after.ok and after.pg_count == ROWS, after.lines()
    finally:
        scenario.engine.dispose()
        uninstall_capture(scenario.engine, spec)
    CHAOS_RESULTS.append(("logical: writes during a TRUNCATE reconcile by key ranges", ROWS, after.drift, 0))
