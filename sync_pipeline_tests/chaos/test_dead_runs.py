"""A dead run must not stall everything (real servers, a real Dagster daemon).

A drain run whose worker is killed with SIGKILL stays STARTED; the spec's queue (one drain at a
time) would wait behind it forever. Run monitoring fails it after its max runtime, the failure
sensor alerts, and the drain queued behind it applies the changes. The buffer sensor alerts on
lag whatever the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
import yaml

from sync_pipeline.core import naming
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io.buffer import BUFFER
from sync_pipeline.io.postgres import engine_for
from sync_pipeline.io.search import search_client
from sync_pipeline.io.search.indices import drop_target
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline_tests.conftest import CHAOS_RESULTS, free_port, stop_process_groups, wait_until
from sync_pipeline_tests.support.alerts import HttpReceiver
from sync_pipeline_tests.support.paths import ROOT


def _wait(condition, timeout: float, what: str):
    return wait_until(condition, timeout, what, pause=0.5)


def _instance_config(home: Path) -> None:
    """The project's instance settings (queue, tag limits, run monitoring) on SQLite storage, with
    run monitoring looking every 2 s instead of 10."""
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    assert config["run_monitoring"]["enabled"] is True  # what users get
    config.pop("storage")
    config["run_monitoring"]["poll_interval_seconds"] = 2
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


def _bodies(receiver: HttpReceiver) -> list[str]:
    return [request["body"].decode() for request in receiver.requests]


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        found = re.search(r"Started process for run \(pid: (\d+)\)", entry.message or "")
        if found:
            return int(found.group(1))
    return None


def test_a_killed_drain_is_failed_alerted_and_the_queue_moves_on(service_urls, tmp_path, http_receiver):
    name = f"dr_{uuid.uuid4().hex[:8]}"
    engine, es = engine_for(service_urls.pg_url), search_client(service_urls.es_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {name} (id int PRIMARY KEY, title text, updated_at timestamptz)"))
    config = tmp_path / "sync.yaml"
    config.write_text(
        f"""specs:
  - name: {name}
    source: {{table: {name}, primary_key: id, updated_at: updated_at}}
    target: {{index: {name}}}
    partitions: {{grain: month, start: "2026-01-01"}}
    schedule: {{catch_up: false}}
    buffer_sensor: {{min_changes: 1, max_wait_seconds: 1, interval_seconds: 2,
                     follow_seconds: 600, max_run_seconds: 600, max_runtime_seconds: 20}}
"""
    )
    spec = parse_specs(config.read_text())[0]
    install_capture(engine, spec)
    home = tmp_path / "home"
    home.mkdir()
    _instance_config(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)  # the storage exists before the webserver and daemon race for it
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SYNC_CONFIG": str(config),
        "SYNC_STAGING_DIR": str(tmp_path / "staging"),
        "SYNC_PG_URL": service_urls.pg_url,
        "SYNC_ES_URL": service_urls.es_url,
        "SYNC_ALERT_WEBHOOK_URL": f"{http_receiver.base}/hook",
    }
    log = (tmp_path / "dagster-dev.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", str(ROOT / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(free_port())],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    drain_job = naming.drain_job(name)

    def runs(*statuses):
        with dg.DagsterInstance.from_config(str(home)) as instance:
            records = instance.get_run_records(dg.RunsFilter(job_name=drain_job, statuses=list(statuses)))
            return [r.dagster_run for r in records]

    def searchable(doc_id: str) -> bool:
        with contextlib.suppress(Exception):
            es.indices.refresh(index=name)
            return es.exists(index=name, id=doc_id)
        return False

    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {name} VALUES (1, 'first', now())"))
        (first,) = _wait(lambda: runs(dg.DagsterRunStatus.STARTED), 180, "a drain run to start")
        _wait(lambda: searchable("1"), 120, "the first change to be applied")  # the run now follows
        with dg.DagsterInstance.from_config(str(home)) as instance:
            pid = _wait(lambda: _worker_pid(instance, first.run_id), 30, "the run worker's pid")
        os.kill(pid, signal.SIGKILL)  # the worker dies; the run stays STARTED
        with engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {name} VALUES (2, 'second', now())"))
        # run monitoring fails the dead run after its max runtime (20 s); the drain queued behind it
        # (the queue runs one drain per spec) then starts and applies the second change
        _wait(lambda: runs(dg.DagsterRunStatus.FAILURE), 120, "run monitoring to fail the dead run")
        _wait(lambda: searchable("2"), 120, "the queued drain to apply the second change")

        def alerted() -> bool:
            return any(first.run_id in body and "failed" in body.lower() for body in _bodies(http_receiver))

        _wait(alerted, 60, "the run-failure alert")
        CHAOS_RESULTS.append(("drain run worker SIGKILLed, run monitoring", 2, 0, 0))
    finally:
        stop_process_groups([server], grace=60)
        uninstall_capture(engine, spec)
        with engine.begin() as conn:
            conn.execute(BUFFER.delete().where(BUFFER.c.spec == name))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
        drop_target(es, name)


def test_the_buffer_sensor_alerts_when_the_oldest_change_waits_too_long(pg, es, live, http_receiver):
    from sync_pipeline.defs.alerts import AlertChannels
    from sync_pipeline.defs.resources import PostgresResource
    from sync_pipeline.defs.sensors import build_buffer_sensor

    name = f"lag_{uuid.uuid4().hex[:8]}"
    with pg.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {name} (id int PRIMARY KEY, updated_at timestamptz)"))
    spec = parse_specs(
        f"""specs:
  - name: {name}
    source: {{table: {name}, primary_key: id, updated_at: updated_at}}
    target: {{index: {name}}}
    partitions: {{start: "2026-01-01"}}
    buffer_sensor: {{min_changes: 1000, max_wait_seconds: 3600, lag_alert_seconds: 1, follow_seconds: 0}}
"""
    )[0]
    sensor = build_buffer_sensor(spec)
    resources = {
        "postgres": PostgresResource(url=live.pg_url),
        "alert_channels": AlertChannels(webhook_url=f"{http_receiver.base}/hook"),
    }
    try:
        install_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {name} VALUES (1, now())"))
        time.sleep(1.5)
        with dg.instance_for_test() as instance:
            context = dg.build_sensor_context(instance=instance, resources=resources)
            result = sensor(context)
            assert isinstance(result, dg.SkipReason)  # below both drain thresholds: no drain…
            assert len(_bodies(http_receiver)) == 1  # …but the lag is alerted
            assert f"Change buffer of {name}" in _bodies(http_receiver)[0]
            again = dg.build_sensor_context(instance=instance, resources=resources, cursor=context.cursor)
            sensor(again)
            assert len(_bodies(http_receiver)) == 1  # not again while it lasts (resolved once it clears)
    finally:
        uninstall_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(BUFFER.delete().where(BUFFER.c.spec == name))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
