"""Silent-drift paths closed: late commits, missed and failed windows (real servers and Dagster)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from sync_pipeline.core import naming
from sync_pipeline.core.windows import Window
from sync_pipeline.defs import build_definitions
from sync_pipeline.defs.assets import load_window
from sync_pipeline.defs.catchup import build_catchup_sensor
from sync_pipeline.defs.resources import resources_for
from sync_pipeline.io.postgres import sqlalchemy_url
from sync_pipeline.io.search import search_client
from sync_pipeline.io.staging import StagingArea
from sync_pipeline.ops.sync_window import WindowRun
from sync_pipeline.settings import load
from sync_pipeline_tests.conftest import CHAOS_RESULTS, indexed


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
    assert run_sync(spec, first, first + timedelta(days=1), servers=servers).success
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
