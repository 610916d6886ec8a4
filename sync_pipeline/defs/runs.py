"""Reading finished runs back from a Dagster instance: totals per run, for history and alerts."""

from __future__ import annotations

from typing import Any

import dagster as dg

from sync_pipeline.core import naming
from sync_pipeline.core.load.counts import ALERT_ORDER
from sync_pipeline.core.report.run_totals import BatchRecord, RunTotals, fold_batches, fold_materializations


def run_summary(instance: dg.DagsterInstance, run_id: str) -> RunTotals:
    """What a run did, from its materializations."""
    entries = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    materializations = (entry.dagster_event.event_specific_data.materialization for entry in entries)
    return fold_materializations((m.asset_key.to_user_string(), m.metadata) for m in materializations)


def run_totals(instance: dg.DagsterInstance, run_id: str) -> dict[str, int]:
    """Load totals of a run (batches, indexed, deleted, failed, stale_skipped, dead_lettered)."""
    return run_summary(instance, run_id).counts.as_dict(ALERT_ORDER)


def run_batches(instance: dg.DagsterInstance, run_id: str) -> list[BatchRecord]:
    """Every bulk batch a run recorded, by asset and batch number."""
    entries = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION)
    observations = (entry.dagster_event.event_specific_data.asset_observation for entry in entries)
    return fold_batches((o.asset_key.to_user_string(), _plain(o.metadata)) for o in observations)


def _plain(metadata: Any) -> dict[str, Any]:
    """The batch table's rows as mappings; other values as they are (core.report.run_totals reads either)."""
    table = metadata.get(naming.BATCH_TABLE)
    if table is None:
        return dict(metadata)
    return {**metadata, naming.BATCH_TABLE: [record.data for record in table.records]}


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[dict[str, Any]]:
    """Every failed asset check evaluation of a run (one entry per check and asset)."""
    failed = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if evaluation.passed:
            continue
        failed.append(
            {
                "asset_key": evaluation.asset_key.to_user_string(),
                "check_name": evaluation.check_name,
                "partition": getattr(evaluation, "partition", None),
                "metadata": dict(evaluation.metadata),
            }
        )
    return failed
