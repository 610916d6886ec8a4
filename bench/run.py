"""The performance benchmark: ceilings, naive baseline, pipeline (1 KB and small documents),
drains per capture mode, pgbench write-path cost, freshness per capture mode, PGSync, scale, soak.

    .venv/bin/python -m bench.run [--rows N] [--small-rows N] [--repeat R]
                                  [--scale 100000,1000000,10000000] [--freshness] [--pgbench-seconds S]
                                  [--capture-modes triggers,logical] [--soak MINUTES] [--profile]
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
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import common

FULL_SYNC_SCENARIOS = ["ceiling", "naive", "pipeline", "cli", "ceiling_small", "pipeline_small"]
CAPTURE_MODES = ["triggers", "logical"]
# drain_<mode> runs right after pipeline, incremental right after cli; naive_small, pipeline_hash: --only
ALL_SCENARIOS = [*FULL_SYNC_SCENARIOS, "incremental", "pgsync", "pipeline_hash", "naive_small"]
LABELS = {
    "ceiling": "ceiling (pre-serialised bulk, parallel)",
    "naive": "naive baseline (article)",
    "pipeline": "pipeline full sync (in-process)",
    "cli": "pipeline full sync (CLI subprocess)",
    "ceiling_small": "ceiling, small documents",
    "pipeline_small": "pipeline full sync, small documents (in-process)",
    "naive_small": "naive baseline, small documents",
    "incremental": "incremental drain through a Dagster run (triggers)",
    "drain_triggers": "drain, triggers (1% upd + 0.1% del, ops.drain)",
    "drain_logical": "drain, logical (1% upd + 0.1% del, ops.drain)",
    "pgsync": "PGSync initial sync",
    "pipeline_hash": "pipeline full sync, reconcile: hash",
}
# a measurement whose docs/s is a drain's changes/s, not a full sync's
DRAINS = ("incremental", "drain_triggers", "drain_logical")


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pg_url, self.es_url = common.server_urls()
        self.tmp = Path(tempfile.mkdtemp(prefix="sync-bench-"))
        self.config = self.tmp / "sync.yaml"
        self.config.write_text(common.spec_yaml())
        self.config_hash = self.tmp / "sync-hash.yaml"
        self.config_hash.write_text(common.spec_yaml(reconcile="hash"))
        self.bulk_file = self.tmp / "ceiling.ndjson"
        self.config_small = self.tmp / "sync-small.yaml"
        self.config_small.write_text(
            common.spec_yaml(index=common.SMALL_INDEX, name=common.SMALL_SPEC_NAME, table=common.SMALL_TABLE)
        )
        self.bulk_file_small = self.tmp / "ceiling-small.ndjson"
        # the same spec with `capture: logical`; only loaded once the build is known to have it
        self.config_by_capture = {"triggers": self.config, "logical": self.tmp / "sync-logical.yaml"}
        self.config_by_capture["logical"].write_text(common.spec_yaml(capture="logical"))
        self.env = {
            **os.environ,
            "SYNC_PG_URL": self.pg_url,
            "SYNC_ES_URL": self.es_url,
            "PYTHONPATH": str(common.PROJECT_ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        self.es = common.es_client(self.es_url)
        self.runs: dict[str, list[dict[str, Any]]] = {}
        self.unavailable: dict[str, str] = {}  # measurements this build cannot make, and why
        self.log = log
        self.small_rows = args.small_rows or args.rows
        self.counter = 0
        self.pgsync: dict[str, Any] = {"status": "not run"}
        self.pgsync_dir = self.tmp / "pgsync"
        self.output = Path(args.output) if args.output else common.BENCH_DIR / "results" / f"{_today()}.json"
        self.partial = self.output.with_suffix(".partial.tmp")  # removed once the result is written

    # --- plumbing ----------------------------------------------------------------------------

    def timeout(self, rows: int | None = None) -> float:
        return 300 + (rows or self.args.rows) * 0.01

    def fresh_dirs(self) -> tuple[Path, Path]:
        self.counter += 1
        staging, home = self.tmp / f"staging{self.counter}", self.tmp / f"dagster{self.counter}"
        return staging, home

    def scenario(self, name: str, *extra: str, rows: int | None = None) -> dict[str, Any]:
        cmd = [common.PYTHON, "-m", "bench.scenarios", name, *extra]
        logfile = self.tmp / f"{name}-{self.counter}.log"
        measured = common.run_measured(cmd, self.env, self.timeout(rows), log=logfile)
        result = measured["result"]
        if result.get("unavailable"):
            raise common.CaptureUnavailable(result["unavailable"])
        if measured["rc"] != 0 or not result:
            raise RuntimeError(f"scenario {name} failed (exit {measured['rc']}):\n{measured['output_tail']}")
        result["process_wall_s"] = measured["wall_s"]
        # utime + stime of the whole scenario process tree (imports and setup included); the
        # scenario's own cpu_s, where it reports one, covers the timed work alone
        result["process_cpu_s"] = measured["cpu_s"]
        # the higher of the sampled VmHWM and the process's own VmHWM read just before exit
        result["peak_rss_mb"] = max(measured["peak_rss_mb"], result.get("self_peak_rss_mb", 0))
        return result

    def pipeline_args(self, config: Path | None = None) -> list[str]:
        staging, home = self.fresh_dirs()
        return [
            "--config",
            str(config or self.config),
            "--staging",
            str(staging),
            "--dagster-home",
            str(home),
        ]

    def es_indexing_total(self) -> int:
        try:
            stats = self.es.nodes.stats(metric="indices", index_metric="indexing")["nodes"]
            return sum(n["indices"]["indexing"]["index_total"] for n in stats.values())
        except Exception:
            return -1

    def dispatch_measured(self, name: str) -> None:
        """dispatch, plus two noise indicators: the load average and documents that other
        clients indexed into this Elasticsearch while the scenario ran (a shared machine)."""
        before, load_before = self.es_indexing_total(), os.getloadavg()[0]
        count = len(self.runs.get(name, []))
        self.dispatch(name)
        after = self.es_indexing_total()
        runs = self.runs.get(name, [])
        if len(runs) > count and before >= 0 and after >= 0:
            ours = runs[-1].get("docs") or 0
            runs[-1]["noise"] = {
                "loadavg_1m_before": round(load_before, 2),
                "loadavg_1m_after": round(os.getloadavg()[0], 2),
                "foreign_docs_indexed": max(0, after - before - ours) if name not in DRAINS else None,
            }
            self.save_partial()

    def record(self, name: str, result: dict[str, Any], docs_key: str = "docs") -> None:
        seconds = result["seconds"]
        docs = result.get(docs_key) or 0
        result["docs_per_s"] = round(docs / seconds, 1) if seconds else 0.0
        indexed = result.get("docs") or 0
        if indexed and result.get("cpu_s") is not None:
            result["cpu_s_per_million_docs"] = round(result["cpu_s"] / indexed * 1e6, 2)
        if indexed and result.get("process_cpu_s") is not None:
            result["process_cpu_s_per_million_docs"] = round(result["process_cpu_s"] / indexed * 1e6, 2)
        self.runs.setdefault(name, []).append(result)
        self.save_partial()
        log(
            f"  {name}: {docs:,} docs in {seconds:.1f}s = {result['docs_per_s']:,.0f} docs/s, "
            f"peak RSS {result.get('peak_rss_mb', 0):.0f} MB"
        )

    def save_partial(self) -> None:
        """Every finished measurement, so a run that dies late still leaves its figures."""
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.partial.write_text(json.dumps(self.runs, indent=1, default=str))

    def cleanup_dirs(self) -> None:
        for path in self.tmp.glob("staging*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in self.tmp.glob("dagster*"):
            shutil.rmtree(path, ignore_errors=True)

    # --- scenarios ---------------------------------------------------------------------------

    def run_ceiling(self, small: bool = False) -> None:
        name = "ceiling_small" if small else "ceiling"
        result = self.scenario(
            "ceiling",
            "--config", str(self.config_small if small else self.config),
            "--bulk-file", str(self.bulk_file_small if small else self.bulk_file),
            "--index", f"bench_{name}",
            "--threads", str(self.args.ceiling_threads),
            "--body-mb", str(self.args.ceiling_body_mb),
        )  # fmt: skip
        self._check_count(name, result, self.small_rows if small else self.rows_now)
        self.record(name, result)
        common.drop_bench_indexes(self.es, f"bench_{name}*")

    def run_ceiling_small(self) -> None:
        self.run_ceiling(small=True)

    def run_naive(self, small: bool = False) -> None:
        name = "naive_small" if small else "naive"
        table = common.SMALL_TABLE if small else common.TABLE
        result = self.scenario("naive", "--index", f"bench_{name}", "--table", table)
        self._check_count(name, result, self.small_rows if small else self.rows_now)
        self.record(name, result)
        common.drop_bench_indexes(self.es, f"bench_{name}*")

    def run_naive_small(self) -> None:
        self.run_naive(small=True)

    def run_pipeline_small(self) -> None:
        self.run_pipeline("pipeline_small", config=self.config_small, rows=self.small_rows)

    def run_drain(self, capture: str) -> None:
        """Right after the in-process full sync (its index holds bench_products)."""
        name = f"drain_{capture}"
        try:
            result = self.scenario(
                "drain", *self.pipeline_args(self.config_by_capture[capture]), "--capture", capture
            )
        except common.CaptureUnavailable as exc:
            log(f"  {name}: {exc}")
            self.unavailable[name] = str(exc)
            return
        ok = (
            result.get("docs_in_es_after") == result.get("expected_after")
            and result.get("update_arrived")
            and result.get("left_after_drain") == 0
            and result.get("docs_in_es_final") == result.get("table_rows_final")
        )
        result["ok"] = result["complete"] = bool(ok)
        if not ok:
            log(f"  {name}: result did not check out: {result}")
        self.record(name, result, docs_key="changes")
        self.cleanup_dirs()

    def run_pipeline(self, name: str = "pipeline", config: Path | None = None, profile: str | None = None,
                     rows: int | None = None) -> dict[str, Any]:  # fmt: skip
        extra = self.pipeline_args(config) + (["--profile", profile] if profile else [])
        result = self.scenario("pipeline", *extra, rows=rows)
        self._check_count(name, result, rows or self.rows_now)
        self.record(name, result)
        self.cleanup_dirs()
        return result

    def run_cli(self) -> None:
        from sync_pipeline.io.elasticsearch import drop_target

        drop_target(self.es, common.PIPELINE_INDEX)
        staging, home = self.fresh_dirs()
        env = self.env | {
            "SYNC_CONFIG": str(self.config),
            "SYNC_STAGING_DIR": str(staging),
            "DAGSTER_HOME": str(home),
        }
        home.mkdir(parents=True, exist_ok=True)
        cmd = [
            common.SYNC_PIPELINE,
            "--config",
            str(self.config),
            "sync",
            "--spec",
            common.SPEC_NAME,
            "--full",
        ]
        measured = common.run_measured(cmd, env, self.timeout(), log=self.tmp / f"cli-{self.counter}.log")
        if measured["rc"] != 0:
            raise RuntimeError(f"CLI sync failed (exit {measured['rc']}):\n{measured['output_tail']}")
        self.es.indices.refresh(index=common.PIPELINE_INDEX)
        count = self.es.count(index=common.PIPELINE_INDEX)["count"]
        result = {
            "docs": count,
            "seconds": measured["wall_s"],
            "peak_rss_mb": measured["peak_rss_mb"],
            "tree_peak_rss_mb": measured["tree_peak_rss_mb"],
            "process_cpu_s": measured["cpu_s"],
            "docs_in_es": count,
            "summary": measured["output_tail"],
        }
        self._check_count("cli", result, self.rows_now)
        self.record("cli", result)
        self.cleanup_dirs()

    def run_incremental(self) -> None:
        """Right after a full sync (the CLI's): the index holds the table."""
        result = self.scenario("incremental", *self.pipeline_args())
        ok = (
            result.get("success")
            and result.get("docs_in_es_after") == result.get("expected_after")
            and result.get("update_arrived")
            and result.get("buffer_left") == 0
        )
        result["ok"] = bool(ok)
        if not ok:
            log(f"  incremental: result did not check out: {result}")
        self.record("incremental", result, docs_key="changes")
        self.cleanup_dirs()

    def setup_pgsync(self) -> None:
        from bench import pgsync_bench

        info: dict[str, Any] = {"status": "setting up"}
        self.pgsync = info
        try:
            python = pgsync_bench.ensure_venv()
            info["versions"] = pgsync_bench.pgsync_versions(python)
            info["redis"] = pgsync_bench.ensure_redis()
            info["cluster"] = pgsync_bench.ensure_cluster()
            info["seed_seconds"] = round(pgsync_bench.seed(self.args.rows), 1)
            self.pgsync_dir.mkdir(exist_ok=True)
            pgsync_bench.write_schema(self.pgsync_dir / "schema.json")
            # as released, against this Elasticsearch: expected to fail, and why is the finding
            plain = pgsync_bench.run_once(self.pgsync_dir, self.es_url, shim=False, timeout=self.timeout())
            info["unmodified"] = plain
            if plain.get("ok"):
                info["status"] = "runs unmodified"
                info["shim"] = False
            else:
                log(f"  PGSync as released fails: {plain.get('error')}")
                info["status"] = "fails unmodified; measured with the GET / shim (bench/pgsync_shim.py)"
                info["shim"] = True
        except Exception as exc:
            info["status"] = "could not be set up"
            info["error"] = f"{type(exc).__name__}: {exc}"
            log(f"  PGSync setup failed: {info['error']}")

    def run_pgsync(self) -> None:
        from bench import pgsync_bench

        result = pgsync_bench.run_once(
            self.pgsync_dir, self.es_url, shim=self.pgsync.get("shim", False), timeout=self.timeout()
        )
        if not result.get("ok"):
            self.pgsync.setdefault("failures", []).append(result)
            log(f"  pgsync run failed: {result.get('error')}")
            return
        result["docs"] = result.get("docs_in_es") or 0
        self._check_count("pgsync", result, self.args.rows)
        self.record("pgsync", result)
        common.drop_bench_indexes(self.es, "bench_pgsync*")

    def _check_count(self, name: str, result: dict[str, Any], expected: int) -> None:
        found = result.get("docs_in_es")
        result["complete"] = found == expected
        if found != expected:
            log(f"  WARNING {name}: {found} documents in Elasticsearch, expected {expected}")

    # --- the whole run -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        args = self.args
        started = time.perf_counter()
        report: dict[str, Any] = {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        report["machine"] = common.machine_description(self.es_url, self.pg_url)
        log(f"machine: {report['machine']}")
        common.drop_bench_indexes(self.es)
        log(f"seeding {args.rows:,} rows into {common.TABLE}")
        self.rows_now = args.rows
        report["seed_seconds"] = round(common.seed_table(self.pg_url, args.rows), 1)
        report["table"] = common.table_stats(self.pg_url)
        log(f"  {report['table']}")
        rotation = list(FULL_SYNC_SCENARIOS)
        if args.only:
            rotation = [name for name in args.only if name != "pgsync"]
        if args.repeat > 0 and any(name.endswith("_small") for name in rotation):
            log(f"seeding {self.small_rows:,} rows into {common.SMALL_TABLE}")
            report["seed_seconds_small"] = round(
                common.seed_table(self.pg_url, self.small_rows, common.SMALL_TABLE), 1
            )
            report["table_small"] = common.table_stats(self.pg_url, common.SMALL_TABLE)
            log(f"  {report['table_small']}")
        report["logical_capture"] = common.logical_capture_available()[1]
        log(f"logical capture: {report['logical_capture']}")
        for small in (False, True):
            name = "ceiling_small" if small else "ceiling"
            if name not in rotation or args.repeat <= 0:
                continue
            log(f"preparing the {name}'s pre-serialised documents (untimed)")
            prep = self.scenario(
                "prepare-ceiling",
                "--config", str(self.config_small if small else self.config),
                "--out", str(self.bulk_file_small if small else self.bulk_file),
            )  # fmt: skip
            suffix = "_small" if small else ""
            report[f"ceiling_documents{suffix}"] = {k: prep[k] for k in ("docs", "bytes", "seconds")}
            report[f"avg_document_bytes{suffix}"] = round(prep["bytes"] / max(prep["docs"], 1), 1)

        if args.pgsync and args.repeat > 0 and (not args.only or "pgsync" in args.only):
            log("setting up PGSync (own venv, logical-WAL cluster on :55440, Redis on :56379)")
            self.setup_pgsync()
            if "shim" in self.pgsync:
                rotation.append("pgsync")
        else:
            self.pgsync = {"status": "skipped (--no-pgsync)"}

        for rep in range(args.repeat):
            order = rotation[rep % len(rotation) :] + rotation[: rep % len(rotation)]
            log(f"repetition {rep + 1}/{args.repeat}: {', '.join(order)}")
            for name in order:
                self.dispatch_measured(name)
                if name == "cli":
                    self.dispatch_measured("incremental")
                if name == "pipeline":
                    # alternating: neither capture mode always drains second, right after the
                    # other's drain and restore
                    captures = list(args.capture_modes)[:: 1 if rep % 2 == 0 else -1]
                    for capture in captures:
                        if f"drain_{capture}" not in self.unavailable:
                            self.dispatch_measured(f"drain_{capture}")

        if args.profile:
            # Resolved: a relative --profile-out is relative to where make was run, not to the project.
            default = common.BENCH_DIR / "results" / f"profile-{_today()}.txt"
            path = Path(args.profile_out or default).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            log(f"profiling one pipeline run with pyinstrument → {path}")
            try:
                result = self.run_pipeline("profiled_pipeline", profile=str(path))
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
                    self, args.pgbench_rows, args.pgbench_seconds, args.pgbench_clients, args.pgbench_repeat
                )
                report["pgbench"] = bench.run()
            except Exception as exc:
                log(f"  pgbench FAILED: {exc}")
                report["pgbench"] = {"error": f"{type(exc).__name__}: {exc}"[-2000:], "tps_ratio": {}}
        else:
            report["pgbench"] = {"status": "skipped (--no-pgbench)", "tps_ratio": {}}

        if args.freshness:
            from bench import freshness

            report["freshness"] = {}
            for capture in args.capture_modes:
                log(
                    f"freshness ({capture}): dagster dev, sensor settings '{args.freshness_sensor}', "
                    f"{args.freshness_changes} single-row changes (steady + bursts), commit → searchable"
                )
                fresh = freshness.run(
                    self, capture, args.freshness_changes, sensor=args.freshness_sensor,
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
                report["soak"] = soak.run(self, args.soak, args.soak_rate, args.soak_capture)
            except Exception as exc:
                traceback.print_exc()
                report["soak"] = {"status": f"failed: {type(exc).__name__}: {exc}"[-2000:]}
            log(f"  soak: {json.dumps({k: report['soak'].get(k) for k in ('status', 'drift', 'freshness')})}")

        scale: list[dict[str, Any]] = []
        for rows in args.scale:
            main = self.runs.get("pipeline", [])
            if rows == args.rows and any(not r.get("failed") for r in main):
                # the main run already measured the pipeline at this size: reuse its median
                good = [r for r in main if not r.get("failed")]
                scale.append(
                    {
                        "rows": rows,
                        "docs_per_s": round(statistics.median(r["docs_per_s"] for r in good), 1),
                        "seconds": round(statistics.median(r["seconds"] for r in good), 3),
                        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in good), 1),
                        "cpu_s_per_million_docs": _median(good, "cpu_s_per_million_docs"),
                        "steps": good[0].get("steps"),
                        "source": f"main run (median of {len(good)})",
                        "complete": all(r.get("complete") for r in good),
                    }
                )
                continue
            log(f"scale: seeding {rows:,} rows")
            self.rows_now = rows
            seed_seconds = common.seed_table(self.pg_url, rows)
            log(f"  seeded in {seed_seconds:.0f} s")
            try:
                result = self.run_pipeline(f"scale_{rows}", rows=rows)
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
        scale.sort(key=lambda s: s["rows"])
        report["scale"] = scale
        report["wall_seconds"] = round(time.perf_counter() - started, 1)
        return self.summarise(report)

    def dispatch(self, name: str) -> None:
        try:
            if name == "pipeline":
                self.run_pipeline()
            elif name == "pipeline_hash":
                self.run_pipeline("pipeline_hash", config=self.config_hash)
            elif name.startswith("drain_"):
                self.run_drain(name.removeprefix("drain_"))
            else:
                getattr(self, f"run_{name}")()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            log(f"  {name} FAILED: {exc}")
            self.runs.setdefault(name, []).append({"error": str(exc)[-2000:], "failed": True})

    def summarise(self, report: dict[str, Any]) -> dict[str, Any]:
        medians: dict[str, dict[str, Any]] = {}
        for name, runs in self.runs.items():
            good = [r for r in runs if not r.get("failed")]
            if not good:
                medians[name] = {"failed": True, "errors": [r.get("error") for r in runs]}
                continue
            medians[name] = {
                "docs_per_s": round(statistics.median(r["docs_per_s"] for r in good), 1),
                "seconds": round(statistics.median(r["seconds"] for r in good), 3),
                "peak_rss_mb": round(statistics.median(r.get("peak_rss_mb", 0) for r in good), 1),
                "max_peak_rss_mb": round(max(r.get("peak_rss_mb", 0) for r in good), 1),
                "docs": good[0].get("changes") if name in DRAINS else good[0].get("docs"),
                "cpu_s_per_million_docs": _median(good, "cpu_s_per_million_docs"),
                "process_cpu_s_per_million_docs": _median(good, "process_cpu_s_per_million_docs"),
                "runs": len(good),
                "failed_runs": len(runs) - len(good),
                "all_complete": all(r.get("complete", r.get("ok", True)) for r in good),
            }
        ceilings = {
            "": medians.get("ceiling", {}).get("docs_per_s"),
            "_small": medians.get("ceiling_small", {}).get("docs_per_s"),
        }
        baselines = {
            "": medians.get("naive", {}).get("docs_per_s"),
            "_small": medians.get("naive_small", {}).get("docs_per_s"),
        }
        for name, m in medians.items():
            full_sync = name not in DRAINS and not m.get("failed")
            size = "_small" if name.endswith("_small") else ""
            ceiling, baseline = ceilings[size], baselines[size]
            m["ratio_to_ceiling"] = round(m["docs_per_s"] / ceiling, 3) if full_sync and ceiling else None
            m["ratio_to_baseline"] = round(m["docs_per_s"] / baseline, 3) if full_sync and baseline else None
        ceiling, baseline = ceilings[""], baselines[""]
        pipeline = medians.get("pipeline", {})
        small = medians.get("pipeline_small", {})
        drains: dict[str, Any] = {}
        drain_ratio: dict[str, Any] = {}
        for capture in CAPTURE_MODES:
            m = medians.get(f"drain_{capture}", {})
            rate = None if m.get("failed") else m.get("docs_per_s")
            drains[capture] = rate
            full = pipeline.get("docs_per_s")
            drain_ratio[capture] = round(rate / full, 3) if rate and full else None
        report.update(
            {
                "rows": self.args.rows,
                "small_rows": self.small_rows,
                "repeat": self.args.repeat,
                "ceiling_docs_per_s": ceiling,
                "baseline_docs_per_s": baseline,
                "pipeline_docs_per_s": pipeline.get("docs_per_s"),
                "pipeline_cli_docs_per_s": medians.get("cli", {}).get("docs_per_s"),
                "pgsync_docs_per_s": medians.get("pgsync", {}).get("docs_per_s"),
                "incremental_changes_per_s": medians.get("incremental", {}).get("docs_per_s"),
                "ratio_to_ceiling": pipeline.get("ratio_to_ceiling"),
                "ratio_to_baseline": pipeline.get("ratio_to_baseline"),
                "ceiling_small_docs_per_s": ceilings["_small"],
                "pipeline_small_docs_per_s": small.get("docs_per_s"),
                "ratio_to_ceiling_small": small.get("ratio_to_ceiling"),
                "cpu_s_per_million_docs": pipeline.get("cpu_s_per_million_docs"),
                "cpu_s_per_million_docs_small": small.get("cpu_s_per_million_docs"),
                "cpu_s_per_million_docs_process": pipeline.get("process_cpu_s_per_million_docs"),
                "cpu_s_per_million_docs_small_process": small.get("process_cpu_s_per_million_docs"),
                "cpu_s_per_million_docs_cli": medians.get("cli", {}).get("process_cpu_s_per_million_docs"),
                # changes/s of a drain of 1% updates + 0.1% deletes, per capture mode (null: not
                # measured, `unavailable` says why), and its ratio to the same table's full sync
                "drain_docs_per_s": drains,
                "drain_ratio_to_full_sync": drain_ratio,
                "drain_ratio_to_full_sync_min": min((v for v in drain_ratio.values() if v), default=None),
                "pgbench_tps_ratio": report.get("pgbench", {}).get("tps_ratio", {}),
                "unavailable": self.unavailable,
                "peak_rss_mb": pipeline.get("max_peak_rss_mb"),
                "ceiling_config": {
                    "threads": self.args.ceiling_threads,
                    "body_mb": self.args.ceiling_body_mb,
                },
                "pgsync": self.pgsync,
                "medians": medians,
                "scenarios": {
                    name: {"label": LABELS.get(name, name), "runs": runs} for name, runs in self.runs.items()
                },
            }
        )
        report["targets"] = targets(report)
        return report

    def close(self) -> None:
        if self.args.keep:
            log(f"--keep: table {common.TABLE}, bench_* indexes and {self.tmp} left in place")
            return
        try:
            common.drop_bench_indexes(self.es)
            common.drop_table(self.pg_url)
        except Exception as exc:
            log(f"cleanup: {exc}")
        if self.args.pgsync:
            from bench import pgsync_bench

            pgsync_bench.stop_cluster()
            pgsync_bench.stop_redis()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _target(target: str, measured: Any, met: bool | None, **extra: Any) -> dict[str, Any]:
    return {"target": target, "measured": measured, "met": bool(met), **extra}


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the measured value and whether it is met. A figure this
    run could not measure (logical capture absent from the build, a section skipped) is not met,
    and says why in `note`."""
    out: dict[str, Any] = {}
    unavailable = report.get("unavailable") or {}

    def at_least(name: str, target: float, value: Any, label: str, note: str | None = None) -> None:
        met = isinstance(value, int | float) and value >= target
        out[name] = _target(f">= {target}", value, met, **({"note": note} if value is None and note else {}))
        out[name]["what"] = label

    def at_most(name: str, target: float, value: Any, label: str, note: str | None = None) -> None:
        met = isinstance(value, int | float) and value <= target
        out[name] = _target(f"<= {target}", value, met, **({"note": note} if value is None and note else {}))
        out[name]["what"] = label

    at_least("full_sync_vs_ceiling", 0.85, report.get("ratio_to_ceiling"), "pipeline ÷ ceiling, ~1 KB docs")
    at_least("full_sync_vs_ceiling_small", 0.75, report.get("ratio_to_ceiling_small"),
             "pipeline ÷ ceiling, ~250 B docs")  # fmt: skip
    at_most("cpu_s_per_million_docs", 20, report.get("cpu_s_per_million_docs"),
            "CPU-s of the sync per million ~1 KB docs")  # fmt: skip
    at_most("cpu_s_per_million_docs_small", 10, report.get("cpu_s_per_million_docs_small"),
            "CPU-s of the sync per million ~250 B docs")  # fmt: skip
    for capture, ratio in (report.get("drain_ratio_to_full_sync") or {}).items():
        label = f"drain changes/s ÷ full-sync docs/s ({capture})"
        at_least(f"drain_vs_full_sync_{capture}", 0.5, ratio, label, note=unavailable.get(f"drain_{capture}"))
    fresh = report.get("freshness") or {}
    for capture in CAPTURE_MODES:
        mode = fresh.get(capture)
        if mode is None:
            continue
        note = None if mode.get("p95_s") is not None else mode.get("status")
        at_most(
            f"freshness_p95_{capture}", 1.0, mode.get("p95_s"), f"commit → searchable p95 s ({capture})", note
        )
        at_most(
            f"freshness_p99_{capture}", 2.0, mode.get("p99_s"), f"commit → searchable p99 s ({capture})", note
        )
        changes = mode.get("changes") or 0
        out[f"freshness_p95_{capture}"]["changes"] = changes
    pgbench = report.get("pgbench") or {}
    if pgbench.get("modes") or pgbench.get("error"):
        ratios = report.get("pgbench_tps_ratio") or {}
        errors = pgbench.get("errors") or {}
        why = errors.get("logical") or pgbench.get("error")
        label = "pgbench TPS with logical capture ÷ without"
        at_least("pgbench_tps_ratio_logical", 0.95, ratios.get("logical"), label, why)
        out["pgbench_tps_ratio_trigger"] = _target(
            "reported (no target; README states the cost)", ratios.get("trigger"),
            ratios.get("trigger") is not None, what="pgbench TPS with triggers ÷ without",
        )  # fmt: skip
    rb = report.get("ratio_to_baseline")
    out["full_sync_vs_naive"] = _target(">= 4.0", rb, rb is not None and rb >= 4.0)
    pg = report.get("pgsync_docs_per_s")
    pipe = report.get("pipeline_docs_per_s")
    out["faster_than_pgsync"] = _target(
        "pipeline docs/s > PGSync docs/s", round(pipe / pg, 3) if pg and pipe else None,
        bool(pg and pipe and pipe > pg),
    )  # fmt: skip
    scale = [s for s in report.get("scale") or [] if s.get("peak_rss_mb")]
    peaks = [report.get("peak_rss_mb")] + [s["peak_rss_mb"] for s in scale]
    peaks = [p for p in peaks if p]
    flat = None
    if len(scale) >= 2:
        values = [s["peak_rss_mb"] for s in scale]
        flat = round(max(values) / min(values), 3)
    largest = max((s["rows"] for s in scale), default=None)
    out["peak_rss"] = {
        "target": "<= 300 MB, within 10% from 100k to 10M rows",
        "measured_max_mb": max(peaks) if peaks else None,
        "scale_max_over_min": flat,
        "largest_scale_rows": largest,
        "met": bool(peaks) and max(peaks) <= 300 and (flat is None or flat <= 1.10),
    }
    if largest is None or largest < 10_000_000:
        out["peak_rss"]["note"] = f"scale reached {largest or 0:,} rows, not 10,000,000 (--scale)"
    soak = report.get("soak")
    if soak:
        drift = soak.get("drift")
        out["soak_drift"] = _target("verify drift = 0 after the soak", drift, drift == 0)
        fresh_soak = soak.get("freshness") or {}
        out["soak_freshness_p95"] = _target("<= 1.0 s over the whole soak", fresh_soak.get("p95_s"),
                                            (fresh_soak.get("p95_s") or 1e9) <= 1.0)  # fmt: skip
    return out


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    return round(statistics.median(values), 2) if values else None


def print_table(report: dict[str, Any]) -> None:
    from sync_pipeline.apps.cli.output import format_table

    order = ["ceiling", "naive", "pipeline", "cli", "incremental", "drain_triggers", "drain_logical",
             "ceiling_small", "naive_small", "pipeline_small", "pgsync", "pipeline_hash",
             "profiled_pipeline"]  # fmt: skip
    rows = []
    for name in order + [n for n in report["medians"] if n not in order and not n.startswith("scale_")]:
        m = report["medians"].get(name)
        if m is None or name in [r[0] for r in rows]:
            continue
        if m.get("failed"):
            rows.append([name, "FAILED", "", "", "", "", "", "", ""])
            continue
        rows.append(
            [
                name,
                m.get("docs") or 0,
                m["seconds"],
                m["docs_per_s"],
                "-" if m["ratio_to_ceiling"] is None else f"{m['ratio_to_ceiling']:.2f}",
                "-" if m["ratio_to_baseline"] is None else f"{m['ratio_to_baseline']:.2f}",
                "-" if m.get("cpu_s_per_million_docs") is None else m["cpu_s_per_million_docs"],
                "-"
                if m.get("process_cpu_s_per_million_docs") is None
                else m["process_cpu_s_per_million_docs"],
                m["peak_rss_mb"],
            ]
        )
    for name in report.get("unavailable") or {}:
        rows.append([name, "n/a", "", "", "", "", "", "", ""])
    print()
    print(
        f"rows={report['rows']:,}  small rows={report.get('small_rows') or 0:,}  "
        f"repeat={report['repeat']}  (medians)"
    )
    headers = [
        "scenario",
        "docs",
        "wall s",
        "docs/s",
        "× ceiling",
        "× baseline",
        "CPU-s/M docs",
        "process CPU-s/M",
        "peak RSS MB",
    ]
    print(format_table(headers, rows))
    for name, why in (report.get("unavailable") or {}).items():
        print(f"  {name}: {why}")
    print(
        f"\ndrain changes/s {json.dumps(report.get('drain_docs_per_s'))}, "
        f"÷ full sync {json.dumps(report.get('drain_ratio_to_full_sync'))}"
    )
    pgbench = report.get("pgbench") or {}
    if pgbench.get("modes"):
        print()
        print(
            format_table(
                ["pgbench mode", "TPS", "lat avg ms", "p95 ms", "p99 ms", "bulk UPDATE s", "bulk INSERT s"],
                [
                    [mode] + [m.get(k, "n/a") if k == "tps" else m.get(k, "") for k in
                              ("tps", "latency_avg_ms", "latency_p95_ms", "latency_p99_ms", "bulk_update_s",
                               "bulk_insert_s")]
                    for mode, m in pgbench["modes"].items()
                ],
            )
        )  # fmt: skip
        for mode, why in (pgbench.get("errors") or {}).items():
            print(f"  {mode}: {why}")
        print(f"pgbench TPS ratio (with capture ÷ without): {json.dumps(report.get('pgbench_tps_ratio'))}")
    if report["scale"]:
        print()
        print(
            format_table(
                ["scale rows", "docs/s", "wall s", "peak RSS MB"],
                [
                    [s["rows"], s.get("docs_per_s", 0.0), s.get("seconds", 0.0), s.get("peak_rss_mb", 0.0)]
                    for s in report["scale"]
                ],
            )
        )
    fresh = report.get("freshness")
    if fresh:
        keys = ("changes", "p50_s", "p95_s", "p99_s", "max_s", "cold_first_change_s", "drain_runs",
                "max_concurrent_drains", "status")  # fmt: skip
        for capture, mode in fresh.items():
            print(f"\nfreshness ({capture}): {json.dumps({k: mode.get(k) for k in keys})}")
    soak = report.get("soak")
    if soak:
        keys = ("status", "minutes", "drift", "freshness", "pgbench_tps", "runs_summary")
        print(f"\nsoak: {json.dumps({k: soak.get(k) for k in keys})}")
    print(f"\nPGSync: {report['pgsync'].get('status')}")
    print("\ntargets:")
    for name, t in report["targets"].items():
        shown = {k: v for k, v in t.items() if k not in ("target", "what")}
        print(f"  {name:<30} target {t['target']:<32} {json.dumps(shown)}")


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


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
        "--ceiling-threads", type=int, default=3, help="parallel bulk requests for the ceiling"
    )
    parser.add_argument("--ceiling-body-mb", type=float, default=5.0, help="bulk body size for the ceiling")
    parser.add_argument("--output", help="result JSON (default bench/results/<YYYY-MM-DD>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the table, bench_* indexes and temp files")
    args = parser.parse_args(argv)
    if args.freshness and args.freshness_changes < 20:
        parser.error("--freshness-changes must be at least 20")
    unknown = [m for m in args.capture_modes if m not in CAPTURE_MODES]
    if unknown:
        parser.error(f"unknown capture modes {unknown} (of {', '.join(CAPTURE_MODES)})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness = Harness(args)
    output = harness.output
    try:
        report = harness.run()
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
    print(f"\nwrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
