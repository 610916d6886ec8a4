"""A partition detached, attached or dropped reaches the index: checked at the end of every
drain run, in both capture modes.

None of the three fires a trigger or logs a row change, yet each takes rows out of a watched
table or brings rows into it. So a drain compares each watched partitioned table's partitions
with the set recorded at install or by the drain before (io/partition_sets.py). When they
differ it first gives the new partitions what the install gives partitions (the TRUNCATE
trigger, or the replica identity logical capture needs), then reconciles the whole spec — the
same verify-and-fix a TRUNCATE gets, at a snapshot taken after the new set was read — and only
then records the new set: a drain that fails on the way leaves the old set, and the next one
reconciles again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.cdc.fanout import Watched
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.io import partition_sets
from sync_pipeline.io.locks import bounded
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.ops.capture import watched_now
from sync_pipeline.ops.drain.batches import DrainTotals, reconcile_truncate
from sync_pipeline.ops.drain.loop import ChangeSource
from sync_pipeline.settings import LockSettings


@dataclass(frozen=True)
class _Change:
    table: str
    now: list[int]
    before: list[int] | None  # None: never recorded (installed before sets were kept)


def _changes(conn: Connection, spec: SyncSpec) -> tuple[list[Watched], list[_Change]]:
    watched = watched_now(conn, spec)
    changes = []
    for table in dict.fromkeys(w.table for w in watched):
        now = partition_sets.current(conn, table)
        if now is None:
            continue  # not partitioned
        before = partition_sets.recorded(conn, spec.name, table)
        if before != now:
            changes.append(_Change(table, now, before))
    return watched, changes


def _cover_partitions(
    engine: Engine, spec: SyncSpec, source: ChangeSource, watched: list[Watched], table: str
) -> None:
    """What the install puts on every partition, on those that lack it; bounded like the install."""
    mine = [w for w in watched if w.table == table]

    def work(conn: Connection) -> None:
        source.cover_partitions(conn, table, mine)

    bounded(engine, f"spec '{spec.name}': capture on new partitions", table, work, LockSettings())


def reconcile_partition_changes(
    engine: Engine, es: SearchTarget, spec: SyncSpec, source: ChangeSource
) -> DrainTotals:
    """Reconcile the spec when a watched table's partitions changed since they were recorded;
    `source`: the spec's change source, which covers new partitions as its install would."""
    totals = DrainTotals()
    with engine.connect() as conn:
        if not partition_sets.table_exists(conn):
            return totals  # capture installed before sets were kept: install records them
        watched, changes = _changes(conn, spec)
        conn.commit()
    if not changes:
        return totals
    for change in changes:
        _cover_partitions(engine, spec, source, watched, change.table)
    if any(change.before is not None for change in changes):
        reconcile_truncate(engine, es, spec, totals)
    with engine.begin() as conn:
        for change in changes:
            partition_sets.record(conn, spec.name, change.table, change.now)
    return totals
