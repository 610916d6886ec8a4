"""Dagster time-window partitions of a spec, and the SQL window each one reads."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg

from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.windows import Window, window_between, window_key

_PARTITIONS_BY_GRAIN = {
    "hour": (dg.HourlyPartitionsDefinition, "%Y-%m-%d-%H:%M"),
    "day": (dg.DailyPartitionsDefinition, "%Y-%m-%d"),
    "week": (dg.WeeklyPartitionsDefinition, "%Y-%m-%d"),
    "month": (dg.MonthlyPartitionsDefinition, "%Y-%m-%d"),
}


def partitions_for(spec: SyncSpec) -> dg.TimeWindowPartitionsDefinition:
    """updated_at windows; end_offset=1 adds the still-open current window so
    fresh rows have a partition before their window closes."""
    definition, fmt = _PARTITIONS_BY_GRAIN[spec.partitions.grain]
    return definition(start_date=spec.partitions.start.strftime(fmt), timezone="UTC", end_offset=1)


def window_for(
    partitions: dg.TimeWindowPartitionsDefinition,
    start: datetime,
    end: datetime,
    lookback: timedelta = timedelta(0),
) -> tuple[Window, str]:
    """The SQL window for a run over [start, end), and its staging file key."""
    # the first *window*, not the spec's start: a start off the grain boundary (a Wednesday for
    # weekly windows) would otherwise leave the rows before the first boundary to nobody
    first = partitions.get_first_partition_window()
    last = partitions.get_last_partition_window()
    window = window_between(start, end, first.start if first else None, last.end if last else None, lookback)
    return window, window_key(start, end)


def partition_keys_for(spec: SyncSpec, start: datetime | None, end: datetime | None) -> list[str]:
    """The spec's partition keys whose windows overlap [start, end) (all of them when both are None)."""
    partitions = partitions_for(spec)
    keys = partitions.get_partition_keys()
    if start is None and end is None:
        return keys
    selected = []
    for key in keys:
        window = partitions.time_window_for_partition_key(key)
        if (end is None or window.start < end) and (start is None or window.end > start):
            selected.append(key)
    return selected
