"""The performance benchmark: ceilings, naive baseline, pipeline (1 KB and small documents),
drains per capture mode, a fan-out drain, pgbench write-path cost, freshness per capture mode, PGSync,
scale, soak, joined documents (bench/joined.py), key ranges (bench/ranges.py).

    .venv/bin/python -m bench.run [--rows N] [--small-rows N] [--repeat R]
                                  [--scale 100000,1000000,10000000] [--freshness] [--pgbench-seconds S]
                                  [--capture-modes triggers,logical] [--soak MINUTES] [--profile]
                                  [--commit-contention [--commit-contention-clients 16,32,64]]
                                  [--ranges-rows N] [--fanout-products N]
                                  [--joined-rows N] [--joined-scale 1000000,10000000]
                                  [--no-pgsync] [--no-pgbench] [--keep]

One run, one Elasticsearch, seeded tables `bench_products` (N rows, ~1 KB documents) and
`bench_small` (~250 B documents). Each measurement runs in its own subprocess (its peak RSS
and CPU time are its own), scenarios alternate within every repetition (the order rotates),
and the median of the repetitions is reported. Writes bench/results/<YYYY-MM-DD>.json (or
--output) and prints a table. Indexes `bench_*` and the tables are dropped at the end unless
--keep. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import capture_modes, common, measure
from bench.harness import Harness, log, today
from bench.options import FULL_SYNC_SCENARIOS, parse_args
from bench.summary import median_of, print_table, summarise


def run(harness: Harness) -> dict[str, Any]:
    """Every section the arguments ask for, in order; the report with its figures."""
    started = time.perf_counter()
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }
    report["machine"] = measure.machine_description(harness.es_url, harness.pg_url)
    log(f"machine: {report['machine']}")
    common.drop_bench_indexes(harness.es)
    rotation = _prepare(harness, report)
    _repetitions(harness, rotation)
    _sections(harness, report)
    if args_joined(harness.args):
        from bench import joined

        report["joined"] = joined.run(harness)
    report["scale"] = _scale_curve(harness)
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    return summarise(
        report, harness.runs, harness.args, harness.small_rows, harness.unavailable, harness.pgsync
    )


def args_joined(args: argparse.Namespace) -> bool:
    return args.joined_rows > 0


def _prepare(harness: Harness, report: dict[str, Any]) -> list[str]:
    """Seed the tables, serialise the ceilings' documents, set PGSync up; the scenarios to rotate."""
    args = harness.args
    log(f"seeding {args.rows:,} rows into {common.TABLE}")
    report["seed_seconds"] = round(common.seed_table(harness.pg_url, args.rows), 1)
    report["table"] = common.table_stats(harness.pg_url)
    log(f"  {report['table']}")
    rotation = list(FULL_SYNC_SCENARIOS)
    if args.target != "elasticsearch":
        rotation = [name for name in rotation if not name.startswith("naive")]
    report["target"] = harness.es.server.label
    if args.only:
        rotation = [name for name in args.only if name != "pgsync"]
    if args.repeat > 0 and any(name.endswith("_small") for name in rotation):
        log(f"seeding {harness.small_rows:,} rows into {common.SMALL_TABLE}")
        report["seed_seconds_small"] = round(
            common.seed_table(harness.pg_url, harness.small_rows, common.SMALL_TABLE), 1
        )
        report["table_small"] = common.table_stats(harness.pg_url, common.SMALL_TABLE)
        log(f"  {report['table_small']}")
    report["logical_capture"] = capture_modes.logical_capture_available()[1]
    log(f"logical capture: {report['logical_capture']}")
    for small in (False, True):
        name = "ceiling_small" if small else "ceiling"
        if name not in rotation or args.repeat <= 0:
            continue
        log(f"preparing the {name}'s pre-serialised documents (untimed)")
        prep = harness.scenario(
            "prepare-ceiling",
            "--config", str(harness.config_small if small else harness.config),
            "--out", str(harness.bulk_file_small if small else harness.bulk_file),
        )  # fmt: skip
        suffix = "_small" if small else ""
        report[f"ceiling_documents{suffix}"] = {k: prep[k] for k in ("docs", "bytes", "seconds")}
        report[f"avg_document_bytes{suffix}"] = round(prep["bytes"] / max(prep["docs"], 1), 1)

    if args.pgsync and args.repeat > 0 and (not args.only or "pgsync" in args.only):
        log("setting up PGSync (own venv, logical-WAL cluster on :55440, Redis on :56379)")
        harness.setup_pgsync()
        if "shim" in harness.pgsync:
            rotation.append("pgsync")
    else:
        harness.pgsync = {"status": "skipped (--no-pgsync)"}
    return rotation


def _repetitions(harness: Harness, rotation: list[str]) -> None:
    """Every scenario once per repetition, the order moved along by one each time."""
    args = harness.args
    for rep in range(args.repeat):
        order = rotation[rep % len(rotation) :] + rotation[: rep % len(rotation)]
        log(f"repetition {rep + 1}/{args.repeat}: {', '.join(order)}")
        for name in order:
            harness.dispatch_measured(name)
            if name == "cli":
                harness.dispatch_measured("incremental")
            if name == "pipeline":
                # alternating: neither capture mode always drains second, right after the
                # other's drain and restore
                captures = list(args.capture_modes)[:: 1 if rep % 2 == 0 else -1]
                for capture in captures:
                    if f"drain_{capture}" not in harness.unavailable:
                        harness.dispatch_measured(f"drain_{capture}")


def _sections(harness: Harness, report: dict[str, Any]) -> None:
    """The sections measured once: the profile, pgbench, freshness per capture mode, the soak."""
    args = harness.args
    if args.profile:
        # Resolved: a relative --profile-out is relative to where make was run, not to the project.
        default = common.BENCH_DIR / "results" / f"profile-{today()}.txt"
        path = Path(args.profile_out or default).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        log(f"profiling one pipeline run with pyinstrument → {path}")
        try:
            result = harness.run_pipeline("profiled_pipeline", profile=str(path))
            root = common.PROJECT_ROOT
            shown = path.relative_to(root) if path.is_relative_to(root) else path  # the JSON is committed
            report["profile"] = {"path": str(shown), "run": result}
        except Exception as exc:
            report["profile"] = {"error": str(exc)}

    if args.cli_cost_repeat > 0:
        from bench import cli_cost

        log(f"CLI fixed cost: a full sync of one row through the CLI, {args.cli_cost_repeat} runs")
        try:
            report["cli_fixed_cost"] = cli_cost.fixed_cost(harness, args.cli_cost_repeat)
        except Exception as exc:
            traceback.print_exc()
            report["cli_fixed_cost"] = {"error": f"{type(exc).__name__}: {exc}"[-2000:]}

    if args.pgbench:
        from bench.pgbench import WritePathBench

        log(
            f"pgbench: {args.pgbench_clients} clients, single-row UPDATEs by key, "
            f"{args.pgbench_seconds:g} s per mode × {args.pgbench_repeat}"
        )
        try:
            bench = WritePathBench(
                harness, args.pgbench_rows, args.pgbench_seconds, args.pgbench_clients, args.pgbench_repeat
            )
            report["pgbench"] = bench.run()
        except Exception as exc:
            log(f"  pgbench FAILED: {exc}")
            report["pgbench"] = {"error": f"{type(exc).__name__}: {exc}"[-2000:], "tps_ratio": {}}
    else:
        report["pgbench"] = {"status": "skipped (--no-pgbench)", "tps_ratio": {}}

    if args.commit_contention:
        from bench import commit_contention

        log(
            f"commit contention (own durable cluster): {args.commit_contention_clients} clients, 4 modes, "
            f"{args.commit_contention_seconds:g} s per run × {args.commit_contention_repeat}"
        )
        try:
            report["commit_contention"] = commit_contention.run(
                seconds=args.commit_contention_seconds, clients=args.commit_contention_clients,
                repeat=args.commit_contention_repeat, log=log,
            )  # fmt: skip
        except Exception as exc:
            traceback.print_exc()
            report["commit_contention"] = {"error": f"{type(exc).__name__}: {exc}"[-2000:]}

    if args.freshness:
        from bench import freshness

        report["freshness"] = {}
        for capture in args.capture_modes:
            log(
                f"freshness ({capture}): dagster dev, sensor settings '{args.freshness_sensor}', "
                f"{args.freshness_changes} single-row changes (steady + bursts), commit → searchable"
            )
            fresh = freshness.run(
                harness, capture, args.freshness_changes, sensor=args.freshness_sensor,
                rate=args.freshness_rate, burst_size=args.freshness_burst,
            )  # fmt: skip
            report["freshness"][capture] = fresh
            log(
                f"  {fresh.get('status')}: p50 {fresh.get('p50_s')} s, p95 {fresh.get('p95_s')} s, "
                f"p99 {fresh.get('p99_s')} s over {fresh.get('changes')} changes"
            )

    if args.ranges_rows > 0:
        from bench import ranges

        try:
            report["ranges"] = ranges.run(harness.pg_url, harness.es_url, args.ranges_rows, log=log)
        except Exception as exc:
            traceback.print_exc()
            report["ranges"] = {"error": f"{type(exc).__name__}: {exc}"[-2000:]}
    if args.fanout_products:
        from bench import fanout

        try:
            report["fanout"] = fanout.run(harness.pg_url, harness.es_url, args.fanout_products, log)
        except Exception as exc:
            traceback.print_exc()
            report["fanout"] = {"error": f"{type(exc).__name__}: {exc}"[-2000:]}

    if args.soak:
        from bench import soak

        log(f"soak: {args.soak:g} min, pgbench at {args.soak_rate:g} TPS, capture {args.soak_capture}")
        try:
            report["soak"] = soak.run(harness, args.soak, args.soak_rate, args.soak_capture)
        except Exception as exc:
            traceback.print_exc()
            report["soak"] = {"status": f"failed: {type(exc).__name__}: {exc}"[-2000:]}
        log(f"  soak: {json.dumps({k: report['soak'].get(k) for k in ('status', 'drift', 'freshness')})}")


def _scale_curve(harness: Harness) -> list[dict[str, Any]]:
    """One pipeline run per table size (the main run's median reused at its own size)."""
    args = harness.args
    scale: list[dict[str, Any]] = []
    for rows in args.scale:
        main = harness.runs.get("pipeline", [])
        if rows == args.rows and any(not r.get("failed") for r in main):
            # the main run already measured the pipeline at this size: reuse its median
            good = [r for r in main if not r.get("failed")]
            scale.append(
                {
                    "rows": rows,
                    "docs_per_s": round(statistics.median(r["docs_per_s"] for r in good), 1),
                    "seconds": round(statistics.median(r["seconds"] for r in good), 3),
                    "peak_rss_mb": round(max(r["peak_rss_mb"] for r in good), 1),
                    "cpu_s_per_million_docs": median_of(good, "cpu_s_per_million_docs"),
                    "steps": good[0].get("steps"),
                    "source": f"main run (median of {len(good)})",
                    "complete": all(r.get("complete") for r in good),
                }
            )
            continue
        log(f"scale: seeding {rows:,} rows")
        harness.rows_now = rows
        seed_seconds = common.seed_table(harness.pg_url, rows)
        log(f"  seeded in {seed_seconds:.0f} s")
        try:
            result = harness.run_pipeline(f"scale_{rows}", rows=rows)
        except Exception as exc:
            scale.append({"rows": rows, "error": str(exc)})
            continue
        scale.append(
            {
                "rows": rows,
                "docs_per_s": result["docs_per_s"],
                "seconds": result["seconds"],
                "peak_rss_mb": result["peak_rss_mb"],
                "cpu_s_per_million_docs": result.get("cpu_s_per_million_docs"),
                "steps": result.get("steps"),
                "seed_seconds": round(seed_seconds, 1),
                "source": "one run",
                "complete": result.get("complete"),
            }
        )
    return sorted(scale, key=lambda s: s["rows"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["SYNC_LOCAL_SEARCH"] = args.target  # the scenarios' subprocesses inherit it
    harness = Harness(args)
    output = harness.output
    try:
        report = run(harness)
    except Exception:
        traceback.print_exc()
        harness.close()
        return 1
    harness.close()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(output)
    harness.partial.unlink(missing_ok=True)
    print_table(report)
    if report.get("commit_contention", {}).get("results"):
        from bench.commit_contention import print_table as print_contention

        print_contention(report["commit_contention"])
    print(f"\nwrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
