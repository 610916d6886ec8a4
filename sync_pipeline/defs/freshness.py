"""Dagster freshness policies of a spec's assets (the limits come from `core/report/freshness.py`).

These are Dagster's own asset freshness (`dg.FreshnessPolicy`, evaluated by the daemon's
freshness loop and shown as the Freshness part of the UI's asset health), not asset checks:
freshness checks (`build_last_update_freshness_checks`) would need a sensor of their own to run
and show only among the checks. `build_freshness_alert_sensor` sends the FAIL state the daemon
records to the alert channels, once, and once resolved when the asset is fresh again.
"""

# no `from __future__ import annotations`: Dagster reads the sensor's resource annotations at runtime
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import dagster as dg

# no public API lists a cron's ticks; this is the iterator Dagster's own schedules use
from dagster._utils.schedules import cron_string_iterator

from sync_pipeline.core import naming
from sync_pipeline.core.report.alert_state import OPEN_KEY, conditions_json, open_conditions, track
from sync_pipeline.core.report.failure_alerts import alert_for_stale
from sync_pipeline.core.report.freshness import FreshnessLimits, changes_limits, index_limits
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.defs.alerts import AlertChannels
from sync_pipeline.defs.sensors import parse_cursor

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


FRESHNESS_ALERTS = "sync_freshness_alerts"
FRESHNESS_ALERT_INTERVAL = 60  # Dagster's freshness loop evaluates every 30 s


def watched_assets(specs: Sequence[SyncSpec]) -> dict[dg.AssetKey, str]:
    """Every asset with a freshness policy, and its spec."""
    watched = {dg.AssetKey(naming.index_asset(spec.name)): spec.name for spec in specs}
    watched.update(
        {dg.AssetKey(naming.changes_asset(s.name)): s.name for s in specs if changes_limits(s) is not None}
    )
    return watched


def stale_lines(records: dict, watched: dict[dg.AssetKey, str]) -> dict[str, list[str]]:
    """Per spec, one line per asset whose recorded freshness is FAIL."""
    stale: dict[str, list[str]] = {}
    for key, record in sorted(records.items(), key=lambda item: item[0].to_user_string()):
        if key in watched and str(getattr(record.freshness_state, "value", "")) == "FAIL":
            since = record.updated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
            stale.setdefault(watched[key], []).append(
                f"{key.to_user_string()}: freshness FAIL since {since} UTC"
            )
    return stale


def build_freshness_alert_sensor(specs: Sequence[SyncSpec]) -> dg.SensorDefinition:
    watched = watched_assets(specs)

    @dg.sensor(
        name=FRESHNESS_ALERTS,
        minimum_interval_seconds=FRESHNESS_ALERT_INTERVAL,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="one alert when a spec's index turns stale (Dagster freshness FAIL), "
        "one when it is fresh again",
    )
    def freshness_alerts(context: dg.SensorEvaluationContext, alert_channels: AlertChannels):
        records = context.instance.get_freshness_state_records(list(watched))
        firing = [
            alert_for_stale(spec, lines) for spec, lines in sorted(stale_lines(records, watched).items())
        ]
        to_send, still_open = track(open_conditions(parse_cursor(context.cursor)), firing, time.time())
        for alert in to_send:
            alert_channels.deliver(alert, context.log)
        context.update_cursor(json.dumps({OPEN_KEY: conditions_json(still_open)}))
        return dg.SkipReason(f"{len(still_open)} spec(s) stale" if still_open else "every index is fresh")

    return freshness_alerts
