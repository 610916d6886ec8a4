"""Freshness of each spec's index as Dagster freshness policies: the limits the spec implies
(core/report/freshness.py) and the policies the definitions carry (defs/freshness.py)."""

from datetime import timedelta

import dagster as dg
import pytest

from sync_pipeline import settings
from sync_pipeline.core.report.freshness import changes_limits, index_limits
from sync_pipeline.core.spec.model import SpecError, parse_specs
from sync_pipeline.defs import build_definitions
from sync_pipeline.defs.freshness import longest_cron_gap
from sync_pipeline.defs.resources import resources_for

SPEC = """
specs:
  - name: orders
    source: {{table: orders, primary_key: id, updated_at: updated_at}}
    target: {{index: orders}}
    partitions: {{grain: {grain}, start: "2026-01-01"}}
{extra}"""


def spec(grain: str = "day", extra: str = ""):
    return parse_specs(SPEC.format(grain=grain, extra=extra), origin="test")[0]


@pytest.mark.parametrize(
    ("grain", "cadence"),
    [
        ("hour", timedelta(hours=1)),
        ("day", timedelta(days=1)),
        ("week", timedelta(weeks=1)),
        ("month", timedelta(days=31)),
    ],
)
def test_the_index_warns_and_fails_a_grace_after_one_window(grain, cadence):
    limits = index_limits(spec(grain))
    assert limits.warn_after == cadence + timedelta(minutes=15)
    assert limits.fail_after == cadence + timedelta(hours=1)


def test_stale_after_sets_the_index_limit():
    limits = index_limits(spec(extra="    schedule: {stale_after: PT3H}\n"))
    assert (limits.fail_after, limits.warn_after) == (timedelta(hours=3), None)


def test_stale_after_below_a_minute_is_refused_naming_the_key():
    with pytest.raises(SpecError, match=r"schedule\.stale_after"):
        spec(extra="    schedule: {stale_after: 30}\n")


def test_without_catch_up_a_sparser_schedule_sets_the_cadence():
    weekdays = spec(extra="    schedule: {cron: '15 0 * * 1-5', catch_up: false}\n")
    gap = longest_cron_gap(weekdays.cron, "UTC")
    assert gap == timedelta(days=3)  # Friday 00:15 to Monday 00:15
    assert index_limits(weekdays, gap).fail_after == timedelta(days=3, hours=1)
    # with catch-up, the sensor syncs every window as it closes, whatever the cron
    catching_up = spec(extra="    schedule: {cron: '15 0 * * 1-5'}\n")
    assert index_limits(catching_up, gap).fail_after == timedelta(days=1, hours=1)


def test_only_a_following_drain_has_a_changes_limit():
    assert changes_limits(spec()).fail_after == timedelta(seconds=300 + 600)
    assert changes_limits(spec(extra="    buffer_sensor: {follow_seconds: 0}\n")) is None
    assert changes_limits(spec(extra="    buffer_sensor: {follow_seconds: 30}\n")) is None


def test_the_definitions_carry_dagster_freshness_policies():
    hourly = SPEC.format(grain="hour", extra="    buffer_sensor: {follow_seconds: 0}\n")
    specs = [spec(), parse_specs(hourly.replace("orders", "events"))[0]]
    graph = build_definitions(specs, resources_for(settings.load({}))).resolve_asset_graph()

    index = graph.get(dg.AssetKey("orders_index")).freshness_policy
    assert isinstance(index, dg.FreshnessPolicy)
    assert index.fail_window.to_timedelta() == timedelta(days=1, hours=1)
    assert index.warn_window.to_timedelta() == timedelta(days=1, minutes=15)
    changes = graph.get(dg.AssetKey("orders_changes")).freshness_policy
    assert changes.fail_window.to_timedelta() == timedelta(minutes=15)
    hourly_index = graph.get(dg.AssetKey("events_index")).freshness_policy
    assert hourly_index.fail_window.to_timedelta() == timedelta(hours=2)
    assert graph.get(dg.AssetKey("events_changes")).freshness_policy is None  # drains by threshold
    # the extract and documents steps are the index's inputs: freshness is the index's alone
    assert graph.get(dg.AssetKey("orders_extract")).freshness_policy is None
