"""The shared Dagster instance (PostgreSQL storage, queued runs) and `sync-pipeline history`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from sync_pipeline.apps.instance import dagster_storage_url, prepare_dagster_home

ROOT = Path(__file__).resolve().parent.parent


def test_storage_url_keeps_credentials_and_selects_the_schema():
    url = dagster_storage_url("postgresql+psycopg://u:p%40ss@h:5432/db")
    assert url == "postgresql://u:p%40ss@h:5432/db?options=-csearch_path%3Ddagster"


def test_instance_config_queues_one_load_and_two_drains_per_spec():
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "SYNC_DAGSTER_PG_URL"}
    coordinator = config["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    load, drain = coordinator["config"]["tag_concurrency_limits"]
    assert load == {"key": "sync_pipeline/load", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    # a following drain's successor starts before it ends
    assert drain == {"key": "sync_pipeline/drain", "value": {"applyLimitPerUniqueValue": True}, "limit": 2}


@pytest.mark.integration
def test_runs_land_in_postgres_and_history_prints_their_counts(
    scenario, insert_rows, tmp_path, live, monkeypatch
):
    home = prepare_dagster_home(tmp_path / "home", live.pg_url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SYNC_DAGSTER_PG_URL", dagster_storage_url(live.pg_url))
    insert_rows(range(1, 26), "2026-02-01 00:00:00+00")
    config = scenario.spec_file(tmp_path, batch_size="10")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sync_pipeline.apps.cli", "--config", str(config), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=dict(os.environ),
            timeout=600,
        )

    synced = cli("sync", "--spec", scenario.table, "--full")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    run_prefix = synced.stdout.split("run ", 1)[1][:8]

    with scenario.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT status FROM dagster.runs WHERE run_id LIKE :p"), {"p": run_prefix + "%"}
        ).scalar_one()
    assert stored == "SUCCESS"

    history = cli("history", "--spec", scenario.table, "--last", "5")
    assert history.returncode == 0, history.stderr
    (line,) = [row for row in history.stdout.splitlines() if run_prefix in row]
    cells = line.split()
    assert f"{scenario.table}_sync" in cells and "success" in cells
    # batches, indexed, failed, stale, dead letters
    assert cells[-6:-1] == ["3", "25", "0", "0", "0"]
