"""What every drain shares once its changes are claimed: documents written in counted bulk
batches, and the reconcile a TRUNCATE needs.

`Batches` re-reads the documents of a claim's keys in the claim's own REPEATABLE READ
transaction — or takes the rows a fan-out read there already (core/cdc/fanout.fanned_out_rows) —
and sends them while the next are read, several bodies in flight; the claim's entries go only
after Elasticsearch acknowledged every one. A TRUNCATE names no document: a claim holding one reconciles
the whole spec instead (verify with fix, counted in the drain's totals), once the claim's
transaction has ended.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.documents.build import batch_to_bulk
from sync_pipeline.core.load.bulk import BatchResult, BulkBody, LoadTotals, Rejected
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.io import deadletters
from sync_pipeline.io.buffer import ClaimedEntry
from sync_pipeline.io.pandas_probe import skip_pandas_probe
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.ops import progress
from sync_pipeline.ops.binding import Bound
from sync_pipeline.ops.metrics import observe_batch
from sync_pipeline.ops.resync import Key, classify_stale, resync_body, send_resync
from sync_pipeline.ops.verify import verify_spec


class DrainError(RuntimeError):
    """Elasticsearch did not take every document; the claimed entries stay buffered."""


@dataclass
class DrainTotals(LoadTotals):
    claimed: int = 0
    reconciled: int = 0  # claims that held a TRUNCATE and ran a full verify with fix

    def absorb(self, other: LoadTotals) -> None:
        """Add another drain's totals (a following drain's later rounds)."""
        self.counts += other.counts
        self.seconds += other.seconds
        self.claimed += getattr(other, "claimed", 0)
        self.reconciled += getattr(other, "reconciled", 0)
        self.mapping_changes.extend(other.mapping_changes)
        self.keep_errors(other.first_errors)


# bodies sent while the next keys are read, so reading PostgreSQL overlaps indexing instead of
# alternating with it (each body's own requests are split across the index's write threads by
# send_split). More than one: a body's slowest request no longer stalls the next one, which a
# fan-out of many batches felt (a rename reaching 100k documents: bench/fanout.py); memory is
# IN_FLIGHT + 1 bodies of the drain's batch size.
IN_FLIGHT = 2
PARTS_PER_APPLY, MIN_PART_KEYS = 2, 1000  # a large page of keys is read in two halves


class Batches:
    """Re-sync keys in the claim's transaction, one counted bulk batch per body.

    `apply` returns once its bodies are sent or on their way; `settle` waits until Elasticsearch
    acknowledged every one (or raises DrainError) and must come before the claim's entries are
    removed; after any error, `abandon` drops what is still in flight (its claim rolls back)."""

    def __init__(self, engine: Engine, es: SearchTarget, bound: Bound, totals: DrainTotals, run_id, on_batch):
        skip_pandas_probe()  # rows re-read become Arrow arrays: no pandas import for that
        self.engine, self.es, self.bound, self.totals = engine, es, bound, totals
        self.run_id, self.on_batch = run_id, on_batch
        self._pool = ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="drain-bulk")
        self._pending: deque[tuple[Future[BatchResult], Connection, float]] = deque()

    def apply(self, conn: Connection, keys: list[Key]) -> None:
        for part in _parts(keys):
            started = time.perf_counter()
            body, rejected = resync_body(conn, self.bound, part)
            self._send(conn, body, rejected, started)

    def apply_rows(self, conn: Connection, rows: pa.RecordBatch, started: float) -> None:
        """The documents of rows read in the claim's snapshot (a fan-out's: every row exists; a
        soft-deleted one becomes a delete, as in any build), sent like a page of keys' (`started`:
        when their read began)."""
        chunk = batch_to_bulk(rows, self.bound.plan)
        self._send(conn, chunk.body if chunk.docs else None, chunk.rejected, started)

    def _send(
        self, conn: Connection, body: BulkBody | None, rejected: tuple[Rejected, ...], started: float
    ) -> None:
        if rejected:  # in the claim's transaction: its entries go only with their dead letters
            deadletters.record(conn, self.bound.spec.name, rejected, "buffer", self.run_id)
            self.totals.count_dead_letters(rejected)
        while len(self._pending) >= IN_FLIGHT:
            self._finish(self._pending.popleft())
        if body is not None:
            number = self.totals.batches + len(self._pending) + 1
            sent = self._pool.submit(send_resync, self.es, self.bound, body, number)
            self._pending.append((sent, conn, started))

    def write_all(self, conn: Connection, pages: Iterable[list[Key] | pa.RecordBatch]) -> None:
        """Every page — of keys, or of rows already read — written and acknowledged; on any error
        what is still in flight is dropped (it belongs to a transaction that now rolls back) and
        the error raised."""
        try:
            started = time.perf_counter()
            for page in pages:
                if isinstance(page, pa.RecordBatch):
                    self.apply_rows(conn, page, started)
                else:
                    self.apply(conn, page)
                started = time.perf_counter()
            self.settle()
        except BaseException:
            self.abandon()
            raise
        finally:
            # closed now, not when collected: a cursor-backed page generator (io/row_cursor.py)
            # closes its cursor before the claim's transaction ends and the connection is lent again
            close = getattr(pages, "close", None)
            if close is not None:
                close()

    def settle(self) -> None:
        while self._pending:
            self._finish(self._pending.popleft())

    def abandon(self) -> None:
        while self._pending:
            sent, _, _ = self._pending.popleft()
            with contextlib.suppress(Exception):  # the claim rolls back; its error is already raised
                sent.result()

    def close(self) -> None:
        self.abandon()
        self._pool.shutdown()

    def _finish(self, item: tuple[Future[BatchResult], Connection, float]) -> None:
        sent, conn, started = item
        result = sent.result()
        result.seconds = time.perf_counter() - started
        spec = self.bound.spec
        observe_batch(result)
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
        # the CLI's progress (apps/cli/progress.py), as a full sync's load reports it
        progress.notify("batch", spec=spec.name, docs=result.docs, failed=result.failed)


def _parts(keys: list[Key]) -> list[list[Key]]:
    parts = min(PARTS_PER_APPLY, max(1, len(keys) // MIN_PART_KEYS))
    step = -(-len(keys) // parts) if keys else 1
    return [keys[i : i + step] for i in range(0, len(keys), step)]


def reconcile_truncate(
    engine: Engine,
    es: SearchTarget,
    spec: SyncSpec,
    totals: DrainTotals,
    claimed: Iterable[ClaimedEntry] = (),
) -> None:
    """After a TRUNCATE: which documents it emptied is unknown, so verify the whole spec and fix
    every difference (documents of rows gone deleted, those whose related rows went re-indexed).

    Called once the claim's transaction has ended: inside it, the whole-table read would hold
    the claim's snapshot and row locks for as long as it takes. Every key range is read in a
    snapshot taken after the claim's, so it sees the TRUNCATE and every other claimed change:
    those need no resolving of their own. Raises DrainError (the caller then keeps the entries)
    when Elasticsearch did not take every repair. `claimed`: the buffer's entries, whose
    TRUNCATE may say why its trigger could not read its row."""
    # a trigger that could not read its row (a column renamed or dropped since install) says
    # why: the reconcile covers the change, the run shows the cause
    totals.keep_errors(
        {"capture_error": row.capture_error, "source": row.source} for row in claimed if row.capture_error
    )
    started = time.perf_counter()
    report = verify_spec(engine, es, spec, fix=True)
    repaired = report.repaired or LoadTotals()
    if repaired.failed:
        raise DrainError(
            f"spec '{spec.name}': reconciling after a TRUNCATE, {repaired.failed} documents not "
            f"acknowledged by Elasticsearch (first error: {(repaired.first_errors or ['?'])[0]}); "
            "changes stay buffered"
        )
    repaired.seconds = time.perf_counter() - started
    totals.absorb(repaired)
    totals.reconciled += 1
