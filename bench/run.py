"""The performance benchmark: ceilings, naive baseline, pipeline (1 KB and small documents),
drains per capture mode, pgbench write-path cost, freshness per capture mode, PGSync, scale, soak,
joined documents (bench/joined.py).

    .venv/bin/python -m bench.run [--rows N] [--small-rows N] [--repeat R]
                                  [--scale 100000,1000000,10000000] [--freshness] [--pgbench-seconds S]
                                  [--capture-modes triggers,logical] [--soak MINUTES] [--profile]
                                  [--commit-contention [--commit-contention-clients 16,32,64]]
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
from bench.summary import CAPTURE_MODES, median_of, print_table, summarise

FULL_SYNC_SCENARIOS = [
    "ceiling", "naive", "pipeline", "pipeline_pandas_identity", "pipeline_pandas_realistic", "cli",
    "ceiling_small", "pipeline_small",
]  # fmt: skip
# drain_<mode> runs right after pipeline, incremental right after cli; naive_small, pipeline_hash: --only
SEARCH_TARGETS = ("elasticsearch", "elasticsearch8", "opensearch2", "opensearch")
ALL_SCENARIOS = [*FULL_SYNC_SCENARIOS, "incremental", "pgsync", "pipeline_hash", "naive_small"]


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows in bench_products (default 1,000,000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="repetitions of each scenario (median reported)"
    )
    parser.add_argument(
        "--scale",
        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        default=[],
        help="comma-separated table sizes for a pipeline scale curve, e.g. 100000,1000000,3000000",
    )
    parser.add_argument(
        "--small-rows", type=int, help="rows in bench_small, the ~250 B-document table (default: --rows)"
    )
    modes = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    parser.add_argument(
        "--capture-modes", type=modes, default=list(CAPTURE_MODES),
        help="capture modes for the drains, pgbench and freshness (default triggers,logical; a mode "
        "this build lacks is reported as unavailable, never measured as another)",
    )  # fmt: skip
    parser.add_argument(
        "--freshness", action="store_true", help="also measure commit → searchable latency per capture mode"
    )
    parser.add_argument(
        "--freshness-changes", type=int, default=240,
        help="single-row changes to time per capture mode, half steady, half in bursts (default 240, ≥ 200 "
        "for the issue's figure)",
    )  # fmt: skip
    parser.add_argument("--freshness-rate", type=float, default=4.0, help="steady changes per second (4)")
    parser.add_argument("--freshness-burst", type=int, default=20, help="changes per burst (20)")
    parser.add_argument(
        "--freshness-sensor", default="default", choices=["default", "fast", "follow"],
        help="buffer_sensor settings: the spec's defaults (default), or the fastest triggers (fast), or "
        "those plus follow_seconds (follow)",
    )  # fmt: skip
    parser.add_argument("--no-pgbench", dest="pgbench", action="store_false", help="skip the pgbench section")
    parser.add_argument("--pgbench-rows", type=int, default=400_000, help="rows in bench_pgbench (400,000)")
    parser.add_argument("--pgbench-seconds", type=float, default=60, help="seconds per pgbench run (60)")
    parser.add_argument("--pgbench-clients", type=int, default=4, help="pgbench clients (4)")
    parser.add_argument("--pgbench-repeat", type=int, default=2, help="pgbench runs per mode (2, rotating)")
    parser.add_argument(
        "--commit-contention", action="store_true",
        help="also measure NOTIFY's commit contention: pgbench at --commit-contention-clients on its own "
        "durable cluster (fsync on), no capture / triggers with and without NOTIFY / logical (issue 24)",
    )  # fmt: skip
    parser.add_argument("--commit-contention-seconds", type=float, default=20, help="seconds per run (20)")
    parser.add_argument(
        "--commit-contention-clients", type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        default=[16, 32, 64], help="pgbench client counts (16,32,64)",
    )  # fmt: skip
    parser.add_argument("--commit-contention-repeat", type=int, default=3, help="runs per mode and count (3)")
    parser.add_argument(
        "--soak", type=float, default=0, metavar="MINUTES",
        help="also run the soak: pgbench at --soak-rate for MINUTES (≥ 10 for the issue's figure) while "
        "the daemon drains, a schedule and a backfill run; then verify",
    )  # fmt: skip
    parser.add_argument("--soak-rate", type=float, default=200, help="soak pgbench transactions per second")
    parser.add_argument("--soak-capture", default="triggers", choices=CAPTURE_MODES, help="soak capture mode")
    parser.add_argument("--profile", action="store_true", help="profile one pipeline run with pyinstrument")
    parser.add_argument(
        "--profile-out", help="profile text output (default bench/results/profile-<date>.txt)"
    )
    parser.add_argument(
        "--only",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        help="run only these scenarios, comma-separated (of " + ", ".join(ALL_SCENARIOS) + "); "
        "incremental runs right after cli",
    )
    parser.add_argument("--no-pgsync", dest="pgsync", action="store_false", help="skip the PGSync comparison")
    parser.add_argument(
        "--joined-rows", type=int, default=1_000_000,
        help="roots per shape in the joined-documents section (bench/joined.py; default 1,000,000; "
        "0 skips it)",
    )  # fmt: skip
    parser.add_argument(
        "--joined-scale", type=lambda s: [int(x) for x in s.split(",") if x.strip()], default=[],
        help="comma-separated root counts for the joined section's peak RSS (one pipeline run per shape "
        "at each size other than --joined-rows), e.g. 1000000,10000000",
    )  # fmt: skip
    parser.add_argument(
        "--target",
        choices=SEARCH_TARGETS,
        default="elasticsearch",
        help="the local search server to measure against (SYNC_LOCAL_SEARCH; default elasticsearch, "
        "i.e. Elasticsearch 9); the naive baseline and PGSync run on the default only",
    )
    parser.add_argument(
        "--ceiling-threads", type=int, default=3, help="parallel bulk requests for the ceiling"
    )
    parser.add_argument("--ceiling-body-mb", type=float, default=5.0, help="bulk body size for the ceiling")
    parser.add_argument("--output", help="result JSON (default bench/results/<YYYY-MM-DD>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the table, bench_* indexes and temp files")
    args = parser.parse_args(argv)
    if args.target != "elasticsearch":
        # both baselines speak elasticsearch-py, which refuses any server but Elasticsearch 9
        args.pgsync = False
        if args.only:
            args.only = [name for name in args.only if not name.startswith("naive")]
    if args.freshness and args.freshness_changes < 20:
        parser.error("--freshness-changes must be at least 20")
    unknown = [m for m in args.capture_modes if m not in CAPTURE_MODES]
    if unknown:
        parser.error(f"unknown capture modes {unknown} (of {', '.join(CAPTURE_MODES)})")
    return args


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
