"""Commands around the data path: local services, the demo, the UI, run history, backfills."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from importlib.resources import as_file
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sync_pipeline import settings as settings_module
from sync_pipeline.apps.cli import json_shapes
from sync_pipeline.apps.cli.output import EXIT_DRIFT, EXIT_OK, format_table, print_sync_summary, sync_exit
from sync_pipeline.apps.cli.runner import HistoryRun, Servers, run_drain, run_history, run_sync, run_verify
from sync_pipeline.apps.cli.search import search_lines
from sync_pipeline.apps.cli.session import Session, UsageError, parse_time
from sync_pipeline.apps.instance import WORKSPACE, dagster_home
from sync_pipeline.defs.partitions import partition_keys_for
from sync_pipeline.io.search.indices import backing_indices, drop_target, index_meta
from sync_pipeline.ops.capture import install_capture

DEMO_QUERY = "青花瓷茶杯"

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


def cmd_services(args: argparse.Namespace) -> int:
    from sync_pipeline_devtools import services

    if args.action in ("up", "env") and args.secure:
        # the secured node: started (a no-op when running) so that its API key is current
        print("\n".join(services.up_secure().env_lines()))
    elif args.action == "up":
        urls = services.up(search=args.target)
        kind = args.target or services.load_settings().local.search
        print(f"postgresql:    {urls.pg_url}\n{kind + ':':<14} {urls.es_url}")
        if args.nodes == 3:
            members = services.up_cluster()
            print(f"cluster:       {', '.join(node.url for node in members)}")
    elif args.action == "down" and args.target:
        services.down_search(args.target)
        print(f"local {args.target} stopped")
    elif args.action == "down":
        services.down()
        print("local services stopped")
    elif args.action == "status":
        for name, state in services.status().items():
            print(f"{name}: {state}")
    else:
        lines = services.env_lines(services.local_urls(args.target))
        storage = services.local_dagster_storage()
        print("\n".join([*lines, f"export {settings_module.DAGSTER_PG_URL}={shlex.quote(storage)}"]))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from sync_pipeline_devtools.demo import DEMO_CHANGES, DemoError, change_demo, seed_demo

    session = Session.open(args, spec_name="products", preflight=False)
    spec = session.spec
    es = session.es()
    _refuse_an_index_not_ours(es, spec.target.index)
    started = time.perf_counter()
    try:
        with session.engine.begin() as conn:
            seed_demo(conn, args.rows)
    except DemoError as exc:
        raise UsageError(str(exc)) from None
    seconds = time.perf_counter() - started
    print(f"seeded {args.rows:,} products (with categories, tags and reviews) in {seconds:.1f}s")
    # a fresh index each demo, created from the spec's mapping by the first load
    drop_target(es, spec.target.index)
    session.preflight()
    servers = Servers(session.pg_url, session.es_url, session.settings.es)
    summary = run_sync(session.specs, spec, show_progress=sys.stderr.isatty(), servers=servers)
    count = es.count(index=spec.target.index)["count"] if es.indices.exists(index=spec.target.index) else 0
    print()
    print_sync_summary(summary, es_count=count)
    if not summary.success:
        return EXIT_DRIFT
    drained = _demo_changes(session, spec, servers, change_demo, DEMO_CHANGES)
    print()
    reports = run_verify(session.specs, [spec], servers=servers)
    for report in reports:
        print("verify: " + "\n".join(report.lines()))
    # what a user synced for: the same search as `sync-pipeline search --spec products 茶杯`
    print("\n" + "\n".join(search_lines(es, spec, DEMO_QUERY, size=3)))
    ok = all(r.ok for r in reports) and sync_exit(summary) == EXIT_OK and sync_exit(drained) == EXIT_OK
    return EXIT_OK if ok else EXIT_DRIFT


def _refuse_an_index_not_ours(es, name: str) -> None:
    """The demo deletes its index and builds it anew: only one that sync_pipeline made."""
    for index in backing_indices(es, name):
        if not index_meta(es, index):
            raise UsageError(
                f"index {index} exists and was not made by sync_pipeline: the demo deletes and "
                "re-creates its index, so it stops here; use another cluster, or another index name"
            )


def _demo_changes(session: Session, spec, servers: Servers, change, changes: dict[str, str]):
    """Triggers on every table of the documents, a category renamed and a tag added, one drain:
    the changes reach every product they feed."""
    from sync_pipeline_devtools.demo import SCHEMA

    es = session.es()
    tables = install_capture(session.engine, spec, session.settings.locks).tables
    print(f"\nchange capture installed on {', '.join(tables)}")
    with session.engine.begin() as conn:
        changed = change(conn)
    print(f"changed: {changes['category']}  ({changed['category']} row)")
    print(f"         {changes['tag']}  ({changed['tag']} row)")
    drained = run_drain(session.specs, spec, servers=servers)
    print_sync_summary(drained)
    renamed = es.count(index=spec.target.index, query={"term": {"category.name": "Tea & Teaware"}})["count"]
    with session.engine.connect() as conn:
        expected = conn.execute(
            sa.text(f"SELECT count(*) FROM {SCHEMA}.products WHERE category_id = 7 AND deleted_at IS NULL")
        ).scalar_one()
    tags = es.get(index=spec.target.index, id="1")["_source"].get("tags")
    print(f"category rename reached {renamed:,} of {expected:,} products; product 1 tags: {tags}")
    return drained


def cmd_history(args: argparse.Namespace) -> int:
    session = Session.open(args, preflight=False)
    runs = run_history(session.selected, args.last, session.pg_url)
    if args.json:
        json_shapes.emit(json_shapes.history_document(runs))
    else:
        print(format_table(HISTORY_HEADERS, [history_row(r) for r in runs]) if runs else "no runs yet")
    return EXIT_OK


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
