"""The bench's harness: its temporary files and specs, one measured subprocess per scenario, the runs.

bench/run.py decides what runs in which order; bench/summary.py turns the runs into figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import capture_modes, common, measure
from bench.summary import DRAINS


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


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
        # the same spec through a pandas transform: identity (the path's own cost), realistic
        self.config_transform = {name: self.tmp / f"sync-{name}.yaml" for name in ("identity", "realistic")}
        for name, path in self.config_transform.items():
            path.write_text(common.spec_yaml(transform=name))
        # the same spec with `capture: logical`; only loaded once the build is known to have it
        self.config_by_capture = {"triggers": self.config, "logical": self.tmp / "sync-logical.yaml"}
        self.config_by_capture["logical"].write_text(common.spec_yaml(capture="logical"))
        self.env = common.server_env(self.pg_url, self.es_url)
        self.es = common.es_client(self.es_url)
        self.runs: dict[str, list[dict[str, Any]]] = {}
        self.unavailable: dict[str, str] = {}  # measurements this build cannot make, and why
        self.log = log
        self.small_rows = args.small_rows or args.rows
        self.rows_now = args.rows  # bench_products' size now: the scale curve reseeds it
        self.counter = 0
        self.pgsync: dict[str, Any] = {"status": "not run"}
        self.pgsync_dir = self.tmp / "pgsync"
        self.output = Path(args.output) if args.output else common.BENCH_DIR / "results" / f"{today()}.json"
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
        measured = measure.run_measured(cmd, self.env, self.timeout(rows), log=logfile)
        result = measured["result"]
        if result.get("unavailable"):
            raise capture_modes.CaptureUnavailable(result["unavailable"])
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
        # gone before the next scenario: a freshly loaded index keeps Elasticsearch merging
        common.drop_bench_indexes(self.es, f"bench_{name}*")

    def run_ceiling_small(self) -> None:
        self.run_ceiling(small=True)

    def run_naive(self, small: bool = False) -> None:
        name = "naive_small" if small else "naive"
        table = common.SMALL_TABLE if small else common.TABLE
        result = self.scenario("naive", "--index", f"bench_{name}", "--table", table)
        self._check_count(name, result, self.small_rows if small else self.rows_now)
        self.record(name, result)
        # gone before the next scenario: a freshly loaded index keeps Elasticsearch merging
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
        except capture_modes.CaptureUnavailable as exc:
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
        from sync_pipeline.io.search.indices import drop_target

        drop_target(self.es, common.PIPELINE_INDEX)
        env = self.env | common.run_dirs_env(self.config, *self.fresh_dirs())
        cmd = [
            common.SYNC_PIPELINE,
            "--config",
            str(self.config),
            "sync",
            "--spec",
            common.SPEC_NAME,
            "--full",
        ]
        measured = measure.run_measured(cmd, env, self.timeout(), log=self.tmp / f"cli-{self.counter}.log")
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

    def run_cli_small(self) -> None:
        from bench import cli_cost

        cli_cost.run_cli_small(self)

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

    def dispatch(self, name: str) -> None:
        try:
            if name == "pipeline":
                self.run_pipeline()
            elif name == "pipeline_hash":
                self.run_pipeline("pipeline_hash", config=self.config_hash)
            elif name.startswith("pipeline_pandas_"):
                self.run_pipeline(name, config=self.config_transform[name.removeprefix("pipeline_pandas_")])
            elif name.startswith("drain_"):
                self.run_drain(name.removeprefix("drain_"))
            else:
                getattr(self, f"run_{name}")()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            log(f"  {name} FAILED: {exc}")
            self.runs.setdefault(name, []).append({"error": str(exc)[-2000:], "failed": True})

    def close(self) -> None:
        if self.args.keep:
            log(f"--keep: table {common.TABLE}, bench_* indexes and {self.tmp} left in place")
            return
        try:
            common.drop_bench_indexes(self.es)
            common.drop_table(self.pg_url)
            from bench import joined_shapes

            joined_shapes.drop(self.pg_url)
        except Exception as exc:
            log(f"cleanup: {exc}")
        if self.args.pgsync:
            from bench import pgsync_bench

            pgsync_bench.stop_cluster()
            pgsync_bench.stop_redis()
        shutil.rmtree(self.tmp, ignore_errors=True)
