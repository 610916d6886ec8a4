"""The catch-up sensor: every closed window ends up synced, whatever happened to its tick.

The schedule syncs the newest closed window once, keyed by its partition: a tick
whose run failed is never retried, and after daemon downtime a schedule catches
up only its latest missed tick. This sensor looks at what the index asset
actually holds: every closed window without a materialization, not being synced
now and not failed within the last `RETRY_SECONDS`, is requested — contiguous
windows as one single-run range, like a backfill.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import dagster as dg

from sync_pipeline.core import naming
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.defs.partitions import partitions_for

INTERVAL_SECONDS = 60
RETRY_SECONDS = 300  # a failed window is tried again this long after its run ended
MAX_RANGES = 10  # runs requested per evaluation; the rest follow on the next ticks
ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def closed_keys(partitions: dg.TimeWindowPartitionsDefinition, now: datetime) -> list[str]:
    """Partition keys whose window ended at or before `now`."""
    keys = partitions.get_partition_keys(current_time=now)
    return [k for k in keys if partitions.time_window_for_partition_key(k).end <= now]


def ranges_of(keys: Sequence[str], wanted: set[str]) -> list[tuple[str, str]]:
    """The contiguous runs of `wanted` among the ordered `keys`, as (first, last)."""
    found: list[tuple[str, str]] = []
    start = previous = None
    for key in keys:
        if key in wanted:
            start = start or key
            previous = key
        elif start is not None:
            found.append((start, previous))
            start = None
    if start is not None:
        found.append((start, previous))
    return found


def run_partitions(
    partitions: dg.TimeWindowPartitionsDefinition, keys: Sequence[str], runs: Iterable[dg.DagsterRun]
) -> set[str]:
    """The partition keys the given runs cover (one partition, or a range)."""
    index = {k: i for i, k in enumerate(keys)}
    covered: set[str] = set()
    for run in runs:
        tags = run.tags
        if tags.get(naming.PARTITION_TAG):
            covered.add(tags[naming.PARTITION_TAG])
        start, end = tags.get(naming.RANGE_START_TAG), tags.get(naming.RANGE_END_TAG)
        if start in index and end in index:
            covered.update(keys[index[start] : index[end] + 1])
    return covered


def missing_ranges(
    partitions: dg.TimeWindowPartitionsDefinition,
    now: datetime,
    materialized: set[str],
    busy: set[str],
) -> list[tuple[str, str]]:
    """Closed windows neither materialized nor busy (being synced, or failed just now)."""
    keys = partitions.get_partition_keys(current_time=now)
    closed = closed_keys(partitions, now)
    return ranges_of(keys, set(closed) - materialized - busy)


def build_catchup_sensor(spec: SyncSpec) -> dg.SensorDefinition:
    partitions = partitions_for(spec)
    job_name = naming.sync_job(spec.name)

    @dg.sensor(
        name=naming.catchup_sensor(spec.name),
        job_name=job_name,
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"sync every closed window of '{spec.name}' that has no materialization: failed runs "
            "are retried, windows missed while the daemon was down are caught up"
        ),
    )
    def catchup(context: dg.SensorEvaluationContext):
        instance = context.instance
        now = datetime.now(UTC)
        keys = partitions.get_partition_keys(current_time=now)
        materialized = instance.get_materialized_partitions(dg.AssetKey(naming.index_asset(spec.name)))
        active = [
            r.dagster_run for r in instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=ACTIVE))
        ]
        recent = now - timedelta(seconds=RETRY_SECONDS)
        failed = [
            r.dagster_run
            for r in instance.get_run_records(
                dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.FAILURE], updated_after=recent)
            )
        ]
        busy = run_partitions(partitions, keys, [*active, *failed])
        ranges = missing_ranges(partitions, now, set(materialized), busy)
        if not ranges:
            return dg.SkipReason("every closed window is synced, being synced, or failed just now")
        context.log.info(
            f"{spec.name}: {len(ranges)} range(s) of closed windows to sync: {ranges[:MAX_RANGES]}"
        )
        return [
            dg.RunRequest(
                tags={
                    naming.RANGE_START_TAG: first,
                    naming.RANGE_END_TAG: last,
                    naming.TRIGGER_TAG: "catchup",
                }
            )
            for first, last in ranges[:MAX_RANGES]
        ]

    return catchup
