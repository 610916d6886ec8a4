"""Beyond one machine, shown: the same code location runs a multi-partition backfill with each
step on a Celery worker in its own process, Redis as broker (real servers, real workers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sync_pipeline.apps.cli.runner import run_verify
from sync_pipeline.core import naming
from sync_pipeline_devtools import services
from sync_pipeline_tests.conftest import stop_process_groups, wait_until
from sync_pipeline_tests.support.faults import seed

BIN = Path(sys.executable).parent
PARTITIONS = ("2026-02-01", "2026-03-01", "2026-04-01")


def test_a_backfill_runs_each_partition_on_celery_workers_in_separate_processes(scenario, live, tmp_path):
    broker = services.up_redis()
    backend = broker.rsplit("/", 1)[0] + "/1"
    seed(scenario, 3_000)  # February
    scenario.execute(
        f"UPDATE {scenario.table} SET updated_at = updated_at + interval '1 month' WHERE id % 3 = 1"
    )
    scenario.execute(
        f"UPDATE {scenario.table} SET updated_at = updated_at + interval '2 months' WHERE id % 3 = 2"
    )
    config = scenario.spec_file(tmp_path, batch_size="500")
    home = tmp_path / "dagster_home"
    home.mkdir()
    worker_config = tmp_path / "celery.yaml"
    worker_config.write_text(json.dumps({"execution": {"config": {"broker": broker, "backend": backend}}}))
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # dagster-celery runs `celery`
        "DAGSTER_HOME": str(home),
        "SYNC_CONFIG": str(config),
        "SYNC_PG_URL": live.pg_url,
        "SYNC_ES_URL": live.es_url,
        "SYNC_STAGING_DIR": str(tmp_path / "staging"),
        "SYNC_EXECUTOR": "celery",
        "SYNC_CELERY_BROKER": broker,
        "SYNC_CELERY_BACKEND": backend,
    }
    # the instance (SQLite in DAGSTER_HOME, shared by every process here) exists before two
    # workers start at once: both would otherwise race to create its tables
    migrated = subprocess.run(
        [str(BIN / "dagster"), "instance", "migrate"], env=env, capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    logs = [tmp_path / f"worker-{i}.log" for i in (1, 2)]
    workers = [
        subprocess.Popen(
            [
                str(BIN / "dagster-celery"),
                "worker",
                "start",
                "-A",
                "dagster_celery.app",
                "-y",
                str(worker_config),
                "-n",
                f"sync{i}@%h",
                "--",
                "--concurrency",
                "1",
            ],
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for i, log in enumerate(logs, 1)
    ]
    try:
        wait_until(lambda: all("ready" in log.read_text() for log in logs), 120, "both Celery workers")
        job = naming.sync_job(scenario.table)
        runs = [
            subprocess.Popen(
                [
                    str(BIN / "dagster"),
                    "job",
                    "execute",
                    "-m",
                    "sync_pipeline.definitions",
                    "-j",
                    job,
                    "--tags",
                    json.dumps({"dagster/partition": key}),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for key in PARTITIONS
        ]
        outputs = [run.communicate(timeout=300)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0, 0], [o[-2000:] for o in outputs]
        started = time.monotonic()
        while time.monotonic() - started < 10 and not all("succeeded" in log.read_text() for log in logs):
            time.sleep(0.5)
        done = [log.read_text().count("succeeded") for log in logs]
        # every partition's step ran on a worker, and both workers took some
        assert sum(done) >= len(PARTITIONS) and all(done), [log.read_text()[-2000:] for log in logs]
    finally:
        stop_process_groups(workers)
    (report,) = run_verify([scenario.spec()], [scenario.spec()])
    assert report.ok and report.pg_count == 3_000, report.lines()
