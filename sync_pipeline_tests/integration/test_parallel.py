"""A backfill spread over parallel runs: several partitions loading at once, each still correct."""

import os
import subprocess
import sys

from dagster import DagsterInstance

from sync_pipeline.apps.cli.runner import run_verify
from sync_pipeline_tests.support.paths import ROOT


def test_partitions_synced_by_parallel_runs_are_each_complete(scenario, insert_rows, tmp_path, es):
    days = ["2026-02-10", "2026-02-11", "2026-02-12", "2026-02-13"]
    for n, day in enumerate(days):
        insert_rows(range(n * 500 + 1, n * 500 + 501), f"{day} 06:00:00+00")  # 500 rows sharing one instant
    config = scenario.spec_file(tmp_path, grain="day", start="2026-02-01", batch_size="97")
    # the test instance is SQLite: create its storage once, before four processes open it at once
    DagsterInstance.get().get_runs(limit=1)
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sync_pipeline.apps.cli",
                "--config",
                str(config),
                "sync",
                "--spec",
                scenario.table,
                "--start",
                day,
                "--end",
                f"{day}T23:59:59",
            ],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for day in days
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], "\n".join(o[-1500:] for o in outputs)
    for day, output in zip(days, outputs, strict=True):
        assert day in output and "500" in output  # each run extracted exactly its window

    (report,) = run_verify([scenario.spec()], [scenario.spec()])
    assert report.ok and report.pg_count == 2000, report.lines()
    assert es.indices.get_alias(name=scenario.index)  # one versioned index behind the alias, despite the race
