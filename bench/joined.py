"""The joined-documents section (issue 27): documents built from related tables, for two shapes
(bench/joined_shapes.py), each measured in the same run as its ceiling and PGSync.

Per shape, every repetition measures, in its own subprocess, in an order that rotates:
- `pipeline`: the full sync of the joined spec (bench/scenarios.py's `pipeline`, in-process run_sync);
- `ceiling`: the same documents pre-serialised by the product's read + build path (relations
  included), loaded alone with the spec's bulk concurrency (bench/joined_scenarios.py);
- `root`: the full sync of the root table alone (the same spec, no relations): the reference for
  PostgreSQL's CPU per million documents;
- `pgsync`: PGSync 7.3.0 on the same schema and rows, in its own cluster (bench/pgsync_bench.py).
Around each, PostgreSQL's CPU (measure.postgres_cpu_seconds: the whole cluster, over the whole
subprocess). Medians of the repetitions, with their spread (min–max). Then, per `--joined-scale`
size other than `--joined-rows`, one pipeline run per shape after re-seeding at that size.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

from bench import common, joined_shapes, measure, pgsync_bench

MEASUREMENTS = ("pipeline", "ceiling", "root", "pgsync")


class JoinedSection:
    def __init__(self, harness: Any) -> None:
        self.h = harness
        self.args = harness.args
        self.dir = harness.tmp / "joined"
        self.dir.mkdir(exist_ok=True)
        self.runs: dict[str, list[dict[str, Any]]] = {}
        self.unavailable: dict[str, str] = {}  # "<shape>_pgsync": why PGSync has no figure
        self.pgsync_shim = True
        self.postmaster = measure.postmaster_pid(harness.pg_url)
        self.rows_now = self.args.joined_rows
        for shape in joined_shapes.SHAPES:
            for with_relations, kind in ((True, "pipeline"), (False, "root")):
                self.config(shape, kind).write_text(joined_shapes.spec_yaml(shape, with_relations))

    def config(self, shape: str, kind: str):
        return self.dir / f"{shape}-{kind}.yaml"

    def bulk_file(self, shape: str):
        return self.dir / f"{shape}-ceiling.ndjson"

    # --- the section ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        log, rows = self.h.log, self.args.joined_rows
        report: dict[str, Any] = {"rows": rows, "shapes": {}}
        log(f"joined: seeding {rows:,} roots per shape into schema {joined_shapes.SCHEMA}")
        report["seed"] = joined_shapes.seed(self.h.pg_url, rows)
        log(f"  {report['seed']}")
        for shape in joined_shapes.SHAPES:
            log(f"joined: preparing {shape}'s pre-serialised documents (untimed)")
            prep = self.h.scenario(
                "prepare-ceiling",
                "--config",
                str(self.config(shape, "pipeline")),
                "--out",
                str(self.bulk_file(shape)),
                rows=rows,
            )
            report["shapes"][shape] = {
                "ceiling_documents": {k: prep[k] for k in ("docs", "bytes", "seconds")}
            }
        report["pgsync"] = self._setup_pgsync(rows)
        rotation = [(shape, m) for shape in joined_shapes.SHAPES for m in MEASUREMENTS]
        for rep in range(self.args.repeat):
            order = rotation[rep % len(rotation) :] + rotation[: rep % len(rotation)]
            log(f"joined repetition {rep + 1}/{self.args.repeat}")
            for shape, what in order:
                if what == "pgsync" and f"{shape}_pgsync" in self.unavailable:
                    continue  # PGSync failed on this shape once: its reason stands, no 1M-row retries
                self._measure(shape, what)
        for shape in joined_shapes.SHAPES:
            report["shapes"][shape].update(self.figures(shape))
        report["scale"] = self._scale(report)
        report["unavailable"] = self.unavailable
        report["runs"] = self.runs
        return report

    def _setup_pgsync(self, rows: int) -> dict[str, Any]:
        if not self.args.pgsync:
            for shape in joined_shapes.SHAPES:
                self.unavailable[f"{shape}_pgsync"] = "skipped (--no-pgsync)"
            return {"status": "skipped (--no-pgsync)"}
        info: dict[str, Any] = {}
        try:
            info["versions"] = pgsync_bench.pgsync_versions(pgsync_bench.ensure_venv())
            info["redis"] = pgsync_bench.ensure_redis()
            info["cluster"] = pgsync_bench.ensure_cluster()
            self.h.log("joined: seeding PGSync's cluster with the same rows")
            info["seed"] = joined_shapes.seed(pgsync_bench.pg_url(), rows)
            # the main section's finding (its GET / shim) holds here too; without it PGSync 7.3.0
            # cannot talk to this Elasticsearch at all
            self.pgsync_shim = self.h.pgsync.get("shim", True)
            info["shim"] = self.pgsync_shim
            for shape in joined_shapes.SHAPES:
                schema = joined_shapes.pgsync_schema(shape, pgsync_bench.DATABASE)
                (self.dir / f"pgsync-{shape}.json").write_text(json.dumps(schema, indent=2))
            info["status"] = "set up"
        except Exception as exc:
            info["status"] = "could not be set up"
            info["error"] = f"{type(exc).__name__}: {exc}"[-1500:]
            for shape in joined_shapes.SHAPES:
                self.unavailable[f"{shape}_pgsync"] = f"PGSync could not be set up: {info['error']}"
        return info

    # --- one measurement ------------------------------------------------------------------------

    def _measure(self, shape: str, what: str, rows: int | None = None) -> dict[str, Any] | None:
        rows = rows or self.args.joined_rows
        name = f"{shape}_{what}"
        noise = self._noise()
        try:
            if what == "pgsync":
                result = self._pgsync(shape)
                if result is None:
                    return None
            else:
                result = self._scenario(shape, what, rows)
        except Exception as exc:
            self.h.log(f"  joined {name} FAILED: {exc}")
            result = {"failed": True, "error": str(exc)[-2000:]}
            self.runs.setdefault(name, []).append(result)
            return result
        docs = result.get("docs") or 0
        result["noise"] = noise
        result["complete"] = result.get("docs_in_es") == rows
        if not result["complete"]:
            self.h.log(f"  WARNING joined {name}: {result.get('docs_in_es')} documents, expected {rows}")
        result["docs_per_s"] = round(docs / result["seconds"], 1) if result.get("seconds") else 0.0
        for key in ("cpu_s", "pg_cpu_s", "process_cpu_s"):
            if docs and isinstance(result.get(key), int | float):
                result[f"{key}_per_million_docs"] = round(result[key] / docs * 1e6, 2)
        self.runs.setdefault(name, []).append(result)
        self.h.log(
            f"  joined {name}: {docs:,} docs in {result['seconds']:.1f}s = "
            f"{result['docs_per_s']:,.0f} docs/s, PostgreSQL {result.get('pg_cpu_s', 0):.1f} CPU-s, "
            f"peak RSS {result.get('peak_rss_mb', 0):.0f} MB"
        )
        return result

    def _noise(self) -> dict[str, float]:
        """How busy the machine and the shared cluster were just before a measurement: the load
        average and the cluster's CPU-s per second over one second (other clients, background
        workers), which postgres_cpu_seconds cannot tell from ours."""
        before = measure.postgres_cpu_seconds(self.postmaster)
        time.sleep(1.0)
        return {
            "loadavg_1m_before": round(os.getloadavg()[0], 2),
            "pg_cpu_per_s_before": round(measure.postgres_cpu_seconds(self.postmaster) - before, 2),
        }

    def _scenario(self, shape: str, what: str, rows: int) -> dict[str, Any]:
        if what == "ceiling":
            extra = [
                "--config",
                str(self.config(shape, "pipeline")),
                "--bulk-file",
                str(self.bulk_file(shape)),
                "--index",
                joined_shapes.index_name(shape, "ceiling"),
            ]
            scenario = "joined-ceiling"
        else:
            extra, scenario = self.h.pipeline_args(self.config(shape, what)), "pipeline"
        before = measure.postgres_cpu_seconds(self.postmaster)
        result = self.h.scenario(scenario, *extra, rows=rows)
        result["pg_cpu_s"] = round(measure.postgres_cpu_seconds(self.postmaster) - before, 2)
        self.h.cleanup_dirs()
        # gone before the next measurement: a freshly loaded index keeps Elasticsearch merging
        common.drop_bench_indexes(self.h.es, f"{joined_shapes.index_name(shape, what)}*")
        return result

    def _pgsync(self, shape: str) -> dict[str, Any] | None:
        result = pgsync_bench.run_once(
            self.dir,
            self.h.es_url,
            shim=self.pgsync_shim,
            timeout=self.h.timeout(self.args.joined_rows * 5),
            schema_file=f"pgsync-{shape}.json",
            index=joined_shapes.index_name(shape, "pgsync"),
        )
        common.drop_bench_indexes(self.h.es, f"{joined_shapes.index_name(shape, 'pgsync')}*")
        if not result.get("ok"):
            # PGSync cannot build this shape (or failed): its reason, never a figure
            why = f"PGSync failed at {result.get('stage')}: {result.get('error')}"
            self.unavailable[f"{shape}_pgsync"] = why
            self.runs.setdefault(f"{shape}_pgsync", []).append({"failed": True, "error": why})
            self.h.log(f"  joined {shape}_pgsync: {why}")
            return None
        result["docs"] = result.get("docs_in_es") or 0
        return result

    # --- figures --------------------------------------------------------------------------------

    def medians(self, name: str) -> dict[str, Any] | None:
        """Medians of the complete runs of a measurement, with the docs/s spread; None without one."""
        good = [r for r in self.runs.get(name, []) if not r.get("failed") and r.get("complete")]
        if not good:
            return None
        rates = [r["docs_per_s"] for r in good]
        out: dict[str, Any] = {
            "docs_per_s": round(statistics.median(rates), 1),
            "docs_per_s_spread": [min(rates), max(rates)],
            "seconds": round(statistics.median(r["seconds"] for r in good), 3),
            "peak_rss_mb": round(max(r.get("peak_rss_mb", 0) for r in good), 1),
            "runs": len(good),
            "failed_runs": len(self.runs[name]) - len(good),
        }
        for key in ("cpu_s_per_million_docs", "pg_cpu_s_per_million_docs", "process_cpu_s_per_million_docs"):
            values = [r[key] for r in good if isinstance(r.get(key), int | float)]
            if values:
                out[key] = round(statistics.median(values), 2)
                out[f"{key}_spread"] = [min(values), max(values)]
        return out

    def figures(self, shape: str) -> dict[str, Any]:
        m = {what: self.medians(f"{shape}_{what}") for what in MEASUREMENTS}
        pipe, ceiling, root, pgsync = (m[w] or {} for w in MEASUREMENTS)

        def ratio(a: Any, b: Any) -> float | None:
            return round(a / b, 3) if isinstance(a, int | float) and b else None

        rate = pipe.get("docs_per_s")
        out: dict[str, Any] = {
            "medians": m,
            "docs_per_s": rate,
            "docs_per_s_spread": pipe.get("docs_per_s_spread"),
            "ceiling_docs_per_s": ceiling.get("docs_per_s"),
            "ratio_to_ceiling": ratio(rate, ceiling.get("docs_per_s")),
            "pgsync_docs_per_s": pgsync.get("docs_per_s"),
            "ratio_to_pgsync": ratio(rate, pgsync.get("docs_per_s")),
            "cpu_s_per_million_docs": pipe.get("cpu_s_per_million_docs"),
            "pg_cpu_s_per_million_docs": pipe.get("pg_cpu_s_per_million_docs"),
            "root_pg_cpu_s_per_million_docs": root.get("pg_cpu_s_per_million_docs"),
            "pg_cpu_ratio_to_root": ratio(
                pipe.get("pg_cpu_s_per_million_docs"), root.get("pg_cpu_s_per_million_docs")
            ),
            "pgsync_pg_cpu_s_per_million_docs": pgsync.get("pg_cpu_s_per_million_docs"),
            "peak_rss_mb": pipe.get("peak_rss_mb"),
        }
        if m["pgsync"] is None:
            out["pgsync_unavailable"] = self.unavailable.get(f"{shape}_pgsync", "no complete PGSync run")
        return out

    def _scale(self, report: dict[str, Any]) -> list[dict[str, Any]]:
        """Peak RSS and docs/s of the joined sync per size: the main run's at --joined-rows, one
        pipeline run per shape at every other size (re-seeded)."""
        points: list[dict[str, Any]] = []
        for rows in sorted(set(self.args.joined_scale) | {self.args.joined_rows}):
            if rows == self.args.joined_rows:
                for shape, figures in report["shapes"].items():
                    pipe = figures["medians"].get("pipeline") or {}
                    points.append(
                        {
                            "shape": shape,
                            "rows": rows,
                            "peak_rss_mb": pipe.get("peak_rss_mb"),
                            "docs_per_s": pipe.get("docs_per_s"),
                            "pg_cpu_s_per_million_docs": pipe.get("pg_cpu_s_per_million_docs"),
                            "source": f"main run (median of {pipe.get('runs', 0)})",
                        }
                    )
                continue
            self.h.log(f"joined scale: seeding {rows:,} roots per shape")
            seeded = joined_shapes.seed(self.h.pg_url, rows)
            for shape in joined_shapes.SHAPES:
                result = self._measure(shape, "pipeline", rows=rows) or {}
                self.runs[f"{shape}_pipeline"].pop()  # a scale point, not a repetition
                points.append(
                    {
                        "shape": shape,
                        "rows": rows,
                        "peak_rss_mb": result.get("peak_rss_mb"),
                        "docs_per_s": result.get("docs_per_s"),
                        "pg_cpu_s_per_million_docs": result.get("pg_cpu_s_per_million_docs"),
                        "complete": result.get("complete"),
                        "error": result.get("error"),
                        "seed_seconds": seeded["seed_seconds"].get(shape),
                        "source": "one run",
                    }
                )
        return points


def run(harness: Any) -> dict[str, Any]:
    """The section's report (bench/run.py stores it as report["joined"])."""
    try:
        return JoinedSection(harness).run()
    except Exception as exc:
        import traceback

        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"[-2000:], "shapes": {}}
