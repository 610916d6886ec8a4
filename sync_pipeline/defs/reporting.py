"""What a run tells Dagster: observations of its bulk batches as they land, totals per
materialization, and the checks that read them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import dagster as dg

from sync_pipeline.core import naming
from sync_pipeline.core.load.bulk import BatchResult, LoadTotals
from sync_pipeline.core.load.counts import PER_BATCH
from sync_pipeline.core.report.redact import shown_errors
from sync_pipeline.core.spec.model import SyncSpec


def batch_counts(batch: BatchResult) -> dict[str, int | float]:
    """A batch's counts and speed under `naming.BATCH_FIELDS`: an observation's numbers, a row of
    the run's batch table."""
    return {
        "batch": batch.batch,
        **batch.counts.as_dict(PER_BATCH),
        "seconds": round(batch.seconds, 3),
        "docs_per_s": round(batch.docs_per_second, 1),
    }


def batch_observation(key: dg.AssetKey, batch: BatchResult) -> dg.AssetObservation:
    """One structured event per bulk batch: visible in the run's event log."""
    return dg.AssetObservation(
        asset_key=key,
        metadata={
            **batch_counts(batch),
            **({"first_error": json.dumps(batch.errors[0])} if batch.errors else {}),
        },
    )


_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(name, "float" if name in ("seconds", "docs_per_s") else "int")
        for name in naming.BATCH_FIELDS
    ]
)


def batch_table(rows: list[dict[str, int | float]]) -> dg.TableMetadataValue:
    """Every batch of a load as one table value (`naming.BATCH_TABLE`)."""
    return dg.MetadataValue.table([dg.TableRecord(row) for row in rows], schema=_TABLE_SCHEMA)


def batch_logger(context: dg.OpExecutionContext, key: dg.AssetKey):
    """An `on_batch` callback that logs each batch to the run."""
    return lambda batch: context.log_event(batch_observation(key, batch))


# A full sync's progress in the run's event log, at most one event per this many seconds (and
# one for every batch with a problem), then every batch's counts in one table when the load ends.
# One event per batch costs ~14 ms of CPU and ~50 ms of wall time each with PostgreSQL storage
# (the event log's write and commit; bench/run_history_cost.py, docs/benchmarks.md): 27 CPU-s
# for the 2,000 batches of a 10M-row sync, and Dagster keeps every event of a run in memory. The
# table is one event however many batches there are (not measurable beside the progress events).
PROGRESS_SECONDS = 10.0


class BatchProgress:
    """An `on_batch` callback that aggregates batches into one observation every `every_seconds`,
    and records every batch for the table `finish()` logs.

    The first batch is reported at once (the UI shows the load has begun); a batch with failed,
    conflicting or dead-lettered documents, or errors, is reported at once with its own
    observation, so no problem waits or is merged into a sum. `finish()` reports what is left and
    the table of every batch (`naming.BATCH_TABLE`, one observation, not one per partition of a
    range run as a materialization's metadata would be): call it when the load ends, whether it
    succeeded or not.
    """

    def __init__(
        self,
        context: dg.OpExecutionContext,
        key: dg.AssetKey,
        every_seconds: float = PROGRESS_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log, self._key, self._every, self._clock = context.log_event, key, every_seconds, clock
        self._pending: LoadTotals | None = None
        self._first = 0
        self._last_batch = 0
        self._docs_total = 0
        self._since = clock()
        self._reported_at: float | None = None
        self._rows: list[dict[str, int | float]] = []  # every batch, for the table
        self._finished = False

    def __call__(self, batch: BatchResult) -> None:
        self._rows.append(batch_counts(batch))
        if batch.failed or batch.conflicts or batch.dead_lettered or batch.errors:
            self.flush()
            self._log(batch_observation(self._key, batch))
            self._docs_total += batch.docs
            self._since = self._clock()
            return
        if self._pending is None:
            self._pending, self._first = LoadTotals(), batch.batch
        self._pending.add(batch)
        self._last_batch = batch.batch
        if self._reported_at is None or self._clock() - self._reported_at >= self._every:
            self.flush()

    def flush(self) -> None:
        pending, now = self._pending, self._clock()
        self._reported_at = now
        if pending is None:
            return
        self._pending = None
        self._docs_total += pending.docs
        elapsed = now - self._since
        self._since = now
        self._log(
            dg.AssetObservation(
                asset_key=self._key,
                metadata={
                    "batch": self._last_batch,  # the last batch of this observation
                    "first_batch": self._first,
                    "batches": pending.batches,
                    **pending.counts.as_dict(PER_BATCH),
                    "seconds": round(pending.seconds, 3),  # the requests' own, overlapping
                    "docs_per_s": round(pending.docs / elapsed, 1) if elapsed > 0 else 0.0,
                    "docs_so_far": self._docs_total,
                },
            )
        )

    def finish(self) -> None:
        """What is left since the last observation, and the table of every batch; once."""
        self.flush()
        if self._finished or not self._rows:
            return
        self._finished = True
        table = batch_table(self._rows)
        self._log(dg.AssetObservation(asset_key=self._key, metadata={naming.BATCH_TABLE: table}))


def totals_metadata(totals: LoadTotals, spec: SyncSpec) -> dict[str, Any]:
    return {
        naming.ROW_COUNT: totals.docs,
        **totals.counts.as_dict(),
        "seconds": round(totals.seconds, 3),
        "docs_per_s": round(totals.docs / totals.seconds, 1) if totals.seconds else 0.0,
        "index": spec.target.index,
        # what readying the index took before this load wrote: created, a field added in place…
        **(
            {"mapping_changes": dg.MetadataValue.md(_bullets(totals.mapping_changes))}
            if totals.mapping_changes
            else {}
        ),
    }


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def load_check_results(totals: LoadTotals) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            check_name=naming.CHECK_NO_FAILED,
            # a conflict is a document the newest read could not write: as lost as a failed one
            passed=totals.failed == 0 and totals.conflicts == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"failed": totals.failed, "conflicts": totals.conflicts},
        ),
        dg.AssetCheckResult(
            check_name=naming.CHECK_NO_DEAD_LETTERS,
            passed=totals.dead_lettered == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "dead_lettered": totals.dead_lettered,
                "first_errors": dg.MetadataValue.json(shown_errors(totals.first_errors)),
            },
        ),
    ]
