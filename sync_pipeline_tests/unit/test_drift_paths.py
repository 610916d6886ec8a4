"""Silent-drift paths closed, the decisions that need no server: the windows the catch-up
sensor requests
(the late commits and windows on the real servers: chaos/test_drift_paths.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from sync_pipeline.core import naming
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.defs import build_definitions
from sync_pipeline.defs.catchup import build_catchup_sensor, missing_ranges
from sync_pipeline.defs.partitions import partitions_for
from sync_pipeline.defs.resources import resources_for
from sync_pipeline.settings import load


def _daily_spec(name: str, days: int):
    start = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%d")
    return parse_specs(
        f"""
specs:
  - name: {name}
    source: {{table: {name}, primary_key: id, updated_at: updated_at}}
    target: {{index: {name}}}
    partitions: {{grain: day, start: "{start}"}}
"""
    )[0]


def test_windows_missed_while_the_daemon_was_down_are_requested_as_ranges():
    spec = _daily_spec("shop", 7)
    partitions = partitions_for(spec)
    now = datetime.now(UTC)
    keys = partitions.get_partition_keys(current_time=now)
    closed = keys[:-1]  # the last one is the open window
    # synced: the first two and the fifth; being synced now: the sixth
    ranges = missing_ranges(partitions, now, {closed[0], closed[1], closed[4]}, {closed[5]})
    assert ranges == [(closed[2], closed[3]), (closed[6], closed[6])]
    assert missing_ranges(partitions, now, set(closed), set()) == []


def test_the_catchup_sensor_requests_missing_windows_and_retries_a_failed_one_later():
    spec = _daily_spec("shop", 5)
    key = dg.AssetKey(naming.index_asset(spec.name))
    sensor = build_catchup_sensor(spec)
    partitions = partitions_for(spec)
    closed = partitions.get_partition_keys(current_time=datetime.now(UTC))[:-1]
    with dg.instance_for_test() as instance:
        # the daemon was down: only the first window was synced
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=closed[0]))
        requests = list(sensor(dg.build_sensor_context(instance=instance)))
        assert [(r.tags[naming.RANGE_START_TAG], r.tags[naming.RANGE_END_TAG]) for r in requests] == [
            (closed[1], closed[-1])
        ]
        # the catch-up run failed just now: not requested again at once, but later
        # servers named outright: creating a run record connects to neither
        resources = resources_for(
            load({}), pg_url="postgresql://u@127.0.0.1:1/db", es_url="http://127.0.0.1:1"
        )
        definitions = build_definitions([spec], resources)
        job = definitions.resolve_job_def(naming.sync_job(spec.name))
        failed = instance.create_run_for_job(
            job_def=job, tags={naming.RANGE_START_TAG: closed[1], naming.RANGE_END_TAG: closed[-1]}
        )
        instance.report_run_failed(failed)
        skipped = sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(skipped, dg.SkipReason)
        # every window synced: nothing to do
        for partition in closed:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))
        assert isinstance(sensor(dg.build_sensor_context(instance=instance)), dg.SkipReason)
