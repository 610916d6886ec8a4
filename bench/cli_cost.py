"""The CLI's fixed cost and small documents by CLI wall clock (issue 27, item 4).

- `cli_small`: `sync-pipeline sync --full` of bench_small in a subprocess, timed from outside as
  a user waits for it (imports, the Dagster instance, preflight, run records included); a
  rotation scenario like `cli`, so summary.py gives its docs/s and ratio to `ceiling_small`
  beside the in-process `pipeline_small`.
- `cli_fixed_cost`: the wall time of the same command on a table of one row, `repeat` times after
  a warm-up, each in a fresh DAGSTER_HOME like the `cli` scenario's (SQLite run storage, the
  CLI's default), and again with the run history in PostgreSQL (SYNC_DAGSTER_PG_URL, schema
  bench_cli_dagster: the deployment's storage): what every CLI run costs before and after its
  loads. Median, min and max of each; the target is read on the SQLite figure.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench import common, measure

ONE_ROW_TABLE = "bench_cli_one"  # bench_products' shape, one row
ONE_ROW_INDEX = "bench_cli_one"
DAGSTER_SCHEMA = "bench_cli_dagster"


def sync_command(config: Path, spec: str) -> list[str]:
    return [common.SYNC_PIPELINE, "--config", str(config), "sync", "--spec", spec, "--full"]


def cli_env(harness, config: Path, storage_url: str | None = None) -> dict[str, str]:
    """The harness's environment with a fresh staging dir and DAGSTER_HOME: SQLite run storage
    (the CLI's default without SYNC_DAGSTER_PG_URL, as the `cli` scenario), or with `storage_url`
    the project's dagster.yaml on PostgreSQL."""
    from sync_pipeline.apps.instance import instance_yaml

    staging, home = harness.fresh_dirs()
    env = {k: v for k, v in harness.env.items() if k != "SYNC_DAGSTER_PG_URL"}
    env |= common.run_dirs_env(config, staging, home)
    if storage_url:
        (home / "dagster.yaml").write_text(instance_yaml(home, postgres=True))
        env["SYNC_DAGSTER_PG_URL"] = storage_url
    return env


def run_cli_small(harness) -> None:
    """One `cli_small` measurement: bench_small through the CLI, by wall clock."""
    from sync_pipeline.io.search.indices import drop_target

    drop_target(harness.es, common.SMALL_INDEX)
    config = harness.config_small
    cmd = sync_command(config, common.SMALL_SPEC_NAME)
    log = harness.tmp / f"cli_small-{harness.counter}.log"
    measured = measure.run_measured(
        cmd, cli_env(harness, config), harness.timeout(harness.small_rows), log=log
    )
    if measured["rc"] != 0:
        raise RuntimeError(f"CLI sync failed (exit {measured['rc']}):\n{measured['output_tail']}")
    harness.es.indices.refresh(index=common.SMALL_INDEX)
    count = harness.es.count(index=common.SMALL_INDEX)["count"]
    result = {
        "docs": count,
        "seconds": measured["wall_s"],
        "peak_rss_mb": measured["peak_rss_mb"],
        "process_cpu_s": measured["cpu_s"],
        "docs_in_es": count,
    }
    harness._check_count("cli_small", result, harness.small_rows)
    harness.record("cli_small", result)
    common.drop_bench_indexes(harness.es, f"{common.SMALL_INDEX}*")
    harness.cleanup_dirs()


def fixed_cost(harness, repeat: int) -> dict[str, Any]:
    """The wall (and CPU) seconds of a CLI full sync of one row, per run storage: `repeat` runs
    after a warm-up each."""
    from sync_pipeline.apps.instance import dagster_storage_url

    common.seed_table(harness.pg_url, 1, ONE_ROW_TABLE)
    config = harness.tmp / "sync-cli-one.yaml"
    config.write_text(common.spec_yaml(index=ONE_ROW_INDEX, name=ONE_ROW_TABLE, table=ONE_ROW_TABLE))
    _run_sql(harness.pg_url, f"CREATE SCHEMA IF NOT EXISTS {DAGSTER_SCHEMA}")
    try:
        sqlite = _timed(harness, config, repeat)
        postgres = _timed(harness, config, repeat, dagster_storage_url(harness.pg_url, DAGSTER_SCHEMA))
    finally:
        common.drop_bench_indexes(harness.es, f"{ONE_ROW_INDEX}*")
        _run_sql(harness.pg_url, f"DROP TABLE IF EXISTS {ONE_ROW_TABLE}")
        _run_sql(harness.pg_url, f"DROP SCHEMA IF EXISTS {DAGSTER_SCHEMA} CASCADE")
    return {
        "command": f"sync-pipeline sync --spec {ONE_ROW_TABLE} --full (1 row, a fresh DAGSTER_HOME per run)",
        **sqlite,
        "postgres_storage": postgres,
    }


def _timed(harness, config: Path, repeat: int, storage_url: str | None = None) -> dict[str, Any]:
    from sync_pipeline.io.search.indices import drop_target

    runs = []
    for number in range(repeat + 1):
        # each run creates its index, as the `cli` scenario's: a first sync of the table
        drop_target(harness.es, ONE_ROW_INDEX)
        env = cli_env(harness, config, storage_url)
        log = harness.tmp / f"cli_one-{harness.counter}.log"
        measured = measure.run_measured(sync_command(config, ONE_ROW_TABLE), env, 300, log=log)
        if measured["rc"] != 0:
            raise RuntimeError(
                f"CLI sync of one row failed (exit {measured['rc']}):\n{measured['output_tail']}"
            )
        if number:  # the first is the warm-up (page cache, bytecode)
            runs.append({"wall_s": round(measured["wall_s"], 3), "cpu_s": round(measured["cpu_s"], 3)})
        harness.cleanup_dirs()
    walls = [r["wall_s"] for r in runs]
    return {
        "run_storage": "postgresql" if storage_url else "sqlite",
        "median_s": round(statistics.median(walls), 3),
        "min_s": min(walls),
        "max_s": max(walls),
        "cpu_s_median": round(statistics.median(r["cpu_s"] for r in runs), 3),
        "runs": runs,
    }


def _run_sql(pg_url: str, statement: str) -> None:
    import sqlalchemy as sa

    with common.engine(pg_url).begin() as conn:
        conn.execute(sa.text(statement))
