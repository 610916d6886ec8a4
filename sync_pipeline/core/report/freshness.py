"""How fresh each spec's index should be, derived from the spec (plain Python, no Dagster).

`defs/freshness.py` turns these limits into Dagster freshness policies: the asset's last
materialization older than `warn_after` shows WARN in the UI's asset health, older than
`fail_after` FAIL (Dagster's freshness daemon evaluates them).

- `<spec>_index` is materialized once per window (the schedule right after it closes, the
  catch-up sensor for any the schedule missed): one window's length apart, or the schedule's
  longest gap when catch-up is off, plus a grace for the run itself.
- `<spec>_changes` is materialized each time a drain run ends: a following drain ends every
  `max_run_seconds`, so one not seen for that plus `lag_alert_seconds` means no drain follows.
  Drains by threshold (`follow_seconds` set) run only when changes wait, so a quiet table is
  not stale: those specs get no policy and the buffer sensor's lag alert watches them instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sync_pipeline.core.spec.model import SyncSpec

GRAIN_PERIOD = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=31),  # the longest month: a 28-day February is never late
}
# a window's run reads after `settle_seconds` and takes its own time: WARN a quarter of an hour
# after one window's length without a materialization, FAIL an hour after
INDEX_WARN_GRACE = timedelta(minutes=15)
INDEX_FAIL_GRACE = timedelta(hours=1)
MIN_WINDOW = timedelta(minutes=1)  # Dagster refuses freshness windows below a minute


@dataclass(frozen=True)
class FreshnessLimits:
    fail_after: timedelta
    warn_after: timedelta | None = None


def index_cadence(spec: SyncSpec, longest_cron_gap: timedelta | None = None) -> timedelta:
    """How far apart the index asset's materializations are expected: one window, or with
    `schedule.catch_up: false` the schedule's longest gap between ticks when that is longer
    (the schedule then is the only thing syncing windows)."""
    period = GRAIN_PERIOD[spec.partitions.grain]
    if spec.schedule.catch_up or longest_cron_gap is None:
        return period
    return max(period, longest_cron_gap)


def index_limits(spec: SyncSpec, longest_cron_gap: timedelta | None = None) -> FreshnessLimits:
    """`schedule.stale_after` when the spec sets it (FAIL only), else one cadence plus the graces."""
    if spec.schedule.stale_after is not None:
        return FreshnessLimits(fail_after=spec.schedule.stale_after)
    cadence = index_cadence(spec, longest_cron_gap)
    return FreshnessLimits(fail_after=cadence + INDEX_FAIL_GRACE, warn_after=cadence + INDEX_WARN_GRACE)


def changes_limits(spec: SyncSpec) -> FreshnessLimits | None:
    """A following drain's run length plus the lag alert threshold; None for drains by threshold."""
    policy = spec.buffer_sensor
    if not policy.always_following:
        return None
    fail = timedelta(seconds=policy.max_run_seconds + policy.lag_alert_seconds)
    return FreshnessLimits(fail_after=max(fail, MIN_WINDOW))
