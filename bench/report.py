"""Markdown tables from a result file, for docs/benchmarks.md: `python -m bench.report FILE...`.

With several files (e.g. the main run and a prototype pass at the same --rows),
the scenarios of later files are added to the first one's table, with ratios
computed against the first file's ceiling and baseline.
"""

from __future__ import annotations

import json
import sys

from bench.summary import DRAINS, LABELS


def _fmt(value, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    reports = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            reports.append(json.load(handle))
    first = reports[0]
    ceiling, baseline = first["ceiling_docs_per_s"], first["baseline_docs_per_s"]
    print(f"rows = {first['rows']:,}, medians of {first['repeat']} runs\n")
    columns = ["scenario", "docs", "wall s", "docs/s", "range docs/s", "× ceiling", "× baseline"]
    print("| " + " | ".join([*columns, "peak RSS MB (max)", "runs"]) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    seen = set()
    for report in reports:
        for name, m in report["medians"].items():
            if name in seen or name.startswith("scale_") or m.get("failed"):
                continue
            seen.add(name)
            full_sync = name not in DRAINS
            size = "_small" if name.endswith("_small") else ""
            base_c = report.get("ceiling_small_docs_per_s") if size else ceiling
            base_b = None if size else baseline
            rc = m["docs_per_s"] / base_c if full_sync and base_c else None
            rb = m["docs_per_s"] / base_b if full_sync and base_b else None
            rates = [r["docs_per_s"] for r in report["scenarios"][name]["runs"] if not r.get("failed")]
            spread = f"{min(rates):,.0f}–{max(rates):,.0f}" if len(rates) > 1 else "–"
            print(
                f"| {LABELS.get(name, name)} | {_fmt(m.get('docs'))} | {_fmt(m['seconds'], 1)} | "
                f"{_fmt(m['docs_per_s'])} | {spread} | {_fmt(rc, 2)} | {_fmt(rb, 2)} | "
                f"{_fmt(m['peak_rss_mb'])} ({_fmt(m['max_peak_rss_mb'])}) | {m['runs']} |"
            )
    if first.get("scale"):
        print("\n| rows | docs/s | wall s | peak RSS MB | CPU-s / M docs | source |")
        print("| ---: | ---: | ---: | ---: | ---: | --- |")
        for s in first["scale"]:
            print(
                f"| {_fmt(s['rows'])} | {_fmt(s.get('docs_per_s'))} | {_fmt(s.get('seconds'), 1)} | "
                f"{_fmt(s.get('peak_rss_mb'))} | {_fmt(s.get('cpu_s_per_million_docs'), 1)} | "
                f"{s.get('source', '')} |"
            )
    issue16(first)
    return 0


def _met(target: dict | None) -> str:
    if not target:
        return "–"
    if target.get("met"):
        return "yes"
    return f"**no** ({target['note']})" if target.get("note") else "**no**"


def issue16(report: dict) -> None:
    """The side-by-side table of docs/benchmarks.md (issue 16), then pgbench and freshness."""
    t = report.get("targets") or {}
    drains = report.get("drain_docs_per_s") or {}
    ratio = report.get("drain_ratio_to_full_sync") or {}
    tps = report.get("pgbench_tps_ratio") or {}
    fresh = report.get("freshness") or {}
    soak = report.get("soak") or {}
    rows = [
        (
            "full sync ÷ ceiling, ~1 KB",
            _fmt(report.get("ratio_to_ceiling"), 2),
            "≥ 0.85",
            t.get("full_sync_vs_ceiling"),
        ),
        (
            "full sync ÷ ceiling, ~250 B",
            _fmt(report.get("ratio_to_ceiling_small"), 2),
            "≥ 0.75",
            t.get("full_sync_vs_ceiling_small"),
        ),
        (
            "CPU-s / M docs, ~1 KB",
            _fmt(report.get("cpu_s_per_million_docs"), 1),
            "≤ 20",
            t.get("cpu_s_per_million_docs"),
        ),
        (
            "CPU-s / M docs, ~250 B",
            _fmt(report.get("cpu_s_per_million_docs_small"), 1),
            "≤ 10",
            t.get("cpu_s_per_million_docs_small"),
        ),
    ]
    for mode in ("triggers", "logical"):
        rows.append(
            (
                f"drain changes/s ({mode}), × full sync",
                f"{_fmt(drains.get(mode))} ({_fmt(ratio.get(mode), 2)}×)",
                "≥ 0.5×",
                t.get(f"drain_vs_full_sync_{mode}"),
            )
        )
    for mode in ("triggers", "logical"):
        f = fresh.get(mode) or {}
        rows.append(
            (
                f"freshness p95 / p99 s ({mode}, {f.get('changes') or 0} changes)",
                f"{_fmt(f.get('p95_s'), 2)} / {_fmt(f.get('p99_s'), 2)}",
                "≤ 1 / ≤ 2",
                t.get(f"freshness_p95_{mode}"),
            )
        )
    rows.append(
        (
            "pgbench TPS ratio, logical / triggers",
            f"{_fmt(tps.get('logical'), 2)} / {_fmt(tps.get('trigger'), 2)}",
            "logical ≥ 0.95",
            t.get("pgbench_tps_ratio_logical"),
        )
    )
    peak = t.get("peak_rss") or {}
    rows.append(
        (
            "peak RSS max MB (max/min over scale)",
            f"{_fmt(peak.get('measured_max_mb'))} ({_fmt(peak.get('scale_max_over_min'), 2)})",
            "≤ 300, ≤ 1.10",
            peak,
        )
    )
    if soak:
        rows.append(
            (
                f"soak {soak.get('minutes')} min: verify drift",
                f"{soak.get('drift')}",
                "0",
                t.get("soak_drift"),
            )
        )
        rows.append(
            (
                f"soak {soak.get('minutes')} min: freshness p95 s",
                _fmt((soak.get("freshness") or {}).get("p95_s"), 2),
                "≤ 1",
                t.get("soak_freshness_p95"),
            )
        )
    print("\n| figure | measured | target | met? |")
    print("| --- | ---: | --- | --- |")
    for name, value, target, met in rows:
        print(f"| {name} | {value} | {target} | {_met(met)} |")
    modes = (report.get("pgbench") or {}).get("modes") or {}
    if modes:
        print("\n| pgbench mode | TPS | latency avg / p95 / p99 ms | bulk UPDATE s | bulk INSERT s |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for mode, m in modes.items():
            if m.get("error"):
                print(f"| {mode} | {m['error']} | | | |")
                continue
            print(
                f"| {mode} | {_fmt(m.get('tps'))} | {_fmt(m.get('latency_avg_ms'), 3)} / "
                f"{_fmt(m.get('latency_p95_ms'), 3)} / {_fmt(m.get('latency_p99_ms'), 3)} | "
                f"{_fmt(m.get('bulk_update_s'), 2)} | {_fmt(m.get('bulk_insert_s'), 2)} |"
            )
    if fresh:
        columns = (
            "capture | changes | p50 s | p95 s | p99 s | max s | steady p95 | burst p95 | cold s | drain runs"
        )
        print(f"\n| {columns} |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for mode, f in fresh.items():
            if f.get("p95_s") is None:
                print(f"| {mode} | {f.get('status')} | | | | | | | | |")
                continue
            print(
                f"| {mode} | {f.get('changes')} | {_fmt(f.get('p50_s'), 2)} | {_fmt(f.get('p95_s'), 2)} | "
                f"{_fmt(f.get('p99_s'), 2)} | {_fmt(f.get('max_s'), 2)} | "
                f"{_fmt((f.get('steady') or {}).get('p95_s'), 2)} | "
                f"{_fmt((f.get('burst') or {}).get('p95_s'), 2)} | {_fmt(f.get('cold_first_change_s'), 1)} | "
                f"{f.get('drain_runs')} |"
            )


if __name__ == "__main__":
    sys.exit(main())
