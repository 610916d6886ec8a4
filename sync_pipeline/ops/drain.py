"""Drain a spec's captured changes into its index: the buffer (triggers) or the slot (logical).

A trigger drain claims a batch of buffer entries with FOR UPDATE SKIP LOCKED
(two drains never take the same entry), in a REPEATABLE READ transaction:
every document it writes, and every delete, carries the version of that one
snapshot (core/versions.py); the shared apply step is ops/apply.py. The
entries are deleted only after Elasticsearch acknowledged every document, in
the same transaction as the claim (a claim holding a TRUNCATE: after its
reconcile, in one of their own): a crash anywhere leaves them queued.
A `capture: logical` spec is drained from its replication slot instead
(ops/logical_drain.py), with the same apply step and the same guarantee —
after what its triggers buffered before it switched to logical, which no
other drain would ever take.

`follow` keeps a drain going and finds each change: a look at the buffer
every `poll_seconds` (or the triggers' NOTIFY, when turned on), or the slot's stream.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from sync_pipeline.core.bulk import BatchResult
from sync_pipeline.core.fanout import BUFFER_TABLE
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.io import buffer
from sync_pipeline.io.buffer import ChangeListener, has_pending
from sync_pipeline.io.postgres import is_serialization_failure
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.ops.apply import (
    REPEATABLE_READ,
    Batches,
    DrainError,
    DrainTotals,
    apply_claimed,
    holds_truncate,
    reconcile_truncate,
    remove_claimed,
)
from sync_pipeline.ops.binding import Bound, bind
from sync_pipeline.ops.logical_drain import follow_logical
from sync_pipeline.ops.metrics import measured_drain
from sync_pipeline.ops.partition_sets import reconcile_partition_changes
from sync_pipeline.ops.prepare import prepare_target

__all__ = ["DrainError", "DrainTotals", "drain", "follow"]


@measured_drain
def drain(
    engine: Engine,
    es: SearchTarget,
    spec: SyncSpec,
    batch_size: int | None = None,
    run_id: str | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    max_batches: int | None = None,
    deadline: float | None = None,
) -> DrainTotals:
    """Drain the spec's buffered changes in claimed batches until the buffer is empty
    (or `max_batches` claims were applied, or `deadline`, in time.monotonic(), has passed:
    what is left waits for the next run, which keeps every run inside its max runtime); then
    answer a partition detached, attached or dropped since the last drain
    (ops/partition_sets.py)."""
    if spec.capture == "logical":
        seconds = (
            max(0.0, deadline - time.monotonic())
            if deadline is not None
            else spec.buffer_sensor.max_run_seconds
        )
        totals = _logical(engine, es, spec, 0, seconds, run_id, on_batch)
    else:
        totals = _drain_buffer(engine, es, spec, batch_size, run_id, on_batch, max_batches, deadline)
    totals.absorb(reconcile_partition_changes(engine, es, spec))
    return totals


def _logical(
    engine: Engine,
    es: SearchTarget,
    spec: SyncSpec,
    idle_seconds: float | None,
    max_seconds: float,
    run_id: str | None,
    on_batch: Callable[[BatchResult], None] | None,
) -> DrainTotals:
    """A logical spec's drain: first what the buffer still holds for it (entries its triggers
    recorded before it switched to `capture: logical` — nothing else would ever drain them), then
    its slot."""
    deadline = time.monotonic() + max_seconds
    totals = DrainTotals()
    with engine.connect() as conn:
        leftover = buffer.buffer_exists(conn) and buffer.buffer_state(conn, spec).pending > 0
    if leftover:
        totals.absorb(_drain_buffer(engine, es, spec, run_id=run_id, on_batch=on_batch, deadline=deadline))
    left = max(0.0, deadline - time.monotonic())
    totals.absorb(follow_logical(engine, es, spec, idle_seconds, left, run_id, on_batch))
    return totals


def _drain_buffer(
    engine: Engine,
    es: SearchTarget,
    spec: SyncSpec,
    batch_size: int | None = None,
    run_id: str | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    max_batches: int | None = None,
    deadline: float | None = None,
) -> DrainTotals:
    totals = DrainTotals()
    size = batch_size or spec.batch_size
    with engine.connect() as conn:
        if not buffer.buffer_exists(conn):  # nothing was ever installed: nothing to drain
            return totals
    bound = bind(engine, spec)
    # a refill or rebuild the index needs is the caller's to run: TargetNotReady (defs/assets.py)
    totals.mapping_changes = prepare_target(es, bound, engine).require_ready().lines
    batches = Batches(engine, es, bound, totals, run_id, on_batch)
    tables: dict[str, Any] = {}
    claims = 0
    try:
        while max_batches is None or claims < max_batches:
            if deadline is not None and claims and time.monotonic() >= deadline:
                break
            claims += 1
            try:
                claimed = _apply_claim(engine, es, spec, bound, batches, size, tables, totals)
            except OperationalError as exc:
                if not is_serialization_failure(exc) or "SKIP LOCKED" not in str(exc.statement or ""):
                    raise
                # the claim met entries a concurrent drain deleted after our snapshot began:
                # nothing was written yet, so claim again in a new transaction, whose snapshot
                # lacks them
                continue
            if claimed is None:
                break
            totals.claimed += claimed
    finally:
        batches.close()
    if totals.batches:
        es.indices.refresh(index=spec.target.index)
    return totals


def _apply_claim(
    engine: Engine,
    es: SearchTarget,
    spec: SyncSpec,
    bound: Bound,
    batches: Batches,
    size: int,
    tables: dict[str, Any],
    totals: DrainTotals,
) -> int | None:
    """One claimed batch applied in one REPEATABLE READ transaction; the entries claimed, None
    when the buffer is empty. A claim holding a TRUNCATE is reconciled after its transaction
    ended (a whole-table read must not hold its snapshot and locks), then its entries removed:
    a concurrent drain may claim them meanwhile and reconcile too, which is only work twice."""
    with engine.connect().execution_options(**REPEATABLE_READ) as conn, conn.begin():
        claimed = buffer.claim(conn, spec, bound.plan.keys, size)
        if not claimed:
            return None
        if not holds_truncate(claimed):
            apply_claimed(conn, engine, es, bound, batches, claimed, size, tables, totals, BUFFER_TABLE)
            return len(claimed)
    reconcile_truncate(engine, es, spec, totals, claimed)
    with engine.begin() as conn:
        remove_claimed(conn, claimed, BUFFER_TABLE)
    return len(claimed)


@measured_drain
def follow(
    engine: Engine,
    es: SearchTarget,
    spec: SyncSpec,
    idle_seconds: float | None,
    max_seconds: float,
    run_id: str | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
) -> DrainTotals:
    """Drain, then keep draining what arrives — found by a look at the buffer every
    `buffer_sensor.poll_seconds` (woken by the triggers' NOTIFY when `buffer_sensor.notify`;
    the slot's stream for logical capture) — until nothing arrived for `idle_seconds` (None:
    until `max_seconds` have passed since the start; 0: a single drain).

    A change committed while a drain follows is searchable within its bulk
    request and a refresh, instead of waiting for the sensor's next tick and a
    new run's start (several seconds each).
    """
    if spec.capture == "logical":
        totals = _logical(engine, es, spec, idle_seconds, max_seconds, run_id, on_batch)
    else:
        totals = _follow_buffer(engine, es, spec, idle_seconds, max_seconds, run_id, on_batch)
    # once per run, not per round: a following drain woken by every change would otherwise read
    # the catalog of each watched table each time
    totals.absorb(reconcile_partition_changes(engine, es, spec))
    return totals


def _follow_buffer(
    engine: Engine,
    es: SearchTarget,
    spec: SyncSpec,
    idle_seconds: float | None,
    max_seconds: float,
    run_id: str | None,
    on_batch: Callable[[BatchResult], None] | None,
) -> DrainTotals:
    started = time.monotonic()
    deadline = started + max_seconds
    poll = spec.buffer_sensor.poll_seconds
    with contextlib.ExitStack() as stack:
        listener = None
        if spec.buffer_sensor.notify:  # listening before the first drain: no change slips by
            url = engine.url.render_as_string(hide_password=False)
            listener = stack.enter_context(ChangeListener(url))
        totals = _drain_buffer(engine, es, spec, run_id=run_id, on_batch=on_batch, deadline=deadline)
        last_change = time.monotonic()
        while idle_seconds != 0:
            now = time.monotonic()
            if now >= deadline or (idle_seconds is not None and now - last_change >= idle_seconds):
                break
            if listener is not None:
                woken = listener.wait(spec.name, min(poll, deadline - now))
            else:
                time.sleep(min(poll, deadline - now))
                woken = False
            if not woken and not has_pending(engine, spec):
                continue
            more = _drain_buffer(engine, es, spec, run_id=run_id, on_batch=on_batch, deadline=deadline)
            if more.claimed:
                last_change = time.monotonic()
                totals.absorb(more)
    return totals
