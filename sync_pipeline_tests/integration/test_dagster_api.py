"""sync_pipeline.apps.dagster_api against a real dagster-webserver and dagster-daemon.

The stack is started once per session (`DagsterStack`, shared with test_flask.py):
the webserver and the daemon on the repository's workspace.yaml, a throwaway
DAGSTER_HOME with Dagster's default instance (runs are queued and launched by
the daemon, as under `make ui`), and a spec file whose specs read tables made
for this session only. Runs really execute, against the real PostgreSQL and
Elasticsearch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from sync_pipeline.apps import dagster_api
from sync_pipeline_tests.conftest import free_port
from sync_pipeline_tests.support.dagster_api import (
    RUN_TIMEOUT,
    DagsterStack,
    month_day,
)

# --- tests ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def stack(service_urls, tmp_path_factory) -> Iterator[DagsterStack]:
    with DagsterStack.shared(service_urls, tmp_path_factory) as running:
        yield running


def test_full_sync_is_one_run_reported_batch_by_batch(stack: DagsterStack):
    spec, keys = stack.spec("api"), stack.partition_keys("api")
    stack.insert("api", range(1, 121), month_day(keys[1]))
    stack.insert("api", range(1000, 1280), month_day(keys[2]))
    stack.insert("api", range(121, 124), None)  # NULL updated_at: owned by the first partition
    stack.insert("api", [124, 125], "2099-01-01 00:00:00+00")  # future: owned by the newest one
    stack.execute(f"UPDATE {stack.table('api')} SET deleted = true WHERE id IN (3, 4)")

    run_id = dagster_api.launch_full_sync(stack.url, spec, run_config=dagster_api.IN_PROCESS)

    status = dagster_api.wait_for_run(stack.url, run_id, timeout=RUN_TIMEOUT)
    report = dagster_api.run_report(stack.url, run_id)
    assert status == "SUCCESS", (report["errors"], stack.logs())
    assert report["status"] == "SUCCESS" and report["job_name"] == f"{spec.name}_sync"
    assert report["partition_range"] == {"start": keys[0], "end": keys[-1]}
    assert report["spec"] == spec.name and report["tags"]["sync_pipeline/spec"] == spec.name
    assert report["start_time"] <= report["end_time"] and report["end_time"].endswith("Z")
    # every bulk batch of the load, from the table its end logs (defs/reporting.BatchProgress; the
    # run page shows the same TableMetadataEntry), not only its progress observations' sums
    batches = report["batches"]
    assert [(b["asset"], b["batch"], b["batches"]) for b in batches] == [
        (f"{spec.name}_index", number, 1) for number in range(1, 10)
    ]
    assert [b["indexed"] + b["deleted"] for b in batches] == [50] * 8 + [5]
    assert sum(b["deleted"] for b in batches) == 2
    assert all(b["failed"] == 0 and b["dead_lettered"] == 0 and b["seconds"] >= 0 for b in batches)
    totals = report["totals"]
    assert (totals["extracted"], totals["indexed"], totals["deleted"], totals["failed"]) == (405, 403, 2, 0)
    assert totals["batches"] == 9 and totals["claimed"] is None and totals["docs_per_s"] > 0
    assert report["errors"] == []
    documents = stack.documents("api")
    assert len(documents) == 403 and "3" not in documents and "124" in documents and "1279" in documents
    assert documents["1"]["title"] == "item 1 商品"

    (latest, *_) = dagster_api.recent_runs(stack.url, spec.name, limit=5)
    assert latest["run_id"] == run_id and latest["totals"] == totals and "batches" not in latest
    assert run_id not in {r["run_id"] for r in dagster_api.recent_runs(stack.url, stack.table("web"))}


def test_backfill_runs_the_range_as_one_run_and_materializes_it(stack: DagsterStack):
    spec, keys = stack.spec("backfill"), stack.partition_keys("backfill")
    stack.insert("backfill", range(1, 31), month_day(keys[1]))
    stack.insert("backfill", range(31, 61), month_day(keys[2], 3))
    stack.insert("backfill", range(61, 71), month_day(keys[3]))  # outside the backfill

    # through the CLI, as a user would: `sync-pipeline backfill` against the running webserver
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "sync_pipeline.apps.cli",
            "--config",
            str(stack.spec_path),
            "backfill",
            "--spec",
            spec.name,
            "--start",
            keys[1],
            "--end",
            f"{keys[2]}T12:00:00",
            "--dagster-url",
            stack.url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert launched.returncode == 0, launched.stderr
    backfill_id = launched.stdout.split()[1].rstrip(":")
    assert f"{keys[1]} … {keys[2]} (2 partitions)" in launched.stdout

    backfill = dagster_api.wait_for_backfill(stack.url, backfill_id, timeout=RUN_TIMEOUT)
    assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, stack.logs())
    assert backfill["partitions"] == keys[1:3] and backfill["tags"]["sync_pipeline/spec"] == spec.name
    # BackfillPolicy.single_run: one run over the whole range, not one per partition
    (run,) = backfill["runs"]
    assert run["status"] == "SUCCESS"
    assert run["tags"]["dagster/asset_partition_range_start"] == keys[1]
    assert run["tags"]["dagster/asset_partition_range_end"] == keys[2]
    report = dagster_api.run_report(stack.url, run["run_id"])
    assert report["backfill_id"] == backfill_id and report["spec"] == spec.name
    assert report["totals"]["indexed"] == 60 and report["totals"]["extracted"] == 60

    statuses = dagster_api.partition_status(stack.url, spec.name)
    assert set(statuses) == {f"{spec.name}_extract", f"{spec.name}_documents", f"{spec.name}_index"}
    for asset, status in statuses.items():
        assert status["materialized"] == keys[1:3], asset
        assert status["missing"] == [keys[0], *keys[3:]], asset
    assert sorted(map(int, stack.documents("backfill"))) == list(range(1, 61))


def test_failures_are_clear_and_name_the_url_not_the_password(stack: DagsterStack):
    closed = f"http://admin:hunter2@127.0.0.1:{free_port()}"
    for call in (
        lambda: dagster_api.launch_drain(closed, "anything"),
        lambda: dagster_api.run_report(closed, "some-run"),
        lambda: dagster_api.launch_backfill(closed, "anything", "a", "b"),
    ):
        with pytest.raises(dagster_api.DagsterUnreachableError) as caught:
            call()
        assert "127.0.0.1" in str(caught.value) and "hunter2" not in str(caught.value)
        assert caught.value.url == closed.replace("hunter2", "***")

    with pytest.raises(dagster_api.DagsterNotFoundError, match="no_such_spec_drain"):
        dagster_api.launch_drain(stack.url, "no_such_spec")
    with pytest.raises(dagster_api.DagsterNotFoundError, match=stack.url):
        dagster_api.run_report(stack.url, str(uuid.uuid4()))
    with pytest.raises(dagster_api.DagsterNotFoundError):
        dagster_api.backfill_status(stack.url, "nosuchbf")
    with pytest.raises(dagster_api.DagsterNotFoundError, match="no_such_spec"):
        dagster_api.launch_full_sync(stack.url, "no_such_spec")
    # Dagster itself would accept these and fail later
    with pytest.raises(ValueError, match="1999-01-01"):
        dagster_api.launch_backfill(stack.url, stack.table("backfill"), "1999-01-01", "1999-02-01")
    keys = stack.partition_keys("backfill")
    with pytest.raises(ValueError, match="reversed"):
        dagster_api.launch_full_sync(stack.url, stack.spec("backfill"), [keys[2], keys[1]])
    with pytest.raises(dagster_api.DagsterApiError, match="Cannot query field"):
        dagster_api.graphql(stack.url, "{ noSuchField }")
