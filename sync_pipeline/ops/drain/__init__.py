"""Drain a spec's captured changes into its index — one loop (ops/drain/loop.py) over the spec's
change source: the trigger buffer or the replication slot (ops/drain/sources.py).

Each claim is a REPEATABLE READ transaction: every document it writes, and every delete, carries
the version of that one snapshot (core/sql/versions.py). A change leaves its source — the buffer's
entries deleted, the slot's position confirmed — only after Elasticsearch acknowledged every
document it affects (a claim holding a TRUNCATE: after the whole spec was reconciled), so a crash
anywhere leaves it for the next drain. A `capture: logical` spec is drained from its slot after
what its triggers buffered before it switched to logical, which no other drain would ever take.
At the end of each run, a partition detached, attached or dropped is answered
(ops/drain/partitions.py).

`follow` keeps a drain going and takes each change as it arrives: a look at the buffer every
`poll_seconds` (or the triggers' NOTIFY, when turned on), or the slot's stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.engine import Engine

from sync_pipeline.core.load.bulk import BatchResult
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.ops.drain.batches import DrainError, DrainTotals
from sync_pipeline.ops.drain.loop import Drain
from sync_pipeline.ops.drain.partitions import reconcile_partition_changes
from sync_pipeline.ops.drain.sources import change_sources
from sync_pipeline.ops.metrics import measured_drain

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
    """Drain the spec's captured changes until none is left (or `max_batches` claims were
    applied, or `deadline`, in time.monotonic(), has passed: what is left waits for the next run,
    which keeps every run inside its max runtime)."""
    if deadline is None:
        deadline = time.monotonic() + spec.buffer_sensor.max_run_seconds
    return _run(engine, es, spec, 0, deadline, run_id, on_batch, batch_size, max_batches)


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
    deadline = time.monotonic() + max_seconds
    return _run(engine, es, spec, idle_seconds, deadline, run_id, on_batch)


def _run(
    engine: Engine,
    es: SearchTarget,
    spec: SyncSpec,
    idle_seconds: float | None,
    deadline: float,
    run_id: str | None,
    on_batch: Callable[[BatchResult], None] | None,
    batch_size: int | None = None,
    max_batches: int | None = None,
) -> DrainTotals:
    run = Drain(engine, es, spec, run_id, on_batch, batch_size)
    sources = change_sources(run, following=idle_seconds != 0)
    try:
        for source in sources:
            # every source but the last is drained of what it holds, the last one followed
            idle = idle_seconds if source is sources[-1] else 0
            run.run(source, idle, deadline, max_batches)
    finally:
        run.close()
        for source in sources:
            source.close()
    # once per run, not per round: a following drain woken by every change would otherwise read
    # the catalog of each watched table each time
    run.totals.absorb(reconcile_partition_changes(engine, es, spec, sources[-1]))
    return run.totals
