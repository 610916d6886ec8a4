"""What a run tells Dagster: one observation per bulk batch, totals per materialization,
and the checks that read them."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

from sync_pipeline.core import naming
from sync_pipeline.core.bulk import BatchResult, LoadTotals
from sync_pipeline.core.specs import SyncSpec


def batch_observation(key: dg.AssetKey, batch: BatchResult) -> dg.AssetObservation:
    """One structured event per bulk batch: visible in the run's event log."""
    return dg.AssetObservation(
        asset_key=key,
        metadata={
            "batch": batch.batch,
            "indexed": batch.indexed,
            "deleted": batch.deleted,
            "stale_skipped": batch.stale_skipped,
            "conflicts": batch.conflicts,
            "failed": batch.failed,
            "dead_lettered": batch.dead_lettered,
            "seconds": round(batch.seconds, 3),
            "docs_per_s": round(batch.docs_per_second, 1),
            **({"first_error": json.dumps(batch.errors[0])} if batch.errors else {}),
        },
    )


def batch_logger(context: dg.OpExecutionContext, key: dg.AssetKey):
    """An `on_batch` callback that logs each batch to the run."""
    return lambda batch: context.log_event(batch_observation(key, batch))


def totals_metadata(totals: LoadTotals, spec: SyncSpec) -> dict[str, Any]:
    return {
        naming.ROW_COUNT: totals.docs,
        "indexed": totals.indexed,
        "deleted": totals.deleted,
        "stale_skipped": totals.stale_skipped,
        "conflicts": totals.conflicts,
        "failed": totals.failed,
        "dead_lettered": totals.dead_lettered,
        "batches": totals.batches,
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
                "first_errors": dg.MetadataValue.json(totals.first_errors),
            },
        ),
    ]
