"""What a bench run reports: medians of the repetitions, the issue's figures and targets, the table.

bench/run.py measures; this turns its runs into the JSON's top-level figures and `targets`
(bench/check.py and bench/report.py read them back).
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from bench.joined_report import print_table as joined_print_table
from bench.joined_report import targets as joined_targets

CAPTURE_MODES = ["triggers", "logical"]
LABELS = {
    "ceiling": "ceiling (pre-serialised bulk, parallel)",
    "naive": "naive baseline (article)",
    "pipeline": "pipeline full sync (in-process)",
    "pipeline_pandas_identity": "pipeline full sync, identity pandas transform",
    "pipeline_pandas_realistic": "pipeline full sync, pandas transform (normalise + 2 computed)",
    "cli": "pipeline full sync (CLI subprocess)",
    "ceiling_small": "ceiling, small documents",
    "pipeline_small": "pipeline full sync, small documents (in-process)",
    "cli_small": "pipeline full sync, small documents (CLI subprocess)",
    "naive_small": "naive baseline, small documents",
    "incremental": "incremental drain through a Dagster run (triggers)",
    "drain_triggers": "drain, triggers (1% upd + 0.1% del, ops.drain)",
    "drain_logical": "drain, logical (1% upd + 0.1% del, ops.drain)",
    "pgsync": "PGSync initial sync",
    "pipeline_hash": "pipeline full sync, reconcile: hash",
}
# a measurement whose docs/s is a drain's changes/s, not a full sync's
DRAINS = ("incremental", "drain_triggers", "drain_logical")


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    return round(statistics.median(values), 2) if values else None


def summarise(
    report: dict[str, Any],
    by_scenario: dict[str, list[dict[str, Any]]],
    args: argparse.Namespace,
    small_rows: int,
    unavailable: dict[str, str],
    pgsync: dict[str, Any],
) -> dict[str, Any]:
    """The medians of the runs `by_scenario`, the ratios, the issue's figures and targets, into `report`."""
    medians: dict[str, dict[str, Any]] = {}
    for name, runs in by_scenario.items():
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
            "cpu_s_per_million_docs": median_of(good, "cpu_s_per_million_docs"),
            "process_cpu_s_per_million_docs": median_of(good, "process_cpu_s_per_million_docs"),
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
    identity = medians.get("pipeline_pandas_identity", {})
    realistic = medians.get("pipeline_pandas_realistic", {})
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
            "rows": args.rows,
            "small_rows": small_rows,
            "repeat": args.repeat,
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
            # issue 27: the same documents by the CLI's wall clock, and what any CLI run costs
            "ratio_to_ceiling_small_cli": medians.get("cli_small", {}).get("ratio_to_ceiling"),
            "cli_fixed_cost_s": (report.get("cli_fixed_cost") or {}).get("median_s"),
            "cli_fixed_cost_s_postgres_storage": (
                (report.get("cli_fixed_cost") or {}).get("postgres_storage") or {}
            ).get("median_s"),
            "cpu_s_per_million_docs": pipeline.get("cpu_s_per_million_docs"),
            "cpu_s_per_million_docs_small": small.get("cpu_s_per_million_docs"),
            "cpu_s_per_million_docs_process": pipeline.get("process_cpu_s_per_million_docs"),
            "cpu_s_per_million_docs_small_process": small.get("process_cpu_s_per_million_docs"),
            "cpu_s_per_million_docs_cli": medians.get("cli", {}).get("process_cpu_s_per_million_docs"),
            # changes/s of a drain of 1% updates + 0.1% deletes, per capture mode (null: not
            # measured, `unavailable` says why), and its ratio to the same table's full sync
            # the transform path (issue 26): docs/s against the Arrow path's, CPU it adds per 1M docs
            "transform": _transform_figures(pipeline, identity, realistic),
            "drain_docs_per_s": drains,
            "drain_ratio_to_full_sync": drain_ratio,
            "drain_ratio_to_full_sync_min": min((v for v in drain_ratio.values() if v), default=None),
            "pgbench_tps_ratio": report.get("pgbench", {}).get("tps_ratio", {}),
            "unavailable": unavailable,
            "peak_rss_mb": pipeline.get("max_peak_rss_mb"),
            "ceiling_config": {
                "threads": args.ceiling_threads,
                "body_mb": args.ceiling_body_mb,
            },
            "pgsync": pgsync,
            "medians": medians,
            "scenarios": {
                name: {"label": LABELS.get(name, name), "runs": runs} for name, runs in by_scenario.items()
            },
        }
    )
    report["targets"] = targets(report)
    return report


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
    at_least("full_sync_vs_ceiling_small_cli", 0.75, report.get("ratio_to_ceiling_small_cli"),
             "CLI full sync (wall clock) ÷ ceiling, ~250 B docs")  # fmt: skip
    fixed = report.get("cli_fixed_cost_s")
    out["cli_fixed_cost"] = _target("< 2.0 s", fixed, isinstance(fixed, int | float) and fixed < 2.0,
                                    what="wall s of a CLI full sync of one row (median)")  # fmt: skip
    at_most("cpu_s_per_million_docs", 20, report.get("cpu_s_per_million_docs"),
            "CPU-s of the sync per million ~1 KB docs")  # fmt: skip
    at_most("cpu_s_per_million_docs_small", 10, report.get("cpu_s_per_million_docs_small"),
            "CPU-s of the sync per million ~250 B docs")  # fmt: skip
    for capture, ratio in (report.get("drain_ratio_to_full_sync") or {}).items():
        label = f"drain changes/s ÷ full-sync docs/s ({capture})"
        bar = 0.6 if capture == "logical" else 0.5  # issue 27: logical drain ≥ 0.6× full sync
        at_least(f"drain_vs_full_sync_{capture}", bar, ratio, label, note=unavailable.get(f"drain_{capture}"))
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
    transform = report.get("transform") or {}
    if transform.get("identity_ratio_to_arrow") is not None:  # issue 26: the transform path's cost
        at_least("transform_identity_vs_arrow", 0.7, transform["identity_ratio_to_arrow"],
                 "full sync docs/s, identity pandas transform ÷ Arrow path")  # fmt: skip
        at_most("transform_identity_added_cpu", 10, transform.get("identity_added_cpu_s_per_million_docs"),
                "CPU-s per million ~1 KB docs the identity transform adds")  # fmt: skip
    fanout = report.get("fanout")
    if fanout is not None:  # issue 27: a rename reaching every product of a category (bench/fanout.py)
        label = "fan-out drain docs/s ÷ full-sync docs/s of the same documents"
        at_least("fanout_vs_full_sync", 0.5, fanout.get("x_full_sync"), label, fanout.get("error"))
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
    out.update(joined_targets(report))  # issue 27's joined documents (bench/joined.py)
    soak = report.get("soak")
    if soak:
        drift = soak.get("drift")
        out["soak_drift"] = _target("verify drift = 0 after the soak", drift, drift == 0)
        fresh_soak = soak.get("freshness") or {}
        out["soak_freshness_p95"] = _target("<= 1.0 s over the whole soak", fresh_soak.get("p95_s"),
                                            (fresh_soak.get("p95_s") or 1e9) <= 1.0)  # fmt: skip
        # issue 27: commit → searchable p95 ≤ 1 s at 200 TPS with logical capture
        if soak.get("capture") == "logical":
            at_most("soak_freshness_p95_logical", 1.0, fresh_soak.get("p95_s"),
                    f"commit → searchable p95 s at {soak.get('rate_tps'):g} TPS (logical), soak",
                    soak.get("status"))  # fmt: skip
            if (soak.get("rate_tps") or 0) < 200:
                out["soak_freshness_p95_logical"]["met"] = False
                out["soak_freshness_p95_logical"]["note"] = "the issue's bar is at 200 TPS (--soak-rate)"
    return out


def _transform_figures(
    arrow: dict[str, Any], identity: dict[str, Any], realistic: dict[str, Any]
) -> dict[str, Any]:
    def ratio(m: dict[str, Any]) -> float | None:
        rate, base = m.get("docs_per_s"), arrow.get("docs_per_s")
        return round(rate / base, 3) if rate and base and not m.get("failed") else None

    def added_cpu(m: dict[str, Any]) -> float | None:
        cpu, base = m.get("cpu_s_per_million_docs"), arrow.get("cpu_s_per_million_docs")
        return round(cpu - base, 2) if cpu is not None and base is not None else None

    return {
        "identity_ratio_to_arrow": ratio(identity),
        "realistic_ratio_to_arrow": ratio(realistic),
        "identity_added_cpu_s_per_million_docs": added_cpu(identity),
        "realistic_added_cpu_s_per_million_docs": added_cpu(realistic),
        "target": "identity >= 0.7x the Arrow path's docs/s, <= 10 CPU-s added per 1M ~1 KB docs",
    }


def print_table(report: dict[str, Any]) -> None:
    from sync_pipeline.apps.cli.output import format_table

    order = ["ceiling", "naive", "pipeline", "pipeline_pandas_identity", "pipeline_pandas_realistic",
             "cli", "incremental", "drain_triggers", "drain_logical",
             "ceiling_small", "naive_small", "pipeline_small", "cli_small", "pgsync", "pipeline_hash",
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
    if report.get("joined"):
        joined_print_table(report["joined"])
    print("\ntargets:")
    for name, t in report["targets"].items():
        shown = {k: v for k, v in t.items() if k not in ("target", "what")}
        print(f"  {name:<30} target {t['target']:<32} {json.dumps(shown)}")
