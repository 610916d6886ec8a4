"""SYNC_LOG_FORMAT=json: one JSON object per line on the log stream (stderr), secrets redacted."""

from __future__ import annotations

from urllib.parse import urlsplit

from sync_pipeline_tests.support.cli import cli
from sync_pipeline_tests.support.paths import ROOT
from sync_pipeline_tests.support.structured_logs import objects


def test_a_sync_logs_only_json_lines_with_its_spec_and_counts_and_no_password(
    scenario, insert_rows, tmp_path, live
):
    # the local Elasticsearch ignores credentials: a password of our own in its URL, never shown
    parts = urlsplit(live.es_url)
    es_url = f"{parts.scheme}://elastic:never-shown-8c1f@{parts.netloc}"
    insert_rows(range(1, 26), "2026-02-01 00:00:00+00")
    config = scenario.spec_file(tmp_path, batch_size="10")
    result = cli(
        "--config",
        str(config),
        "sync",
        "--spec",
        scenario.table,
        "--full",
        env={"SYNC_LOG_FORMAT": "json", "SYNC_ES_URL": es_url},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    logged = objects(result.stderr)
    assert "never-shown-8c1f" not in result.stderr and live.pg_url not in result.stderr
    assert logged and all({"time", "level", "logger", "message"} <= set(o) for o in logged)

    # the run's summary: spec, run id, partitions and counts
    (summary,) = [o for o in logged if o.get("message") == f"{scenario.table}: run succeeded"]
    assert (summary["spec"], summary["indexed"], summary["failed"], summary["batches"]) == (
        scenario.table,
        25,
        0,
        3,
    )
    assert summary["run_id"] and summary["partition"] and summary["wall_seconds"] > 0
    # the Dagster step's records: the same run, the load's materialization with its counts
    steps = [o for o in logged if o.get("run_id") == summary["run_id"] and o.get("step")]
    # (a range run materializes each of its partitions, with the load's totals)
    loads = [o for o in steps if o.get("event") == "asset_materialization" and o["asset"].endswith("_index")]
    assert loads and {(o["spec"], o["indexed"], o["batches"]) for o in loads} == {(scenario.table, 25, 3)}
    assert {o["partition"] for o in loads} >= {"2026-02-01"}
    assert any(o.get("event") == "step_success" and o["seconds"] > 0 for o in steps)
    assert logged[-1]["command"] == "sync" and logged[-1]["exit_code"] == 0


def test_an_error_is_a_json_object_with_the_url_password_masked(tmp_path, live):
    config = tmp_path / "sync.yaml"
    config.write_text((ROOT / "sync.yaml").read_text())
    # nothing listens on port 9: the error names the server, password masked
    result = cli(
        "--config",
        str(config),
        "verify",
        env={"SYNC_LOG_FORMAT": "json", "SYNC_ES_URL": "http://elastic:s3cr3t-pw@127.0.0.1:9"},
    )
    assert result.returncode == 2, result.stderr
    logged = objects(result.stderr)
    assert "s3cr3t-pw" not in result.stderr
    errors = [o for o in logged if o["level"] == "error"]
    assert errors and "127.0.0.1:9" in errors[0]["message"] and errors[0]["command"] == "verify"
