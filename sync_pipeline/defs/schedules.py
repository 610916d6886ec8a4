"""A schedule per spec: sync the newest *closed* updated_at window, shortly after it closes."""

from datetime import datetime

import dagster as dg

from sync_pipeline.core import naming
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.defs.partitions import partitions_for


def newest_closed_partition(partitions: dg.TimeWindowPartitionsDefinition, now: datetime) -> str | None:
    """The last window that ended at or before `now` (end_offset=1 adds the open one after it)."""
    keys = partitions.get_partition_keys(current_time=now)
    closed = [k for k in keys[-2:] if partitions.time_window_for_partition_key(k).end <= now]
    return closed[-1] if closed else None


def build_window_schedule(spec: SyncSpec) -> dg.ScheduleDefinition:
    partitions = partitions_for(spec)

    @dg.schedule(
        name=naming.window_schedule(spec.name),
        cron_schedule=spec.cron,
        execution_timezone=spec.schedule.timezone,
        job_name=naming.sync_job(spec.name),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"sync the newest closed {spec.partitions.grain} window of '{spec.name}'",
    )
    def window_schedule(context: dg.ScheduleEvaluationContext):
        key = newest_closed_partition(partitions, context.scheduled_execution_time)
        if key is None:
            return dg.SkipReason("no window has closed yet")
        # the partition key is the run key: a tick evaluated twice never launches twice
        return dg.RunRequest(run_key=key, partition_key=key, tags={naming.TRIGGER_TAG: "schedule"})

    return window_schedule
