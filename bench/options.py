"""The options of `python -m bench.run` (bench/run.py): every section's switches and sizes."""

from __future__ import annotations

import argparse

from bench.summary import CAPTURE_MODES

DESCRIPTION = "The performance benchmark (docs/benchmarks.md): ceilings, baselines, pipeline, sections"
FULL_SYNC_SCENARIOS = [
    "ceiling", "naive", "pipeline", "pipeline_pandas_identity", "pipeline_pandas_realistic", "cli",
    "ceiling_small", "pipeline_small", "cli_small",
]  # fmt: skip
# drain_<mode> runs right after pipeline, incremental right after cli; naive_small, pipeline_hash: --only
SEARCH_TARGETS = ("elasticsearch", "elasticsearch8", "opensearch2", "opensearch")
ALL_SCENARIOS = [*FULL_SYNC_SCENARIOS, "incremental", "pgsync", "pipeline_hash", "naive_small"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=DESCRIPTION)
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
    parser.add_argument(
        "--cli-cost-repeat", type=int, default=5,
        help="CLI full syncs of a one-row table timed for the CLI's fixed cost (5; 0 skips it)",
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
    parser.add_argument(
        "--ranges-rows", type=int, default=10_000_000,
        help="rows sharing one updated_at for the key-range section (bench/ranges.py): synced by the "
        "CLI, killed halfway, resumed, verified (default 10,000,000; 0 skips it)",
    )  # fmt: skip
    parser.add_argument("--soak-rate", type=float, default=200, help="soak pgbench transactions per second")
    parser.add_argument("--soak-capture", default="triggers", choices=CAPTURE_MODES, help="soak capture mode")
    parser.add_argument(
        "--fanout-products", type=int, default=100_000,
        help="products sharing the category whose rename the fan-out drain section times (100,000; 0 skips)",
    )  # fmt: skip
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
