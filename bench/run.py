"""The performance benchmark: ceiling, naive baseline, pipeline, incremental, PGSync, scale.

    .venv/bin/python -m bench.run [--rows N] [--repeat R] [--scale 100000,1000000,3000000]
                                  [--freshness] [--profile] [--no-pgsync] [--keep]

One run, one Elasticsearch, one seeded table `bench_products` of N rows. Each
measurement runs in its own subprocess (its peak RSS is its own), scenarios
alternate within every repetition (the order rotates), and the median of the
repetitions is reported. Writes bench/results/<YYYY-MM-DD>.json (or --output)
and prints a table. Indexes `bench_*` and the table are dropped at the end
unless --keep. See docs/benchmarks.md.
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

FULL_SYNC_SCENARIOS = ["ceiling", "naive", "pipeline", "cli"]
ALL_SCENARIOS = [*FULL_SYNC_SCENARIOS, "incremental", "pgsync", "pipeline_hash"]  # pipeline_hash: --only
LABELS = {
    "ceiling": "ceiling (pre-serialised bulk, parallel)",
    "naive": "naive baseline (article)",
    "pipeline": "pipeline full sync (in-process)",
    "cli": "pipeline full sync (CLI subprocess)",
    "incremental": "incremental drain (1% upd + 0.1% del)",
    "pgsync": "PGSync initial sync",
    "pipeline_hash": "pipeline full sync, reconcile: hash",
}


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
        self.env = {
            **os.environ,
            "SYNC_PG_URL": self.pg_url,
            "SYNC_ES_URL": self.es_url,
            "PYTHONPATH": str(common.PROJECT_ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        self.es = common.es_client(self.es_url)
        self.runs: dict[str, list[dict[str, Any]]] = {}
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
        if measured["rc"] != 0 or not result:
            raise RuntimeError(f"scenario {name} failed (exit {measured['rc']}):\n{measured['output_tail']}")
        result["process_wall_s"] = measured["wall_s"]
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
                "foreign_docs_indexed": max(0, after - before - ours) if name != "incremental" else None,
            }
            self.save_partial()

    def record(self, name: str, result: dict[str, Any], docs_key: str = "docs") -> None:
        seconds = result["seconds"]
        docs = result.get(docs_key) or 0
        result["docs_per_s"] = round(docs / seconds, 1) if seconds else 0.0
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

    def run_ceiling(self) -> None:
        result = self.scenario(
            "ceiling",
            "--config", str(self.config),
            "--bulk-file", str(self.bulk_file),
            "--threads", str(self.args.ceiling_threads),
            "--body-mb", str(self.args.ceiling_body_mb),
        )  # fmt: skip
        self._check_count("ceiling", result, self.rows_now)
        self.record("ceiling", result)
        common.drop_bench_indexes(self.es, "bench_ceiling*")

    def run_naive(self) -> None:
        result = self.scenario("naive", "--index", "bench_naive")
        self._check_count("naive", result, self.rows_now)
        self.record("naive", result)
        common.drop_bench_indexes(self.es, "bench_naive*")

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
        if "ceiling" in rotation and args.repeat > 0:
            log("preparing the ceiling's pre-serialised documents (untimed)")
            prep = self.scenario(
                "prepare-ceiling", "--config", str(self.config), "--out", str(self.bulk_file)
            )
            report["ceiling_documents"] = {k: prep[k] for k in ("docs", "bytes", "seconds")}
            report["avg_document_bytes"] = round(prep["bytes"] / max(prep["docs"], 1), 1)

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

        if args.freshness:
            from bench import freshness

            if "dagster" in args.freshness_modes:
                log("freshness: dagster dev + buffer sensor, single-row changes, commit → searchable")
                report["freshness"] = freshness.run(self, args.freshness_changes)
                log(
                    f"  {report['freshness'].get('status')}: p50 {report['freshness'].get('p50_s')} s, "
                    f"p95 {report['freshness'].get('p95_s')} s"
                )
            if "dagster-single" in args.freshness_modes:
                log("freshness: the same, one drain per run (no follow_seconds)")
                report["freshness_single_drain_runs"] = freshness.run(
                    self, args.freshness_changes, mode="dagster-single"
                )
                log(
                    f"  {report['freshness_single_drain_runs'].get('status')}: "
                    f"p50 {report['freshness_single_drain_runs'].get('p50_s')} s, "
                    f"p95 {report['freshness_single_drain_runs'].get('p95_s')} s"
                )

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
                        "steps": good[0].get("steps"),
                        "source": f"main run (median of {len(good)})",
                        "complete": all(r.get("complete") for r in good),
                    }
                )
                continue
            log(f"scale: seeding {rows:,} rows")
            self.rows_now = rows
            seed_seconds = common.seed_table(self.pg_url, rows)
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
                "docs": good[0].get("changes") if name == "incremental" else good[0].get("docs"),
                "runs": len(good),
                "failed_runs": len(runs) - len(good),
                "all_complete": all(r.get("complete", r.get("ok", True)) for r in good),
            }
        ceiling = medians.get("ceiling", {}).get("docs_per_s")
        baseline = medians.get("naive", {}).get("docs_per_s")
        for name, m in medians.items():
            full_sync = name not in ("incremental",) and not m.get("failed")
            m["ratio_to_ceiling"] = round(m["docs_per_s"] / ceiling, 3) if full_sync and ceiling else None
            m["ratio_to_baseline"] = round(m["docs_per_s"] / baseline, 3) if full_sync and baseline else None
        pipeline = medians.get("pipeline", {})
        report.update(
            {
                "rows": self.args.rows,
                "repeat": self.args.repeat,
                "ceiling_docs_per_s": ceiling,
                "baseline_docs_per_s": baseline,
                "pipeline_docs_per_s": pipeline.get("docs_per_s"),
                "pipeline_cli_docs_per_s": medians.get("cli", {}).get("docs_per_s"),
                "pgsync_docs_per_s": medians.get("pgsync", {}).get("docs_per_s"),
                "incremental_changes_per_s": medians.get("incremental", {}).get("docs_per_s"),
                "ratio_to_ceiling": pipeline.get("ratio_to_ceiling"),
                "ratio_to_baseline": pipeline.get("ratio_to_baseline"),
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


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the measured value and whether it is met."""
    medians = report["medians"]
    out: dict[str, Any] = {}
    rc = report.get("ratio_to_ceiling")
    out["full_sync_vs_ceiling"] = {"target": ">= 0.85", "measured": rc, "met": rc is not None and rc >= 0.85}
    rb = report.get("ratio_to_baseline")
    out["full_sync_vs_naive"] = {"target": ">= 4.0", "measured": rb, "met": rb is not None and rb >= 4.0}
    pg = report.get("pgsync_docs_per_s")
    pipe = report.get("pipeline_docs_per_s")
    out["faster_than_pgsync"] = {
        "target": "pipeline docs/s > PGSync docs/s",
        "measured": round(pipe / pg, 3) if pg and pipe else None,
        "met": bool(pg and pipe and pipe > pg),
    }
    peaks = [medians.get("pipeline", {}).get("max_peak_rss_mb")] + [
        s.get("peak_rss_mb") for s in report["scale"]
    ]
    peaks = [p for p in peaks if p]
    flat = None
    if len(report["scale"]) >= 2 and all(s.get("peak_rss_mb") for s in report["scale"]):
        values = [s["peak_rss_mb"] for s in report["scale"]]
        flat = round(max(values) / min(values), 3)
    out["peak_rss"] = {
        "target": "<= 300 MB and flat across sizes",
        "measured_max_mb": max(peaks) if peaks else None,
        "scale_max_over_min": flat,
        "met": bool(peaks) and max(peaks) <= 300 and (flat is None or flat <= 1.15),
    }
    fresh = report.get("freshness") or {}
    p95 = fresh.get("p95_s")
    out["freshness_p95"] = {"target": "<= 10 s", "measured": p95, "met": p95 is not None and p95 <= 10}
    return out


def print_table(report: dict[str, Any]) -> None:
    from sync_pipeline.apps.cli.output import format_table

    order = ["ceiling", "naive", "pipeline", "cli", "incremental", "pgsync", "pipeline_hash",
             "profiled_pipeline"]  # fmt: skip
    rows = []
    for name in order + [n for n in report["medians"] if n not in order and not n.startswith("scale_")]:
        m = report["medians"].get(name)
        if m is None or name in [r[0] for r in rows]:
            continue
        if m.get("failed"):
            rows.append([name, "FAILED", "", "", "", "", ""])
            continue
        rows.append(
            [
                name,
                m.get("docs") or 0,
                m["seconds"],
                m["docs_per_s"],
                "-" if m["ratio_to_ceiling"] is None else f"{m['ratio_to_ceiling']:.2f}",
                "-" if m["ratio_to_baseline"] is None else f"{m['ratio_to_baseline']:.2f}",
                m["peak_rss_mb"],
            ]
        )
    print()
    print(f"rows={report['rows']:,}  repeat={report['repeat']}  (medians)")
    print(
        format_table(["scenario", "docs", "wall s", "docs/s", "× ceiling", "× baseline", "peak RSS MB"], rows)
    )
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
        keys = (
            "changes",
            "p50_s",
            "p95_s",
            "max_s",
            "cold_first_change_s",
            "drain_runs",
            "max_concurrent_drains",
            "status",
        )
        print(f"\nfreshness: {json.dumps({k: fresh.get(k) for k in keys})}")
        single = report.get("freshness_single_drain_runs") or {}
        if single:
            print(f"freshness, one drain per run: {json.dumps({k: single.get(k) for k in keys})}")
    print(f"\nPGSync: {report['pgsync'].get('status')}")
    print("\ntargets:")
    for name, t in report["targets"].items():
        shown = {k: v for k, v in t.items() if k != "target"}
        print(f"  {name:<22} target {t['target']:<32} {json.dumps(shown)}")


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
    parser.add_argument("--freshness", action="store_true", help="also measure commit → searchable latency")
    parser.add_argument("--freshness-changes", type=int, default=60, help="single-row changes to time (≥ 50)")
    parser.add_argument(
        "--freshness-modes",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=["dagster", "dagster-single"],
        help="with --freshness: dagster (the buffer sensor, drain runs that follow the buffer) "
        "and/or dagster-single (one drain per run); default both",
    )
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
    if args.freshness and args.freshness_changes < 50:
        parser.error("--freshness-changes must be at least 50")
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
