"""The shared Dagster instance (PostgreSQL storage, queued runs) and `sync-pipeline history`."""

import json
import os
import subprocess
import sys

import sqlalchemy as sa

from sync_pipeline.apps.instance import dagster_storage_url, prepare_dagster_home
from sync_pipeline_tests.support.paths import ROOT


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


def test_history_of_one_run_lists_every_batch_and_they_add_up_to_the_rows_synced(
    scenario, insert_rows, tmp_path, live, monkeypatch
):
    home = prepare_dagster_home(tmp_path / "home", live.pg_url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SYNC_DAGSTER_PG_URL", dagster_storage_url(live.pg_url))
    insert_rows(range(1, 31), "2026-02-01 00:00:00+00")
    insert_rows(range(31, 48), "2026-03-05 00:00:00+00")
    config = scenario.spec_file(tmp_path, batch_size="10")
    index = f"{scenario.table}_index"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sync_pipeline.apps.cli", "--config", str(config), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=dict(os.environ),
            timeout=600,
        )

    synced = cli("sync", "--spec", scenario.table, "--full", "--json")
    assert synced.returncode == 0, synced.stderr[-3000:]
    (run,) = json.loads(synced.stdout)["runs"]
    assert run["indexed"] == 47

    # the run as `history` prints it: the first 8 characters of its id
    shown = cli("history", "--run", run["run_id"][:8], "--batches")
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines() if line.startswith(index)]
    # asset, batch, partitions, indexed, deleted, stale, conflicts, failed, dead letters, seconds, docs/s
    assert [int(cells[1]) for cells in rows] == [1, 2, 3, 4, 5]  # 47 rows, 10 a batch
    assert sum(int(cells[3]) for cells in rows) == 47
    assert {tuple(cells[4:9]) for cells in rows} == {("0", "0", "0", "0", "0")}
    assert run["run_id"][:8] in shown.stdout

    as_json = cli("history", "--run", run["run_id"], "--batches", "--json")
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["schema"] == "sync_pipeline.history/1" and doc["runs"][0]["run_id"] == run["run_id"]
    batches = doc["batches"]
    assert [(b["asset"], b["batch"]) for b in batches] == [(index, n) for n in range(1, 6)]
    assert sum(b["indexed"] for b in batches) == doc["runs"][0]["indexed"] == 47
    assert all(b["seconds"] > 0 and b["docs_per_second"] > 0 for b in batches)

    missing = cli("history", "--run", "0badc0de", "--batches")
    assert missing.returncode == 2 and "0badc0de" in missing.stderr and "Traceback" not in missing.stderr
    alone = cli("history", "--batches")
    assert alone.returncode == 2 and "--run" in alone.stderr


def test_a_range_run_in_process_materializes_every_partition_of_every_asset_in_postgres(
    scenario, insert_rows, tmp_path, live, monkeypatch
):
    """The CLI writes a range run's asset events in batches (runner._batched_events): what the UI
    shows per partition stays what it was, one materialization per partition and asset."""
    import dagster as dg

    from sync_pipeline.apps.cli.runner import EVENT_BATCH_SIZE, run_sync
    from sync_pipeline.apps.instance import dagster_instance
    from sync_pipeline.defs.partitions import partition_keys_for

    home = prepare_dagster_home(tmp_path / "home", live.pg_url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SYNC_DAGSTER_PG_URL", dagster_storage_url(live.pg_url))
    monkeypatch.delenv(EVENT_BATCH_SIZE, raising=False)
    insert_rows(range(1, 11), "2026-02-01 00:00:00+00")
    insert_rows(range(11, 21), "2026-03-05 00:00:00+00")
    spec = scenario.spec()
    keys = partition_keys_for(spec, None, None)
    assert len(keys) > 2

    summary = run_sync(spec)

    assert summary.success and summary.counts.indexed == 20
    assert EVENT_BATCH_SIZE not in os.environ  # the daemon's runs and child processes keep Dagster's
    instance = dagster_instance()
    for stage in ("extract", "documents", "index"):
        key = dg.AssetKey(f"{spec.name}_{stage}")
        assert sorted(instance.get_materialized_partitions(key)) == sorted(keys), stage
        events = instance.all_logs(summary.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        partitions = [e.dagster_event.partition for e in events if e.dagster_event.asset_key == key]
        assert sorted(partitions) == sorted(keys), stage
