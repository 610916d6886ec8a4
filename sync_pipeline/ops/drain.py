"""Apply the change buffer: claim entries, re-read their rows, index or delete, release.

A drain claims entries with FOR UPDATE SKIP LOCKED (two drains never take the
same entry), re-reads the current rows, indexes or deletes them, and deletes
the entries only after Elasticsearch acknowledged every document — in the same
transaction as the claim, so a crash anywhere leaves them queued.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch
from sqlalchemy.engine import Engine

from sync_pipeline.core.bulk import BatchResult, LoadTotals
from sync_pipeline.core.documents import document_id
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.io import buffer, deadletters
from sync_pipeline.io.buffer import has_pending
from sync_pipeline.ops.binding import bind, ensure_target
from sync_pipeline.ops.resync import resync_keys


class DrainError(RuntimeError):
    """Elasticsearch did not take every document; the claimed entries stay buffered."""


@dataclass
class DrainTotals(LoadTotals):
    claimed: int = 0

    def absorb(self, other: LoadTotals) -> None:
        """Add another drain's totals (a following drain's later rounds)."""
        for name in ("batches", "indexed", "deleted", "stale_skipped", "failed", "dead_lettered", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.claimed += getattr(other, "claimed", 0)
        self.first_errors.extend(other.first_errors[: max(0, 5 - len(self.first_errors))])


def drain(
    engine: Engine,
    es: Elasticsearch,
    spec: SyncSpec,
    batch_size: int | None = None,
    run_id: str | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    max_batches: int | None = None,
) -> DrainTotals:
    """Drain the spec's buffered changes in claimed batches until the buffer is empty."""
    totals = DrainTotals()
    size = batch_size or spec.batch_size
    with engine.connect() as conn:
        buffer.ensure_buffer(conn)
        conn.commit()
    bound = bind(engine, spec)
    ensure_target(es, bound)
    number = 0
    while max_batches is None or number < max_batches:
        number += 1
        with engine.begin() as conn:
            claimed = buffer.claim(conn, spec, size)
            if not claimed:
                break
            keys: dict[str, tuple[Any, ...]] = {}
            delete_versions: dict[str, int] = {}
            for row in claimed:
                key = tuple(row.pk[c] for c in spec.source.primary_key)
                doc_id = document_id(key)
                keys[doc_id] = key
                micros = int(row.changed_at.timestamp() * 1_000_000)
                delete_versions[doc_id] = max(delete_versions.get(doc_id, 0), micros)
            started = time.perf_counter()
            result = resync_keys(conn, es, bound, list(keys.values()), number, delete_versions)
            result.seconds = time.perf_counter() - started
            if result.failed:
                # raising rolls back the claim: every entry stays buffered for the next drain
                raise DrainError(
                    f"spec '{spec.name}': {result.failed} documents not acknowledged by Elasticsearch "
                    f"(first error: {result.errors[0] if result.errors else '?'}); changes stay buffered"
                )
            deadletters.record(conn, spec.name, result.rejected, "buffer", run_id)
            buffer.remove(conn, [row.id for row in claimed])
        totals.claimed += len(claimed)
        totals.add(result)
        if on_batch is not None:
            on_batch(result)
    if totals.batches:
        es.indices.refresh(index=spec.target.index)
    return totals


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
    totals = drain(engine, es, spec, run_id=run_id, on_batch=on_batch)
    started = last_change = clock()
    while idle_seconds > 0:
        now = clock()
        if now - last_change >= idle_seconds or now - started >= max_seconds:
            break
        sleep(poll_seconds)
        if not has_pending(engine, spec):
            continue
        more = drain(engine, es, spec, run_id=run_id, on_batch=on_batch)
        if more.claimed:
            last_change = clock()
            totals.absorb(more)
    return totals
