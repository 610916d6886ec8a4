"""What recording every batch of a full sync in its run costs: one event per batch, or one table.

A 10M-row full sync at the default batch size (`batch_size`, 5,000 documents) sends 2,000 bulk
batches. This runs, in process, one asset step against a real Dagster instance storage — the
project's dagster.yaml with PostgreSQL in a schema of its own (what `make ui` and the CLI run
with when SYNC_DAGSTER_PG_URL is set), or SQLite under a temp DAGSTER_HOME (the default
without it) — that reports those batches the ways on the table:

- `per_batch`: one AssetObservation per batch (`defs/reporting.batch_observation`, the drain's way);
- `progress`: `defs/reporting.BatchProgress` without its table (one observation per 10 s of load
  at the 10M point's 13,900 docs/s, the way before issue 28);
- `progress_table`: `BatchProgress` as the sync runs it now: the same, and at the end one
  observation holding every batch as a table (`naming.BATCH_TABLE`);
- `none`: the step reports nothing (the run's own cost, subtracted from the others).

For each: the step's CPU seconds and wall seconds spent reporting (medians of `--repeat` runs),
and the same less `none`, per batch and in total. No Elasticsearch: the batches are made up,
only their reporting is measured.

    .venv/bin/python -m bench.run_history_cost [--rows 10000000] [--storage postgres sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg

from bench import common
from sync_pipeline.core.load.bulk import BatchResult
from sync_pipeline.core.load.counts import Counts
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.defs.reporting import BatchProgress, batch_observation

MODES = ("none", "per_batch", "progress", "progress_table")
SCHEMA = "bench_run_history"
KEY = dg.AssetKey("bench_history_index")
DOCS_PER_SECOND = 13_900  # the 10M point's full sync (docs/benchmarks.md): when progress flushes


def default_batch_size() -> int:
    return SyncSpec.model_fields["batch_size"].default


def _batches(count: int, size: int):
    for number in range(1, count + 1):
        yield BatchResult(batch=number, answered=Counts(indexed=size), seconds=size / DOCS_PER_SECOND * 4)


def _report(context: dg.AssetExecutionContext, mode: str, count: int, size: int) -> None:
    if mode == "per_batch":
        for batch in _batches(count, size):
            context.log_event(batch_observation(KEY, batch))
        return
    if mode in ("progress", "progress_table"):
        now = [0.0]  # the load's own clock: a batch lands every size / DOCS_PER_SECOND seconds
        progress = BatchProgress(context, KEY, clock=lambda: now[0])
        for batch in _batches(count, size):
            now[0] += size / DOCS_PER_SECOND
            progress(batch)
        if mode == "progress_table":
            progress.finish()
        else:
            progress.flush()


def measure(instance: dg.DagsterInstance, mode: str, count: int, size: int) -> dict[str, float]:
    spent: dict[str, float] = {}

    @dg.asset(key=KEY)
    def bench_history_index(context) -> dg.MaterializeResult:  # (no annotation: see assets.py)
        cpu, wall = time.process_time(), time.perf_counter()
        _report(context, mode, count, size)
        spent.update(cpu=time.process_time() - cpu, wall=time.perf_counter() - wall)
        return dg.MaterializeResult(metadata={"batches": count})

    started = time.perf_counter()
    # the console at WARNING, as the CLI runs jobs: only the event log's writes are measured
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = dg.materialize([bench_history_index], instance=instance, run_config=quiet)
    assert result.success
    events = len(instance.all_logs(result.run_id))
    return {**spent, "run_wall": time.perf_counter() - started, "events": events}


def _instance(storage: str, home: Path, pg_url: str | None) -> dg.DagsterInstance:
    from sync_pipeline.apps.instance import dagster_storage_url, instance_yaml

    home.mkdir(parents=True, exist_ok=True)
    if storage == "postgres":
        _drop_schema(pg_url, create=True)
        os.environ["SYNC_DAGSTER_PG_URL"] = dagster_storage_url(pg_url, SCHEMA)
    (home / "dagster.yaml").write_text(instance_yaml(home, postgres=storage == "postgres"))
    return dg.DagsterInstance.from_config(str(home))


def run(rows: int, size: int, storages: list[str], repeat: int) -> dict[str, Any]:
    count = -(-rows // size)
    pg_url = common.server_urls()[0] if "postgres" in storages else None
    results: dict[str, Any] = {"rows": rows, "batch_size": size, "batches": count, "storage": {}}
    for storage in storages:
        with tempfile.TemporaryDirectory(prefix="run-history-") as temp:
            instance = _instance(storage, Path(temp) / "home", pg_url)
            measure(instance, "none", 1, size)  # warm: the storage's tables, Dagster's imports
            figures: dict[str, dict[str, float]] = {}
            for mode in MODES:
                runs = [measure(instance, mode, count, size) for _ in range(repeat)]
                figures[mode] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            instance.dispose()
        base = figures["none"]
        for figure in figures.values():
            figure["extra_cpu"] = figure["cpu"] - base["cpu"]
            figure["extra_wall"] = figure["wall"] - base["wall"]
            figure["cpu_ms_per_batch"] = 1000 * figure["extra_cpu"] / count
        results["storage"][storage] = figures
        if storage == "postgres":
            _drop_schema(pg_url)
    return results


def _drop_schema(pg_url: str, create: bool = False) -> None:
    import sqlalchemy as sa

    with common.engine(pg_url).begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
        if create:
            conn.execute(sa.text(f'CREATE SCHEMA "{SCHEMA}"'))


def print_table(results: dict[str, Any]) -> None:
    print(f"{results['rows']:,} rows / {results['batch_size']:,} = {results['batches']:,} batches")
    print(f"{'storage':10} {'mode':15} {'events':>7} {'CPU s':>8} {'wall s':>8} {'CPU ms/batch':>13}")
    for storage, figures in results["storage"].items():
        for mode, f in figures.items():
            print(
                f"{storage:10} {mode:15} {f['events']:7.0f} {f['extra_cpu']:8.2f} "
                f"{f['extra_wall']:8.2f} {f['cpu_ms_per_batch']:13.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batch-size", type=int, default=default_batch_size())
    parser.add_argument(
        "--storage", nargs="+", choices=["postgres", "sqlite"], default=["postgres", "sqlite"]
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = run(args.rows, args.batch_size, args.storage, args.repeat)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
