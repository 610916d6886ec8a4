"""Apply the change buffer: claim entries, find the documents they affect, re-read, write.

A drain claims a batch of entries with FOR UPDATE SKIP LOCKED (two drains
never take the same entry), in a REPEATABLE READ transaction: every document
it writes, and every delete, carries the version of that one snapshot
(core/versions.py). Root entries name their document directly; entries of a
related or join table are resolved to the documents they feed (core/fanout.py)
in keyset pages of at most `batch_size` keys — one bulk batch each, counted
like any other — so a rename touching a million documents never holds a
million keys. The entries are deleted only after Elasticsearch acknowledged
every document, in the same transaction as the claim: a crash anywhere leaves
them queued.

A TRUNCATE fired no row trigger, so its entry (op 'T') names no document:
a claim holding one reconciles the whole spec instead — verify with fix,
counted in the drain's totals — and then deletes its entries like any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from sync_pipeline.core import fanout
from sync_pipeline.core.bulk import BatchResult, LoadTotals
from sync_pipeline.core.capture import TRUNCATE_OP
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.io import buffer, deadletters
from sync_pipeline.io.buffer import has_pending
from sync_pipeline.io.postgres import describe_table, execute, is_serialization_failure
from sync_pipeline.ops.binding import Bound, bind
from sync_pipeline.ops.capture import TABLE_SOURCE
from sync_pipeline.ops.prepare import prepare_target
from sync_pipeline.ops.resync import REPEATABLE_READ, Key, classify_stale, resync_keys
from sync_pipeline.ops.verify import verify_spec


class DrainError(RuntimeError):
    """Elasticsearch did not take every document; the claimed entries stay buffered."""


@dataclass
class DrainTotals(LoadTotals):
    claimed: int = 0
    reconciled: int = 0  # claims that held a TRUNCATE and ran a full verify with fix

    def absorb(self, other: LoadTotals) -> None:
        """Add another drain's totals (a following drain's later rounds)."""
        counters = ("batches", "indexed", "deleted", "stale_skipped", "conflicts", "failed", "dead_lettered")
        for name in (*counters, "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.claimed += getattr(other, "claimed", 0)
        self.reconciled += getattr(other, "reconciled", 0)
        self.mapping_changes.extend(other.mapping_changes)
        self.first_errors.extend(other.first_errors[: max(0, 5 - len(self.first_errors))])


class _Batches:
    """Re-sync keys in the claim's transaction, one counted bulk batch per call."""

    def __init__(
        self, engine: Engine, es: Elasticsearch, bound: Bound, totals: DrainTotals, run_id, on_batch
    ):
        self.engine, self.es, self.bound, self.totals = engine, es, bound, totals
        self.run_id, self.on_batch = run_id, on_batch

    def apply(self, conn: Connection, keys: list[Key]) -> None:
        if not keys:
            return
        started = time.perf_counter()
        result = resync_keys(conn, self.es, self.bound, keys, self.totals.batches + 1)
        result.seconds = time.perf_counter() - started
        spec = self.bound.spec
        if result.failed:
            # raising rolls back the claim: every entry stays buffered for the next drain
            raise DrainError(
                f"spec '{spec.name}': {result.failed} documents not acknowledged by Elasticsearch "
                f"(first error: {result.errors[0] if result.errors else '?'}); changes stay buffered"
            )
        classify_stale(self.engine, result)
        deadletters.record(conn, spec.name, result.rejected, "buffer", self.run_id)
        self.totals.add(result)
        if self.on_batch is not None:
            self.on_batch(result)


def _resolved(conn: Connection, bound: Bound, source: str, entries: list[int], size: int, tables: dict):
    """The keys of the documents that `entries` of a related or change table feed, page by page."""
    spec = bound.spec
    width = len(spec.source.primary_key)
    after: list[Any] | None = None
    while True:
        if source.startswith(TABLE_SOURCE):
            name = source.removeprefix(TABLE_SOURCE)
            if name not in tables:
                tables[name] = describe_table(conn, name)
            roots = next(c.roots for c in spec.source.change_tables if c.table == name)
            statement = fanout.query_root_keys(
                spec, bound.columns, roots or "", tables[name], entries, after, size
            )
        else:
            statement = fanout.root_keys(spec, bound.columns, bound.relations, source, entries, after, size)
        rows = execute(conn, statement).all()
        if not rows:
            return
        yield [tuple(row[width:]) for row in rows]
        after = list(rows[-1][:width])
        if len(rows) < size:
            return


def _reconcile(engine: Engine, es: Elasticsearch, spec: SyncSpec, totals: DrainTotals) -> None:
    """After a TRUNCATE: which documents it emptied is unknown, so verify the whole spec and fix
    every difference (documents of rows gone deleted, those whose related rows went re-indexed).
    Its snapshot is taken after the claim's, so it sees the TRUNCATE and every other claimed
    change: those need no resolving of their own."""
    started = time.perf_counter()
    with engine.connect().execution_options(**REPEATABLE_READ) as conn:
        report = verify_spec(conn, es, spec, fix=True)
    repaired = report.repaired or LoadTotals()
    if repaired.failed:
        # as for any batch: raising rolls back the claim, the TRUNCATE stays buffered
        raise DrainError(
            f"spec '{spec.name}': reconciling after a TRUNCATE, {repaired.failed} documents not "
            f"acknowledged by Elasticsearch (first error: {(repaired.first_errors or ['?'])[0]}); "
            "changes stay buffered"
        )
    repaired.seconds = time.perf_counter() - started
    totals.absorb(repaired)
    totals.reconciled += 1


def drain(
    engine: Engine,
    es: Elasticsearch,
    spec: SyncSpec,
    batch_size: int | None = None,
    run_id: str | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    max_batches: int | None = None,
    deadline: float | None = None,
) -> DrainTotals:
    """Drain the spec's buffered changes in claimed batches until the buffer is empty
    (or `max_batches` claims were applied, or `deadline`, in time.monotonic(), has passed:
    what is left waits for the next run, which keeps every run inside its max runtime)."""
    totals = DrainTotals()
    size = batch_size or spec.batch_size
    with engine.connect() as conn:
        buffer.ensure_buffer(conn)
        conn.commit()
    bound = bind(engine, spec)
    totals.mapping_changes = prepare_target(es, bound, engine, run_id).lines
    batches = _Batches(engine, es, bound, totals, run_id, on_batch)
    tables: dict[str, Any] = {}
    claims = 0
    while max_batches is None or claims < max_batches:
        if deadline is not None and claims and time.monotonic() >= deadline:
            break
        claims += 1
        try:
            claimed = _apply_claim(engine, es, spec, bound, batches, size, tables, totals)
        except OperationalError as exc:
            if not is_serialization_failure(exc) or "SKIP LOCKED" not in str(exc.statement or ""):
                raise
            # the claim met entries a concurrent drain deleted after our snapshot began: nothing
            # was written yet, so claim again in a new transaction, whose snapshot lacks them
            continue
        if claimed is None:
            break
        totals.claimed += claimed
    if totals.batches:
        es.indices.refresh(index=spec.target.index)
    return totals


def _apply_claim(
    engine: Engine,
    es: Elasticsearch,
    spec: SyncSpec,
    bound: Bound,
    batches: _Batches,
    size: int,
    tables: dict[str, Any],
    totals: DrainTotals,
) -> int | None:
    """One claimed batch applied in one REPEATABLE READ transaction; the entries claimed, None
    when the buffer is empty."""
    with engine.connect().execution_options(**REPEATABLE_READ) as conn, conn.begin():
        claimed = buffer.claim(conn, spec, bound.plan.keys, size)
        if not claimed:
            return None
        if any(row.op == TRUNCATE_OP for row in claimed):
            _reconcile(engine, es, spec, totals)
            buffer.remove(conn, [row.id for row in claimed])
            return len(claimed)
        width = len(bound.plan.keys)
        roots = dict.fromkeys(tuple(row[3 : 3 + width]) for row in claimed if row.source is None)
        batches.apply(conn, list(roots))
        by_source: dict[str, list[int]] = {}
        for row in claimed:
            if row.source is not None:
                by_source.setdefault(row.source, []).append(row.id)
        for source, entries in by_source.items():
            for keys in _resolved(conn, bound, source, entries, size, tables):
                batches.apply(conn, keys)
        buffer.remove(conn, [row.id for row in claimed])
        return len(claimed)


def follow(
    engine: Engine,
    es: Elasticsearch,
    spec: SyncSpec,
    idle_seconds: float,
    max_seconds: float,
    run_id: str | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    poll_seconds: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DrainTotals:
    """Drain, then keep draining what arrives until the buffer stayed empty for `idle_seconds`
    (or `max_seconds` have passed since the start).

    A change committed while a drain follows is searchable within about
    `poll_seconds` plus its bulk request, instead of waiting for the sensor's
    next tick and a new run's start (several seconds each). `idle_seconds=0`
    is a single drain.
    """
    deadline = time.monotonic() + max_seconds
    totals = drain(engine, es, spec, run_id=run_id, on_batch=on_batch, deadline=deadline)
    started = last_change = clock()
    while idle_seconds > 0:
        now = clock()
        if now - last_change >= idle_seconds or now - started >= max_seconds:
            break
        sleep(poll_seconds)
        if not has_pending(engine, spec):
            continue
        more = drain(engine, es, spec, run_id=run_id, on_batch=on_batch, deadline=deadline)
        if more.claimed:
            last_change = clock()
            totals.absorb(more)
    return totals
