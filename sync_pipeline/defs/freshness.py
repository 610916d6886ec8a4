"""Dagster freshness policies of a spec's assets (the limits come from `core/freshness.py`).

These are Dagster's own asset freshness (`dg.FreshnessPolicy`, evaluated by the daemon's
freshness loop and shown as the Freshness part of the UI's asset health), not asset checks:
freshness checks (`build_last_update_freshness_checks`) would need a sensor of their own to run
and show only among the checks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

# no public API lists a cron's ticks; this is the iterator Dagster's own schedules use
from dagster._utils.schedules import cron_string_iterator

from sync_pipeline.core.freshness import FreshnessLimits, changes_limits, index_limits
from sync_pipeline.core.specs import SyncSpec

_SAMPLED_TICKS = 400  # a daily cron's year (both DST changes), a weekday cron's weekends


def longest_cron_gap(cron: str, timezone: str, start: datetime | None = None) -> timedelta:
    """The longest time between consecutive ticks of `cron` among the next few hundred."""
    start = start or datetime(2026, 1, 1, tzinfo=UTC)  # fixed: the same definitions every load
    ticks = cron_string_iterator(start.timestamp(), cron, timezone)
    previous = next(ticks)
    longest = timedelta(0)
    for _, tick in zip(range(_SAMPLED_TICKS), ticks, strict=False):
        longest = max(longest, tick - previous)
        previous = tick
    return longest


def _policy(limits: FreshnessLimits) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(fail_window=limits.fail_after, warn_window=limits.warn_after)


def index_freshness_policy(spec: SyncSpec) -> dg.FreshnessPolicy:
    """`<spec>_index`: one window (or schedule gap) plus a grace, or `schedule.stale_after`."""
    gap = None if spec.schedule.catch_up else longest_cron_gap(spec.cron, spec.schedule.timezone)
    return _policy(index_limits(spec, gap))


def changes_freshness_policy(spec: SyncSpec) -> dg.FreshnessPolicy | None:
    """`<spec>_changes` of a spec whose drains follow its changes; None otherwise."""
    limits = changes_limits(spec)
    return _policy(limits) if limits is not None else None
