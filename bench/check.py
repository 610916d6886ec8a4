"""Check that a benchmark result file carries every figure issue 16 asks for, with sane values:
`python -m bench.check FILE [--min-freshness-changes N] [--require-logical] [--require-soak]`.

Exit 0 when the JSON parses and has, side by side: the full-sync ratios to the ceiling for
the ~1 KB and the ~250 B table, CPU-seconds per million documents for both, drain changes/s
and its ratio to the full sync per capture mode, freshness p50/p95/p99 per capture mode,
pgbench TPS ratios, the scale curve with peak RSS, the fan-out drain (a rename reaching every
product of a category: docs/s, × the full sync, peak RSS, every document renamed), and the
targets (each with measured and met). A capture mode this build lacks must be reported as
unavailable (a reason, never a figure); --require-logical fails the check instead. Exit 1 with
the problems listed otherwise. Used by `make bench-smoke` (and, with --min-freshness-changes 200,
for `make bench`).
"""

from __future__ import annotations

import argparse
import json
import sys
from numbers import Number

REQUIRED_NUMBERS = [
    "rows",
    "ceiling_docs_per_s",
    "baseline_docs_per_s",
    "pipeline_docs_per_s",
    "ratio_to_ceiling",
    "ratio_to_baseline",
    "peak_rss_mb",
    "ceiling_small_docs_per_s",
    "pipeline_small_docs_per_s",
    "ratio_to_ceiling_small",
    "cpu_s_per_million_docs",
    "cpu_s_per_million_docs_small",
    "ratio_to_ceiling_small_cli",
    "cli_fixed_cost_s",
]
# The sections a result must carry: each its key in the JSON and the figures it must hold, as dotted
# paths below that key to a positive number, or (path, why): the number, or else a reason (a string)
# at `why` for not measuring it. A section absent from the result fails the check.
REQUIRED_SECTIONS: dict[str, list[str | tuple[str, str]]] = {
    # issue 27's joined documents (bench/joined.py), per shape
    "joined": [
        f"shapes.{shape}.{key}" for shape in ("products", "orders") for key in (
            "docs_per_s", "ceiling_docs_per_s", "ratio_to_ceiling", "cpu_s_per_million_docs",
            "pg_cpu_s_per_million_docs", "root_pg_cpu_s_per_million_docs", "pg_cpu_ratio_to_root",
            "peak_rss_mb")
    ] + [
        (f"shapes.{shape}.{key}", f"shapes.{shape}.pgsync_unavailable")
        for shape in ("products", "orders") for key in ("pgsync_docs_per_s", "ratio_to_pgsync")
    ],
}  # fmt: skip
CAPTURE_MODES = ("triggers", "logical")
REQUIRED_TARGETS = [
    "full_sync_vs_ceiling",
    "full_sync_vs_ceiling_small",
    "full_sync_vs_ceiling_small_cli",
    "cli_fixed_cost",
    "cpu_s_per_million_docs",
    "cpu_s_per_million_docs_small",
    "drain_vs_full_sync_triggers",
    "drain_vs_full_sync_logical",
    "freshness_p95_triggers",
    "freshness_p99_triggers",
    "freshness_p95_logical",
    "freshness_p99_logical",
    "pgbench_tps_ratio_logical",
    "pgbench_tps_ratio_trigger",
    "peak_rss",
    "fanout_vs_full_sync",
    *(f"joined_{name}_{shape}" for shape in ("products", "orders")
      for name in ("vs_ceiling", "vs_pgsync", "pg_cpu_vs_root", "peak_rss")),
]  # fmt: skip


def _positive(value) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool) and value > 0


def _unavailable_reason(report: dict, mode: str, where: str) -> str | None:
    """Why `mode` has no figure in section `where`, if the report says it was unavailable."""
    texts = [
        (report.get("unavailable") or {}).get(f"drain_{mode}"),
        ((report.get("pgbench") or {}).get("errors") or {}).get(mode),
        ((report.get("freshness") or {}).get(mode) or {}).get("status"),
        report.get("logical_capture") if mode == "logical" else None,
    ]
    for text in texts:
        if isinstance(text, str) and "not available in this build" in text:
            return text
    return None


def _at(tree: object, path: str) -> object:
    for key in path.split("."):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def section_problems(report: dict) -> list[str]:
    """Every REQUIRED_SECTIONS section present, with its figures (or the reason one is missing)."""
    found = []
    for section, figures in REQUIRED_SECTIONS.items():
        body = report.get(section)
        if not isinstance(body, dict):
            found.append(f"{section}: section missing from the result")
            continue
        if body.get("error"):
            found.append(f"{section}: the section failed: {body['error']}")
        for figure in figures:
            path, why = figure if isinstance(figure, tuple) else (figure, None)
            value = _at(body, path)
            if _positive(value):
                continue
            reason = _at(body, why) if why else None
            if value is None and isinstance(reason, str) and reason:
                continue  # not measured, and the result says why: allowed
            alternative = f" (or a reason at {why})" if why else ""
            found.append(f"{section}.{path}: expected a positive number{alternative}, got {value!r}")
    return found


def problems(report: dict, min_freshness_changes: int = 20, require_logical: bool = False,
             require_soak: bool = False) -> list[str]:  # fmt: skip
    found = section_problems(report)
    for key in REQUIRED_NUMBERS:
        value = report.get(key)
        if not _positive(value):
            found.append(f"{key}: expected a positive number, got {value!r}")
    for key in ("ratio_to_ceiling", "ratio_to_ceiling_small", "ratio_to_ceiling_small_cli"):
        value = report.get(key)
        if _positive(value) and value > 1.5:
            found.append(f"{key}: {value} is not a sane ratio to the ceiling (> 1.5)")

    def mode_ok(mode: str, value, section: str, sane=_positive) -> None:
        if sane(value):
            return
        reason = _unavailable_reason(report, mode, section)
        if value is None and reason and not (require_logical and mode == "logical"):
            return  # reported as unavailable, with the reason: allowed
        found.append(f"{section}.{mode}: expected a figure (or 'not available in this build'), got {value!r}")

    drains = report.get("drain_docs_per_s")
    ratios = report.get("drain_ratio_to_full_sync")
    if not isinstance(drains, dict) or not isinstance(ratios, dict):
        found.append("drain_docs_per_s / drain_ratio_to_full_sync: expected objects by capture mode")
    else:
        for mode in CAPTURE_MODES:
            mode_ok(mode, drains.get(mode), "drain_docs_per_s")
            mode_ok(mode, ratios.get(mode), "drain_ratio_to_full_sync")
    for name, runs in (report.get("scenarios") or {}).items():
        if name.startswith("drain_") and not any(r.get("ok") for r in runs.get("runs", [])):
            found.append(f"scenarios.{name}: no run checked out (counts, the updated value, nothing left)")

    fresh = report.get("freshness")
    if not isinstance(fresh, dict):
        found.append("freshness: expected an object by capture mode (run with --freshness)")
    else:
        for mode in CAPTURE_MODES:
            entry = fresh.get(mode)
            if not isinstance(entry, dict):
                found.append(f"freshness.{mode}: missing")
                continue
            for key in ("p50_s", "p95_s", "p99_s"):
                mode_ok(mode, entry.get(key), f"freshness.{key}")
            if entry.get("p95_s") is not None:
                if (entry.get("changes") or 0) < min_freshness_changes:
                    found.append(
                        f"freshness.{mode}: {entry.get('changes')} changes, need ≥ {min_freshness_changes}"
                    )
                if not entry.get("p50_s", 0) <= entry["p95_s"] <= entry.get("p99_s", 0):
                    found.append(f"freshness.{mode}: percentiles out of order")
                if entry.get("timed_out"):
                    found.append(f"freshness.{mode}: {entry['timed_out']} changes never became searchable")
                if entry.get("drain_runs") is not None and not entry.get("drain_runs"):
                    found.append(f"freshness.{mode}: no drain run recorded by Dagster")

    tps_ratio = report.get("pgbench_tps_ratio")
    if not isinstance(tps_ratio, dict):
        found.append("pgbench_tps_ratio: expected an object {trigger, logical}")
    else:
        for key, mode in (("trigger", "triggers"), ("logical", "logical")):
            value = tps_ratio.get(key)
            mode_ok(mode, value, "pgbench_tps_ratio", sane=lambda v: _positive(v) and v < 3)
        base = ((report.get("pgbench") or {}).get("modes") or {}).get("none") or {}
        if not _positive(base.get("tps")) or not _positive(base.get("latency_avg_ms")):
            found.append("pgbench.modes.none: expected tps and latency_avg_ms")

    if not isinstance(report.get("scale"), list):
        found.append("scale: expected a list")
    else:
        for entry in report["scale"]:
            if not {"rows", "docs_per_s", "peak_rss_mb"} <= set(entry):
                found.append(f"scale entry lacks rows/docs_per_s/peak_rss_mb: {entry}")
    machine = report.get("machine")
    # "search_server" since the search-target port; "elasticsearch" in earlier results
    if not isinstance(machine, dict) or not (
        {"nproc", "postgresql"} <= set(machine) and {"search_server", "elasticsearch"} & set(machine)
    ):
        found.append("machine: expected nproc, search_server, postgresql")
    transform = report.get("transform") or {}
    for key in ("identity_ratio_to_arrow", "realistic_ratio_to_arrow"):
        if not _positive(transform.get(key)):
            found.append(f"transform.{key}: expected a positive number (the pandas transform section)")
    for name in ("ceiling", "naive", "pipeline", "ceiling_small", "pipeline_small"):
        runs = report.get("scenarios", {}).get(name, {}).get("runs", [])
        if not any(not r.get("failed") and r.get("complete") for r in runs):
            found.append(f"scenarios.{name}: no complete successful run")
    targets = report.get("targets")
    if not isinstance(targets, dict):
        found.append("targets: expected an object")
    else:
        for name in REQUIRED_TARGETS:
            target = targets.get(name)
            if not isinstance(target, dict) or not isinstance(target.get("met"), bool):
                found.append(f"targets.{name}: expected an object with a boolean 'met'")
    found += _ranges_problems(report.get("ranges"))
    found += _fanout_problems(report.get("fanout"))
    if not isinstance(report.get("pgsync"), dict) or "status" not in report["pgsync"]:
        found.append("pgsync: expected an object with a status")
    if require_soak:
        soak = report.get("soak")
        if not isinstance(soak, dict) or soak.get("drift") is None:
            found.append("soak: expected a soak with a verify drift (run with --soak MINUTES)")
        else:
            if soak["drift"] != 0:
                found.append(f"soak: drift {soak['drift']} after the soak")
            if not _positive((soak.get("freshness") or {}).get("p95_s")):
                found.append("soak.freshness.p95_s: expected a number")
    return found


RANGES_NUMBERS = ("rows", "ranges", "seconds_before_kill", "resumed_seconds", "resumed_rows_read")


def _ranges_problems(section) -> list[str]:
    """The key-range section (bench/ranges.py): a window synced, killed halfway, resumed, verified."""
    if not isinstance(section, dict):
        return ["ranges: expected the key-range section (bench/ranges.py, --ranges-rows)"]
    found = [
        f"ranges.{key}: expected a positive number"
        for key in RANGES_NUMBERS
        if not _positive(section.get(key))
    ]
    if not isinstance(section.get("rows_reread"), int):
        found.append("ranges.rows_reread: expected a count")
    if section.get("drift") != 0:
        found.append(f"ranges.drift: expected 0 after the resumed run, got {section.get('drift')!r}")
    target = section.get("target")
    if not isinstance(target, dict) or not isinstance(target.get("met"), bool) or "measured" not in target:
        found.append("ranges.target: expected an object with 'measured' and a boolean 'met'")
    return found


def _fanout_problems(fanout) -> list[str]:
    """The fan-out drain section (bench/fanout.py, issue 27): measured, and every document renamed."""
    if not isinstance(fanout, dict) or fanout.get("error"):
        why = fanout.get("error") if isinstance(fanout, dict) else "missing"
        return [f"fanout: expected the fan-out drain section (--fanout-products N), got {str(why)[:300]}"]
    found = []
    figures = {
        "x_full_sync": fanout.get("x_full_sync"),
        "drain.docs_per_s": (fanout.get("drain") or {}).get("docs_per_s"),
        "drain.peak_rss_mb": (fanout.get("drain") or {}).get("peak_rss_mb"),
        "full_sync.docs_per_s": (fanout.get("full_sync") or {}).get("docs_per_s"),
    }
    for key, value in figures.items():
        if not _positive(value):
            found.append(f"fanout.{key}: expected a positive number, got {value!r}")
    if not fanout.get("complete"):
        found.append(
            f"fanout: {fanout.get('renamed_docs')} of {fanout.get('products')} documents carry the new name"
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.check", description=__doc__.splitlines()[0])
    parser.add_argument("result")
    parser.add_argument("--min-freshness-changes", type=int, default=20)
    parser.add_argument("--require-logical", action="store_true", help="logical figures must be measured")
    parser.add_argument("--require-soak", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        with open(args.result, encoding="utf-8") as handle:
            report = json.load(handle)
    except (OSError, ValueError) as exc:
        print(f"{args.result}: not readable JSON: {exc}", file=sys.stderr)
        return 1
    found = problems(report, args.min_freshness_changes, args.require_logical, args.require_soak)
    for problem in found:
        print(f"{args.result}: {problem}", file=sys.stderr)
    if not found:
        print(
            f"{args.result}: well-formed (rows={report['rows']}, "
            f"pipeline {report['pipeline_docs_per_s']} docs/s, "
            f"× ceiling {report['ratio_to_ceiling']} / small {report['ratio_to_ceiling_small']}, "
            f"logical: {report.get('logical_capture')})"
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
