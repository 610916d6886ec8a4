"""One benchmark scenario per process: `python -m bench.scenarios NAME --options`.

bench.run starts each scenario in its own subprocess so that the peak RSS it
reports belongs to that scenario alone (an in-process scenario would inherit
the harness's and the previous scenarios' memory). The last line printed is
`BENCH_RESULT {json}`; timings are taken inside the process around the work
itself, after imports and setup.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import capture_modes, common, joined_scenarios, measure
from bench.drain_scenarios import run_drain_scenario, run_incremental

# --- ceiling ------------------------------------------------------------------------------------


def prepare_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    """Untimed: the pipeline's own documents for every row, relations included, as bulk NDJSON on
    disk (the 1 KB and small tables' ceilings, and each joined shape's).

    Documents come from sync_pipeline's own read and build (ops.binding.bind → io.postgres.iter_pages
    with the bound relations → batch_to_bulk, as verify reads them): the same ids, versions and
    _source as a pipeline run produces, so the ceiling loads exactly what the pipeline loads.
    """
    from sync_pipeline.core.documents.build import batch_to_bulk
    from sync_pipeline.io.postgres import iter_pages
    from sync_pipeline.ops.binding import bind

    pg_url, _ = common.server_urls()
    _, spec = common.load_spec(Path(args.config))
    started = time.perf_counter()
    docs = 0
    out_path = Path(args.out)
    with (
        common.engine(pg_url).connect().execution_options(isolation_level="REPEATABLE READ") as conn,
        out_path.open("wb") as out,
    ):
        bound = bind(conn, spec)
        pages = iter_pages(
            conn, spec, bound.columns, None, 10_000, modes=["by_key"], relations=bound.relations
        )
        for batch in pages:
            chunk = batch_to_bulk(batch, bound.plan, include_deletes=False)  # action + source line pairs
            out.write(chunk.body.data)
            docs += chunk.docs
    return {
        "docs": docs,
        "bytes": out_path.stat().st_size,
        "seconds": round(time.perf_counter() - started, 2),
    }


def split_bodies(data: bytes, max_bytes: int) -> list[bytes]:
    """Cut bulk NDJSON (action line + source line pairs) into bodies of at most ~max_bytes."""
    bodies: list[bytes] = []
    start = pos = 0
    length = len(data)
    while pos < length:
        end_action = data.index(b"\n", pos) + 1
        end_source = data.index(b"\n", end_action) + 1
        if end_source - start > max_bytes and pos > start:
            bodies.append(data[start:pos])
            start = pos
        pos = end_source
    if start < length:
        bodies.append(data[start:length])
    return bodies


def run_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    """Timed: only the bulk load of pre-serialised bodies into a fresh index, N threads."""
    from sync_pipeline.core.documents.build import build_plan
    from sync_pipeline.core.documents.index_mapping import index_mapping, index_settings
    from sync_pipeline.io.postgres import describe_source
    from sync_pipeline.io.search.indices import drop_target, ensure_index

    pg_url, es_url = common.server_urls()
    _, spec = common.load_spec(Path(args.config))
    with common.engine(pg_url).connect() as conn:
        plan = build_plan(spec, describe_source(conn, spec))
    es = common.es_client(es_url)
    index = args.index
    drop_target(es, index)
    # the same mapping and settings the pipeline creates, and the same alias + _v1 layout
    ensure_index(es, index, index_mapping(plan), index_settings(spec))
    return load_bulk_file(es, args)


def load_bulk_file(es: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Timed: the bulk NDJSON of args.bulk_file into args.index (created), args.threads bodies at once."""
    index = args.index
    data = Path(args.bulk_file).read_bytes()
    bodies = split_bodies(data, int(args.body_mb * 1024 * 1024))
    del data
    errors: list[Any] = []

    def send(body: bytes) -> int:
        response = es.bulk(operations=body, index=index, filter_path="errors,items.*.error")
        if response.get("errors"):
            errors.extend(i for i in response.get("items", []) if next(iter(i.values())).get("error"))
        return body.count(b"\n") // 2

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        sent = sum(pool.map(send, bodies))
    load_seconds = time.perf_counter() - started
    refresh_started = time.perf_counter()
    es.indices.refresh(index=index)
    refresh_seconds = time.perf_counter() - refresh_started
    count = es.count(index=index)["count"]
    return {
        "docs": sent,
        "seconds": round(load_seconds, 3),
        "refresh_seconds": round(refresh_seconds, 3),
        "docs_in_es": count,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "bodies": len(bodies),
        "body_mb": args.body_mb,
        "threads": args.threads,
    }


# --- naive baseline ---------------------------------------------------------------------------


def run_naive(args: argparse.Namespace) -> dict[str, Any]:
    from bench.baselines.naive import naive_sync

    pg_url, es_url = common.server_urls()
    es = common.es_client(es_url)
    es.indices.delete(index=args.index, ignore_unavailable=True)
    result = naive_sync(pg_url, es_url, args.table, args.index)
    es.indices.refresh(index=args.index)
    return {
        "docs": result.succeeded,
        "failed": result.failed,
        "pages": result.pages,
        "seconds": round(result.seconds, 3),
        "docs_in_es": es.count(index=args.index)["count"],
    }


# --- pipeline -----------------------------------------------------------------------------------


def _step_windows(run_id: str) -> dict[str, tuple[float, float]]:
    """(start, end) epoch seconds of each step (asset) of a finished run, from the Dagster instance."""
    from dagster import DagsterInstance

    instance = DagsterInstance.get()
    return {
        stat.step_key: (stat.start_time, stat.end_time)
        for stat in instance.get_run_step_stats(run_id)
        if stat.start_time and stat.end_time
    }


def _stage_seconds(run_id: str) -> dict[str, float]:
    """Seconds each asset reports in its materialization metadata. In a streamed run the three
    overlap: extract and documents are the time spent producing pages, index the load's wall time."""
    from dagster import DagsterEventType, DagsterInstance

    seconds: dict[str, float] = {}
    for entry in DagsterInstance.get().all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.dagster_event.step_materialization_data.materialization
        value = materialization.metadata.get("seconds")
        if value is not None:
            seconds.setdefault(materialization.asset_key.to_user_string(), value.value)
    return seconds


class _RssTimeline:
    """This process's VmRSS every 0.2 s, to attribute the peak to a step."""

    def __init__(self) -> None:
        import threading

        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), measure.proc_status("self").get("VmRSS", 0)))
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mb_between(self, start: float, end: float) -> float:
        values = [kb for at, kb in self.samples if start <= at <= end]
        return round(max(values) / 1024, 1) if values else 0.0


def run_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """Full sync of the spec through the real assets, in-process (sync_pipeline.apps.cli.runner.run_sync)."""
    common.setup_env(args)
    pg_url, es_url = common.server_urls()
    os.environ["SYNC_PG_URL"], os.environ["SYNC_ES_URL"] = pg_url, es_url
    from sync_pipeline.apps.cli.runner import run_sync
    from sync_pipeline.io.search.indices import drop_target

    _, spec = common.load_spec(Path(args.config))
    es = common.es_client(es_url)
    drop_target(es, spec.target.index)
    timeline = _RssTimeline()
    rss_before_run_mb = round(measure.proc_status("self").get("VmRSS", 0) / 1024, 1)
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.005)
        profiler.start()
    cpu_before = measure.cpu_seconds(0) + measure.cpu_seconds(-1)
    started = time.perf_counter()
    summary = run_sync(spec)
    seconds = time.perf_counter() - started
    # utime + stime of every thread of this process (and of children it reaped) during the run
    cpu = measure.cpu_seconds(0) + measure.cpu_seconds(-1) - cpu_before
    timeline.stop()
    windows = _step_windows(summary.run_id)
    result: dict[str, Any] = {
        "rss_before_run_mb": rss_before_run_mb,
        "step_peak_rss_mb": {k: timeline.peak_mb_between(a, b) for k, (a, b) in windows.items()},
    }
    if profiler is not None:
        profiler.stop()
        every_frame = bool(os.environ.get("PROFILE_ALL"))  # Dagster's own frames too
        text = profiler.output_text(unicode=True, color=False, show_all=every_frame)
        Path(args.profile).write_text(text)
        Path(args.profile).with_suffix(".html").write_text(profiler.output_html())
        result["profile"] = args.profile
    count = es.count(index=spec.target.index)["count"]
    result.update(
        {
            "docs": summary.indexed + summary.deleted,
            "extracted": summary.extracted,
            "seconds": round(seconds, 3),
            "cpu_s": round(cpu, 2),
            "load_seconds": round(summary.seconds, 3),
            "success": summary.success,
            "failed": summary.failed,
            "dead_lettered": summary.dead_lettered,
            "batches": summary.batches,
            "docs_in_es": count,
            "error": summary.error,
            "steps": {k: round(b - a, 3) for k, (a, b) in windows.items()},
            "stage_seconds": _stage_seconds(summary.run_id),
            "run_id": summary.run_id,
        }
    )
    return result


# --- entry point ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scenarios")
    sub = parser.add_subparsers(dest="scenario", required=True)

    def with_pipeline_env(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", required=True)
        p.add_argument("--staging", required=True)
        p.add_argument("--dagster-home", required=True)

    p = sub.add_parser("prepare-ceiling")
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=prepare_ceiling)

    p = sub.add_parser("ceiling")
    p.add_argument("--config", required=True)
    p.add_argument("--bulk-file", required=True)
    p.add_argument("--index", default="bench_ceiling")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--body-mb", type=float, default=5.0)
    p.set_defaults(func=run_ceiling)
    joined_scenarios.register(sub)  # the joined-documents section's (bench/joined_scenarios.py)

    p = sub.add_parser("naive")
    p.add_argument("--index", default="bench_naive")
    p.add_argument("--table", default=common.TABLE)
    p.set_defaults(func=run_naive)

    p = sub.add_parser("pipeline")
    with_pipeline_env(p)
    p.add_argument("--profile", help="write a pyinstrument profile of run_sync to this path")
    p.set_defaults(func=run_pipeline)

    p = sub.add_parser("incremental")
    with_pipeline_env(p)
    p.set_defaults(func=run_incremental)

    p = sub.add_parser("drain")
    with_pipeline_env(p)
    p.add_argument("--capture", choices=["triggers", "logical"], default="triggers")
    p.add_argument("--spec", help="spec name (default: the file's bench_products, else its first)")
    p.add_argument("--update-set", default="price = price + 1, stock = stock + 1")
    p.add_argument("--probe-column", default="stock", help="a column whose new value is checked in ES")
    p.add_argument(
        "--commit", choices=["sync", "async"], default="sync",
        help="the changes' commit: synchronous_commit on (default) or the server's setting",
    )  # fmt: skip
    p.set_defaults(func=run_drain_scenario)

    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except capture_modes.CaptureUnavailable as exc:
        result = {"unavailable": str(exc)}
        measure.emit_result(result)
        return 3
    measure.emit_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
