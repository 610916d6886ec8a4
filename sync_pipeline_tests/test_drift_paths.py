"""Silent-drift paths closed: late commits, missed and failed windows (real servers and Dagster)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.core import naming
from sync_pipeline.core.specs import parse_specs
from sync_pipeline.core.windows import Window
from sync_pipeline.defs import build_definitions
from sync_pipeline.defs.assets import load_window
from sync_pipeline.defs.catchup import build_catchup_sensor, missing_ranges
from sync_pipeline.defs.partitions import partitions_for
from sync_pipeline.defs.resources import resources_for
from sync_pipeline.io.postgres import sqlalchemy_url
from sync_pipeline.io.search import search_client
from sync_pipeline.io.staging import StagingArea
from sync_pipeline.ops.sync_window import WindowRun
from sync_pipeline.settings import load

from .conftest import CHAOS_RESULTS, indexed


@pytest.mark.integration
@pytest.mark.chaos
def test_a_transaction_open_across_the_tick_is_waited_for_and_its_row_read(scenario, live, tmp_path):
    """The application's transaction stamps updated_at = now() when it starts and commits after
    its window closed: the window's read waits for it instead of missing the row for good."""
    spec = scenario.spec()
    app = sa.create_engine(sqlalchemy_url(live.pg_url), connect_args={"application_name": "shop"})
    conn = app.connect()
    transaction = conn.begin()
    stamped = conn.execute(
        sa.text(
            f"INSERT INTO {scenario.table} (id, title, updated_at) "
            "VALUES (1, 'late', now()) RETURNING updated_at"
        )
    ).scalar_one()
    window = Window(stamped - timedelta(hours=1), stamped + timedelta(seconds=1))
    time.sleep(1.5)  # the window has closed; the transaction is still open
    run = WindowRun(spec, window, "late", scenario.engine, StagingArea(tmp_path), log=lambda _: None)
    outcome = {}
    reader = threading.Thread(
        target=lambda: outcome.update(result=load_window(run, search_client(live.es_url)))
    )
    reader.start()
    time.sleep(2.0)
    transaction.commit()  # commits "in the past", after the tick
    conn.close()
    reader.join(timeout=120)
    result = outcome["result"]
    assert result.extracted.settle_seconds >= 1.5 and result.extracted.open_writers == 0
    assert result.extracted.rows == 1 and indexed(scenario.es, scenario.index)["1"]["title"] == "late"
    CHAOS_RESULTS.append(("transaction open across a window's tick", 1, 0, 0))


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


@pytest.mark.integration
@pytest.mark.chaos
def test_windows_missed_during_downtime_are_synced_by_the_catchup_runs(scenario, live):
    """The daemon was down for several windows: the catch-up sensor's runs, executed as the
    daemon would, leave the index with every row (verify: 0 drift)."""
    from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify
    from sync_pipeline.apps.instance import dagster_instance

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    spec = scenario.spec(grain="day", start=(today - timedelta(days=6)).strftime("%Y-%m-%d"))
    for day in range(6, 0, -1):  # one row in each of the six closed windows
        scenario.execute(
            f"INSERT INTO {scenario.table} (id, title, updated_at) VALUES (:id, 'row', :at)",
            {"id": day, "at": today - timedelta(days=day) + timedelta(hours=12)},
        )
    servers = Servers(live.pg_url, live.es_url)
    first = today - timedelta(days=6)
    assert run_sync([spec], spec, first, first + timedelta(days=1), servers=servers).success
    instance = dagster_instance()
    requests = list(build_catchup_sensor(spec)(dg.build_sensor_context(instance=instance)))
    assert len(requests) == 1  # the five windows after the first, as one range
    resources = resources_for(load(), pg_url=live.pg_url, es_url=live.es_url)
    job = build_definitions([spec], resources).resolve_job_def(naming.sync_job(spec.name))
    for request in requests:
        assert job.execute_in_process(instance=instance, tags=request.tags).success
    assert isinstance(build_catchup_sensor(spec)(dg.build_sensor_context(instance=instance)), dg.SkipReason)
    (report,) = run_verify([spec], [spec], servers=servers)
    assert report.ok and report.pg_count == 6, report.lines()
    CHAOS_RESULTS.append(("daemon down across 5 windows, catch-up runs", 6, report.drift, 0))
