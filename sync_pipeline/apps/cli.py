"""`sync-pipeline`: services, demo, sync and verify from a terminal.

Exit codes: 0 ok, 1 drift or failed documents/run, 2 usage or configuration
error (bad spec, unknown table, unreachable or misconfigured server).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sync_pipeline.defs.partitions import partition_keys_for
from sync_pipeline.settings import PROJECT_ROOT

EXIT_OK, EXIT_DRIFT, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or configuration; exit code 2."""


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *map(line, cells[1:])])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# --- environment -----------------------------------------------------------------------------


def _use_services() -> None:
    """Point everything at SYNC_PG_URL/SYNC_ES_URL, starting local services for unset ones."""
    from sync_pipeline.dev import services

    urls = services.ensure_services()
    os.environ["SYNC_PG_URL"] = urls.pg_url
    os.environ["SYNC_ES_URL"] = urls.es_url


DEFAULT_DAGSTER_HOME = Path(".dagster_home")


def _dagster_home() -> Path:
    """DAGSTER_HOME; the project default (.dagster_home) gets the project's instance config
    (PostgreSQL storage, queued runs); a home of your own is used as it is."""
    from sync_pipeline.apps.instance import prepare_dagster_home

    default = DEFAULT_DAGSTER_HOME.resolve()
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(default))).resolve()
    if home == default:
        prepare_dagster_home(home, os.environ["SYNC_PG_URL"])
    else:
        home.mkdir(parents=True, exist_ok=True)
    return home


def _dagster_instance():
    from dagster import DagsterInstance

    _dagster_home()
    return DagsterInstance.get()


def _load_specs(config: str | None):
    from sync_pipeline.core.specs import load_specs
    from sync_pipeline.definitions import config_path

    return load_specs(Path(config) if config else config_path())


def _parse_time(value: str, flag: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not an ISO-8601 date or timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


# --- sync --------------------------------------------------------------------------------------


@dataclass
class SyncSummary:
    spec: str
    partitions: str
    success: bool
    extracted: int = 0
    indexed: int = 0
    deleted: int = 0
    failed: int = 0
    stale_skipped: int = 0
    dead_lettered: int = 0
    batches: int = 0
    seconds: float = 0.0
    run_id: str = ""
    error: str = ""

    @property
    def docs_per_second(self) -> float:
        return (self.indexed + self.deleted) / self.seconds if self.seconds else 0.0


def _progress_printer(enabled: bool) -> Callable[[str, dict[str, Any]], None]:
    state = {"total": 0, "done": 0, "failed": 0, "started": time.monotonic()}

    def listener(event: str, data: dict[str, Any]) -> None:
        if event == "extracted":
            state["total"] += data["rows"]
        elif event == "batch":
            state["done"] += data["docs"]
            state["failed"] += data["failed"]
        if not enabled or event != "batch":
            return
        total = max(state["total"], state["done"], 1)
        filled = int(30 * state["done"] / total)
        rate = state["done"] / max(time.monotonic() - state["started"], 1e-6)
        sys.stderr.write(
            f"\r  [{'#' * filled}{'.' * (30 - filled)}] {state['done']:,}/{total:,} docs"
            f"  {rate:,.0f} docs/s  failed {state['failed']:,}"
        )
        sys.stderr.flush()

    return listener


def run_sync(
    specs,
    spec,
    start: datetime | None = None,
    end: datetime | None = None,
    show_progress: bool = False,
    log_level: str = "WARNING",
) -> SyncSummary:
    """Run the spec's job in-process over a partition range, as one run in DAGSTER_HOME."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from sync_pipeline.core import progress
    from sync_pipeline.definitions import build_definitions

    keys = partition_keys_for(spec, start, end)
    if not keys:
        raise UsageError(f"no partitions of spec '{spec.name}' fall in the requested range")
    label = keys[0] if len(keys) == 1 else f"{keys[0]} … {keys[-1]} ({len(keys)})"
    job = build_definitions(specs).resolve_job_def(f"{spec.name}_sync")
    tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
    with progress.listening(_progress_printer(show_progress)):
        result = job.execute_in_process(
            instance=_dagster_instance(),
            tags=tags,
            raise_on_error=False,
            # the full event log is in DAGSTER_HOME (make ui); the terminal gets warnings only
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
    if show_progress:
        sys.stderr.write("\n")
    return _summarise(result, spec, label)


def _summarise(result, spec, label: str) -> SyncSummary:
    """Totals of a finished run, read from its materialization metadata."""
    summary = SyncSummary(spec=spec.name, partitions=label, success=result.success, run_id=result.run_id)
    seen: set[str] = set()
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        name = materialization.asset_key.to_user_string()
        if name in seen:
            continue  # a range run repeats the same totals once per partition
        seen.add(name)
        meta = {k: v.value for k, v in materialization.metadata.items()}
        if name.endswith("_extract"):
            summary.extracted += int(meta.get("dagster/row_count", 0))
        elif name.endswith(("_index", "_changes")):
            summary.indexed += int(meta.get("indexed", 0))
            summary.deleted += int(meta.get("deleted", 0))
            summary.failed += int(meta.get("failed", 0))
            summary.stale_skipped += int(meta.get("stale_skipped", 0))
            summary.dead_lettered += int(meta.get("dead_lettered", 0))
            summary.batches += int(meta.get("batches", 0))
            summary.seconds += float(meta.get("seconds", 0.0))
    if not result.success:
        failures = result.get_step_failure_events()
        if failures and failures[0].step_failure_data.error:
            summary.error = failures[0].step_failure_data.error.message.strip()
        else:
            summary.error = "run failed"
    return summary


def print_sync_summary(summary: SyncSummary, es_count: int | None = None) -> None:
    headers = [
        "spec",
        "partitions",
        "extracted",
        "indexed",
        "deleted",
        "stale",
        "failed",
        "dead letters",
        "batches",
        "load s",
        "docs/s",
    ]
    row: list[Any] = [
        summary.spec,
        summary.partitions,
        summary.extracted,
        summary.indexed,
        summary.deleted,
        summary.stale_skipped,
        summary.failed,
        summary.dead_lettered,
        summary.batches,
        summary.seconds,
        summary.docs_per_second,
    ]
    if es_count is not None:
        headers.append("docs in ES")
        row.append(es_count)
    print(format_table(headers, [row]))
    print(
        f"run {summary.run_id} — {'succeeded' if summary.success else 'FAILED'}"
        f" (see it with `make ui`, DAGSTER_HOME={os.environ.get('DAGSTER_HOME')})"
    )
    if summary.error:
        print(f"error: {summary.error}", file=sys.stderr)


def _sync_exit(summary: SyncSummary) -> int:
    ok = summary.success and summary.failed == 0 and summary.dead_lettered == 0
    return EXIT_OK if ok else EXIT_DRIFT


def cmd_sync(args: argparse.Namespace) -> int:
    from sync_pipeline.core.specs import get_spec

    specs = _load_specs(args.config)
    spec = get_spec(specs, args.spec)
    if args.full and (args.start or args.end):
        raise UsageError("--full cannot be combined with --start/--end")
    if not args.full and not (args.start or args.end):
        raise UsageError("give --full, or --start and/or --end")
    start = _parse_time(args.start, "--start") if args.start else None
    end = _parse_time(args.end, "--end") if args.end else None
    _use_services()
    _preflight(specs, [spec])
    summary = run_sync(specs, spec, start, end, show_progress=sys.stderr.isatty())
    print_sync_summary(summary)
    return _sync_exit(summary)


# --- verify ------------------------------------------------------------------------------------


def _preflight(specs, selected) -> None:
    """Fail fast, before any run starts: both servers reachable, every source matching its spec."""
    from elasticsearch import ConnectionError as ESConnectionError
    from sqlalchemy.exc import OperationalError

    from sync_pipeline.defs.resources import engine_for, es_client, redact_es_url, redact_url
    from sync_pipeline.io.postgres import describe_source

    pg_url, es_url = os.environ["SYNC_PG_URL"], os.environ["SYNC_ES_URL"]
    try:
        es_client(es_url, request_timeout=10).cluster.health()
    except ESConnectionError:
        raise UsageError(f"cannot connect to Elasticsearch at {redact_es_url(es_url)}") from None
    except Exception as exc:
        raise UsageError(f"Elasticsearch at {redact_es_url(es_url)} refused us: {_first_line(exc)}") from None
    try:
        conn = engine_for(pg_url).connect()
    except OperationalError as exc:
        raise UsageError(
            f"cannot connect to PostgreSQL at {redact_url(pg_url)}: {_first_line(exc.orig)}"
        ) from None
    with conn:
        for spec in selected:
            describe_source(conn, spec)


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_verify(specs, selected, fix: bool = False) -> list:
    from sync_pipeline.defs.resources import engine_for, es_client
    from sync_pipeline.ops.verify import verify_spec

    es = es_client(os.environ["SYNC_ES_URL"])
    reports = []
    with (
        engine_for(os.environ["SYNC_PG_URL"])
        .connect()
        .execution_options(isolation_level="REPEATABLE READ") as conn
    ):
        for spec in selected:
            reports.append(verify_spec(conn, es, spec, fix=fix))
    return reports


def cmd_verify(args: argparse.Namespace) -> int:
    from sync_pipeline.core.specs import get_spec

    specs = _load_specs(args.config)
    selected = [get_spec(specs, args.spec)] if args.spec else specs
    _use_services()
    _preflight(specs, selected)
    reports = run_verify(specs, selected, fix=args.fix)
    for report in reports:
        print("\n".join(report.lines()))
    if args.fix:
        # drift found and repaired: re-check, and report what remains
        remaining = run_verify(specs, selected)
        for report in remaining:
            print("after fix: " + "\n".join(report.lines()))
        return EXIT_OK if all(r.ok for r in remaining) else EXIT_DRIFT
    return EXIT_OK if all(r.ok for r in reports) else EXIT_DRIFT


# --- change buffer and dead letters ----------------------------------------------------------


def cmd_triggers(args: argparse.Namespace) -> int:
    from sync_pipeline.core.specs import get_spec
    from sync_pipeline.defs.resources import engine_for
    from sync_pipeline.io.buffer import install_triggers, uninstall_triggers

    specs = _load_specs(args.config)
    spec = get_spec(specs, args.spec)
    _use_services()
    _preflight(specs, [spec])
    if args.install and not spec.source.trigger_tables:
        raise UsageError(
            f"spec '{spec.name}' reads a query: list the tables to watch in source.change_tables"
        )
    with engine_for(os.environ["SYNC_PG_URL"]).begin() as conn:
        tables = install_triggers(conn, spec) if args.install else uninstall_triggers(conn, spec)
    verb = "installed on" if args.install else "removed from"
    print(f"{spec.name}: change-buffer triggers {verb} {', '.join(tables)}")
    return EXIT_OK


def run_drain(specs, spec, log_level: str = "WARNING") -> SyncSummary:
    """The spec's drain job, in-process, so the run lands in DAGSTER_HOME like a sensor's would."""
    from sync_pipeline.definitions import build_definitions

    job = build_definitions(specs).resolve_job_def(f"{spec.name}_drain")
    result = job.execute_in_process(
        instance=_dagster_instance(),
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    return _summarise(result, spec, "buffer")


def cmd_flush(args: argparse.Namespace) -> int:
    from sync_pipeline.core.specs import get_spec

    specs = _load_specs(args.config)
    selected = [get_spec(specs, args.spec)] if args.spec else specs
    _use_services()
    _preflight(specs, selected)
    summaries = [run_drain(specs, spec) for spec in selected]
    for summary in summaries:
        print_sync_summary(summary)
    return EXIT_OK if all(_sync_exit(s) == EXIT_OK for s in summaries) else EXIT_DRIFT


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from sync_pipeline.core.specs import get_spec
    from sync_pipeline.defs.resources import engine_for, es_client
    from sync_pipeline.io import deadletters

    specs = _load_specs(args.config)
    selected = [get_spec(specs, args.spec)] if args.spec else specs
    _use_services()
    engine = engine_for(os.environ["SYNC_PG_URL"])
    if args.action == "list":
        with engine.begin() as conn:
            rows = deadletters.list_dead_letters(conn, args.spec, args.limit)
        print(
            format_table(
                ["id", "spec", "partition", "doc id", "error", "at"],
                [
                    [
                        r["id"],
                        r["spec"],
                        r["partition"] or "",
                        r["doc_id"],
                        f"{r['error'].get('type')}: {str(r['error'].get('reason'))[:60]}",
                        r["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
                    ]
                    for r in rows
                ],
            )
            if rows
            else "no dead letters"
        )
        return EXIT_OK
    if args.action == "purge":
        with engine.begin() as conn:
            removed = deadletters.purge(conn, args.spec)
        print(f"purged {removed} dead letters")
        return EXIT_OK
    _preflight(specs, selected)
    es = es_client(os.environ["SYNC_ES_URL"])
    still_failing = 0
    for spec in selected:
        try:
            replayed, failing = deadletters.replay(engine, es, spec)
        except deadletters.ReplayError as exc:
            print(f"sync-pipeline: {exc}", file=sys.stderr)
            return EXIT_DRIFT
        still_failing += failing
        print(f"{spec.name}: {replayed} replayed, {failing} still refused")
    return EXIT_OK if still_failing == 0 else EXIT_DRIFT


# --- backfill through a running Dagster ---------------------------------------------------------


def cmd_backfill(args: argparse.Namespace) -> int:
    """A partition backfill launched on the running Dagster instance, so it shows in the UI."""
    from sync_pipeline.apps.dagster_api import DagsterApiError, launch_backfill, resolve_url
    from sync_pipeline.core.specs import get_spec

    specs = _load_specs(args.config)
    spec = get_spec(specs, args.spec)
    start = _parse_time(args.start, "--start") if args.start else None
    end = _parse_time(args.end, "--end") if args.end else None
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


# --- rebuild -----------------------------------------------------------------------------------


def cmd_rebuild(args: argparse.Namespace) -> int:
    from sync_pipeline.core.specs import get_spec
    from sync_pipeline.defs.resources import engine_for, es_client
    from sync_pipeline.ops.rebuild import rebuild, rollback
    from sync_pipeline.ops.verify import verify_spec

    specs = _load_specs(args.config)
    spec = get_spec(specs, args.spec)
    _use_services()
    _preflight(specs, [spec])
    engine, es = engine_for(os.environ["SYNC_PG_URL"]), es_client(os.environ["SYNC_ES_URL"])
    if args.rollback:
        current, previous = rollback(es, spec)
        print(f"{spec.target.index}: alias moved back from {current} to {previous}")
        # the older index missed what happened since it was swapped out: bring it up to date
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            report = verify_spec(conn, es, spec, fix=True)
        print("caught up: " + "\n".join(report.lines()))
        return EXIT_OK
    progress_listener = _progress_printer(sys.stderr.isatty())
    report = rebuild(
        engine, es, spec, on_batch=lambda b: progress_listener("batch", {"docs": b.docs, "failed": b.failed})
    )
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(
        f"{spec.target.index}: {', '.join(report.old_indices) or '(nothing)'} → {report.new_index} "
        f"({report.filled.indexed:,} documents, {report.seconds:.1f}s); old index kept for --rollback"
    )
    print("verified before swap: " + report.before_swap.lines()[0])
    print("caught up after swap: " + report.after_swap.lines()[0])
    return EXIT_OK


# --- history and ui ---------------------------------------------------------------------------


def run_history(specs, selected, last: int) -> list[list[Any]]:
    """Recent sync and drain runs with their totals, newest first."""
    import dagster as dg

    from sync_pipeline.defs.runs import run_totals

    instance = _dagster_instance()
    job_names = [f"{spec.name}_{kind}" for spec in selected for kind in ("sync", "drain")]
    records = instance.get_run_records(dg.RunsFilter(job_name=None), limit=max(last * 10, 100))
    rows: list[list[Any]] = []
    for record in records:
        run = record.dagster_run
        if run.job_name not in job_names:
            continue
        totals = run_totals(instance, run.run_id)
        start = record.start_time
        end = record.end_time
        tags = run.tags
        partitions = tags.get("dagster/partition") or (
            f"{tags['dagster/asset_partition_range_start']}…{tags['dagster/asset_partition_range_end']}"
            if "dagster/asset_partition_range_start" in tags
            else "-"
        )
        rows.append(
            [
                datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M:%S") if start else "-",
                f"{end - start:.1f}s" if start and end else "-",
                run.job_name,
                partitions,
                run.status.value.lower(),
                totals["batches"],
                totals["indexed"],
                totals["failed"],
                totals["stale_skipped"],
                totals["dead_lettered"],
                run.run_id[:8],
            ]
        )
        if len(rows) >= last:
            break
    return rows


def cmd_history(args: argparse.Namespace) -> int:
    from sync_pipeline.core.specs import get_spec

    specs = _load_specs(args.config)
    selected = [get_spec(specs, args.spec)] if args.spec else specs
    _use_services()
    rows = run_history(specs, selected, args.last)
    headers = [
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
    print(format_table(headers, rows) if rows else "no runs yet")
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    """Dagster webserver + daemon on this code location, with the project's instance."""
    import subprocess

    _use_services()
    home = _dagster_home()
    print(f"Dagster UI on http://127.0.0.1:{args.port} (DAGSTER_HOME={home})", flush=True)
    dagster = Path(sys.executable).parent / "dagster"
    workspace = PROJECT_ROOT / "workspace.yaml"
    command = [str(dagster), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(args.port)]
    return subprocess.call(command, env=dict(os.environ))


# --- demo --------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from sync_pipeline.core.specs import get_spec
    from sync_pipeline.defs.resources import engine_for, es_client
    from sync_pipeline.dev.demo import seed_demo
    from sync_pipeline.io.elasticsearch import drop_target

    specs = _load_specs(args.config)
    spec = get_spec(specs, "products")
    _use_services()
    started = time.perf_counter()
    with engine_for(os.environ["SYNC_PG_URL"]).begin() as conn:
        seed_demo(conn, args.rows)
    print(f"seeded {args.rows:,} products in {time.perf_counter() - started:.1f}s")
    es = es_client(os.environ["SYNC_ES_URL"])
    # a fresh index each demo, created from the spec's mapping by the first load
    drop_target(es, spec.target.index)
    _preflight(specs, [spec])
    summary = run_sync(specs, spec, show_progress=sys.stderr.isatty())
    count = es.count(index=spec.target.index)["count"] if es.indices.exists(index=spec.target.index) else 0
    print()
    print_sync_summary(summary, es_count=count)
    if not summary.success:
        return EXIT_DRIFT
    print()
    reports = run_verify(specs, [spec])
    for report in reports:
        print("verify: " + "\n".join(report.lines()))
    query = {"match": {"name": "茶杯"}}
    hits = es.search(index=spec.target.index, query=query, size=1, track_total_hits=True)["hits"]
    if hits["hits"]:
        example = hits["hits"][0]["_source"]["name"]
        print(f"\nfull-text search '茶杯' → {hits['total']['value']:,} hits, e.g. {example!r}")
    return EXIT_OK if all(r.ok for r in reports) and _sync_exit(summary) == EXIT_OK else EXIT_DRIFT


# --- services ----------------------------------------------------------------------------------


def cmd_services(args: argparse.Namespace) -> int:
    from sync_pipeline.dev import services

    if args.action == "up":
        urls = services.up()
        print(f"postgresql:    {urls.pg_url}\nelasticsearch: {urls.es_url}")
    elif args.action == "down":
        services.down()
        print("local services stopped")
    elif args.action == "status":
        for name, state in services.status().items():
            print(f"{name}: {state}")
    else:
        import shlex

        from sync_pipeline.apps.instance import dagster_storage_url

        lines = services.env_lines()
        storage = dagster_storage_url(services.local_urls().pg_url)
        print("\n".join([*lines, f"export SYNC_DAGSTER_PG_URL={shlex.quote(storage)}"]))
    return EXIT_OK


# --- entry point -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sync-pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="sync spec file (default: $SYNC_CONFIG or ./sync.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    services = sub.add_parser("services", help="local PostgreSQL + Elasticsearch for dev and tests")
    services.add_argument("action", choices=["up", "down", "status", "env"])
    services.set_defaults(func=cmd_services)

    demo = sub.add_parser("demo", help="seed the demo tables, run a full sync, print a summary")
    demo.add_argument("--rows", type=int, default=100_000)
    demo.set_defaults(func=cmd_demo)

    sync = sub.add_parser("sync", help="run a spec's extract → documents → index through Dagster")
    sync.add_argument("--spec", required=True)
    sync.add_argument("--full", action="store_true", help="every partition, as one run")
    sync.add_argument("--start", help="ISO date/time: first updated_at window to include")
    sync.add_argument("--end", help="ISO date/time: windows starting before this")
    sync.set_defaults(func=cmd_sync)

    verify = sub.add_parser("verify", help="prove PostgreSQL and Elasticsearch agree")
    verify.add_argument("--spec", help="one spec (default: every spec)")
    verify.add_argument("--fix", action="store_true", help="re-index drifting documents, delete extra ones")
    verify.set_defaults(func=cmd_verify)

    history = sub.add_parser("history", help="recent runs from the Dagster instance, with their counts")
    history.add_argument("--spec", help="one spec (default: every spec)")
    history.add_argument("--last", type=int, default=10, help="how many runs (default 10)")
    history.set_defaults(func=cmd_history)

    backfill = sub.add_parser(
        "backfill", help="launch a partition backfill on the running Dagster (see make ui)"
    )
    backfill.add_argument("--spec", required=True)
    backfill.add_argument("--start", help="ISO date/time: first updated_at window to include")
    backfill.add_argument("--end", help="ISO date/time: windows starting before this")
    backfill.add_argument(
        "--dagster-url", help="webserver URL (default: $SYNC_DAGSTER_URL or http://127.0.0.1:3000)"
    )
    backfill.set_defaults(func=cmd_backfill)

    rebuild_cmd = sub.add_parser("rebuild", help="fill a new versioned index, verify it, swap the read alias")
    rebuild_cmd.add_argument("--spec", required=True)
    rebuild_cmd.add_argument(
        "--rollback", action="store_true", help="point the alias back at the previous version"
    )
    rebuild_cmd.set_defaults(func=cmd_rebuild)

    ui = sub.add_parser("ui", help="Dagster webserver + daemon (what `make ui` runs)")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    for name, helptext in (
        ("install-triggers", "capture inserts/updates/deletes into the change buffer"),
        ("uninstall-triggers", "remove the spec's change-buffer triggers"),
    ):
        triggers = sub.add_parser(name, help=helptext)
        triggers.add_argument("--spec", required=True)
        triggers.set_defaults(func=cmd_triggers, install=name == "install-triggers")

    flush = sub.add_parser("flush", help="drain the change buffer now (a Dagster run per spec)")
    flush.add_argument("--spec", help="one spec (default: every spec)")
    flush.set_defaults(func=cmd_flush)

    dead = sub.add_parser("dead-letters", help="documents Elasticsearch refused: list, replay or purge")
    dead.add_argument("action", choices=["list", "replay", "purge"])
    dead.add_argument("--spec", help="one spec (default: every spec)")
    dead.add_argument("--limit", type=int, default=50, help="rows to list")
    dead.set_defaults(func=cmd_dead_letters)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from sync_pipeline.core.specs import SpecError
    from sync_pipeline.dev.services import ServiceError
    from sync_pipeline.io.postgres import SourceError
    from sync_pipeline.ops.rebuild import RebuildError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, SpecError, SourceError, ServiceError, RebuildError) as exc:
        print(f"sync-pipeline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        message = _unreachable_message(exc)
        if message is None:
            raise
        print(f"sync-pipeline: {message}", file=sys.stderr)
        return EXIT_USAGE


def _unreachable_message(exc: Exception) -> str | None:
    """A one-line error for a server that went away mid-command; None for anything else."""
    from elastic_transport import ConnectionError as ESConnectionError
    from sqlalchemy.exc import OperationalError

    from sync_pipeline.defs.resources import redact_es_url, redact_url

    if isinstance(exc, ESConnectionError):
        return f"lost the connection to Elasticsearch at {redact_es_url(os.environ.get('SYNC_ES_URL', '?'))}"
    if isinstance(exc, OperationalError):
        url = redact_url(os.environ.get("SYNC_PG_URL", "?"))
        return f"PostgreSQL at {url} failed: {_first_line(exc.orig)}"
    return None


if __name__ == "__main__":
    sys.exit(main())
