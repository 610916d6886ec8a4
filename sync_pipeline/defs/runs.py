"""Reading finished runs back from a Dagster instance: totals per run, for history and alerts."""

from __future__ import annotations

from typing import Any

import dagster as dg

COUNTED = ("batches", "indexed", "deleted", "failed", "stale_skipped", "dead_lettered")


def run_totals(instance: dg.DagsterInstance, run_id: str) -> dict[str, int]:
    """Load totals of a run, from its `_index`/`_changes` materializations (a range run repeats
    the same totals on every partition, so each asset counts once)."""
    totals = dict.fromkeys(COUNTED, 0)
    seen: set[str] = set()
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.dagster_event.event_specific_data.materialization
        name = materialization.asset_key.to_user_string()
        if name in seen or not name.endswith(("_index", "_changes")):
            continue
        seen.add(name)
        for key in COUNTED:
            value = materialization.metadata.get(key)
            totals[key] += int(value.value) if value is not None else 0
    return totals


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
