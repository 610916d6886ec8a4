"""Commands around the data path: the UI, run history, backfills."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib.resources import as_file
from pathlib import Path
from typing import Any

from sync_pipeline import settings as settings_module
from sync_pipeline.apps.cli import json_shapes
from sync_pipeline.apps.cli.output import EXIT_OK, format_table
from sync_pipeline.apps.cli.runner import HistoryRun, UnknownRun, find_run, run_history
from sync_pipeline.apps.cli.session import Session, UsageError, parse_time
from sync_pipeline.apps.instance import WORKSPACE, dagster_home
from sync_pipeline.core.load.counts import PER_BATCH
from sync_pipeline.core.report.run_totals import BatchRecord
from sync_pipeline.defs.partitions import partition_keys_for

HISTORY_HEADERS = [
    "start (UTC)",
    "duration",
    "job",
    "partitions",
    "status",
    "batches",
    "indexed",
    "failed",
    "stale",
    "dead letters",
    "run",
]


BATCH_HEADERS = [
    "asset",
    "batch",
    "partitions",
    "indexed",
    "deleted",
    "stale",
    "conflicts",
    "failed",
    "dead letters",
    "seconds",
    "docs/s",
]


def cmd_history(args: argparse.Namespace) -> int:
    session = Session.open(args, preflight=False)
    if args.batches and not args.run:
        raise UsageError("--batches lists the batches of one run: give --run ID as well")
    if args.run:
        return _one_run(args, session)
    runs = run_history(session.selected, args.last, session.pg_url)
    if args.json:
        json_shapes.emit(json_shapes.history_document(runs))
    else:
        print(format_table(HISTORY_HEADERS, [history_row(r) for r in runs]) if runs else "no runs yet")
    return EXIT_OK


def _one_run(args: argparse.Namespace, session: Session) -> int:
    """`history --run ID [--batches]`: that run's row, and with --batches every batch it recorded."""
    try:
        run, batches = find_run(session.selected, args.run)
    except UnknownRun as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        json_shapes.emit(json_shapes.history_document([run], batches if args.batches else None))
        return EXIT_OK
    print(format_table(HISTORY_HEADERS, [history_row(run)]))
    if args.batches:
        rows = [batch_row(run, b) for b in batches]
        print()
        print(format_table(BATCH_HEADERS, rows) if rows else "no batches recorded in this run")
    return EXIT_OK


def batch_row(run: HistoryRun, batch: BatchRecord) -> list[Any]:
    return [
        batch.asset,
        batch.batch,
        run.partitions,
        *batch.counts.as_dict(PER_BATCH).values(),
        f"{batch.seconds:.3f}",
        f"{batch.docs_per_s:,.1f}",
    ]


def history_row(run: HistoryRun) -> list[Any]:
    duration = run.duration_seconds
    return [
        run.start.strftime("%Y-%m-%d %H:%M:%S") if run.start else "-",
        f"{duration:.1f}s" if duration is not None else "-",
        run.job,
        run.partitions,
        run.status,
        run.totals["batches"],
        run.totals["indexed"],
        run.totals["failed"],
        run.totals["stale_skipped"],
        run.totals["dead_lettered"],
        run.run_id[:8],
    ]


def cmd_ui(args: argparse.Namespace) -> int:
    """Dagster webserver + daemon on this code location, with the project's instance."""
    session = Session.open(args, preflight=False)
    home = dagster_home()
    print(f"Dagster UI on http://127.0.0.1:{args.port} (DAGSTER_HOME={home})", flush=True)
    dagster = Path(sys.executable).parent / "dagster"
    # the code location reads the servers from its environment (as EnvVars, never shown in the UI)
    env = {**os.environ, settings_module.PG_URL: session.pg_url, settings_module.ES_URL: session.es_url}
    if args.config:
        env[settings_module.CONFIG] = str(Path(args.config).resolve())
    with as_file(WORKSPACE) as workspace:  # packaged data: a plain file of the installed wheel
        command = [str(dagster), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(args.port)]
        return subprocess.call(command, env=env)


def cmd_backfill(args: argparse.Namespace) -> int:
    """A partition backfill launched on the running Dagster instance, so it shows in the UI."""
    from sync_pipeline.apps.dagster_api import DagsterApiError, launch_backfill, resolve_url

    session = Session.open(args, one=True, servers=False)
    spec = session.spec
    start = parse_time(args.start, "--start") if args.start else None
    end = parse_time(args.end, "--end") if args.end else None
    keys = partition_keys_for(spec, start, end)
    if not keys:
        raise UsageError(f"no partitions of spec '{spec.name}' fall in the requested range")
    try:
        backfill_id = launch_backfill(args.dagster_url, spec, keys[0], keys[-1])
    except (DagsterApiError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    base = resolve_url(args.dagster_url)
    print(f"backfill {backfill_id}: {spec.name} {keys[0]} … {keys[-1]} ({len(keys)} partitions)")
    print(f"follow it at {base}/runs/b/{backfill_id}")
    return EXIT_OK
