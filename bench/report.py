"""Markdown tables from a result file, for docs/benchmarks.md: `python -m bench.report FILE...`.

With several files (e.g. the main run and a prototype pass at the same --rows),
the scenarios of later files are added to the first one's table, with ratios
computed against the first file's ceiling and baseline.
"""

from __future__ import annotations

import json
import sys

from bench.run import LABELS


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
            full_sync = name != "incremental"
            rc = m["docs_per_s"] / ceiling if full_sync and ceiling else None
            rb = m["docs_per_s"] / baseline if full_sync and baseline else None
            rates = [r["docs_per_s"] for r in report["scenarios"][name]["runs"] if not r.get("failed")]
            spread = f"{min(rates):,.0f}–{max(rates):,.0f}" if len(rates) > 1 else "–"
            print(
                f"| {LABELS.get(name, name)} | {_fmt(m.get('docs'))} | {_fmt(m['seconds'], 1)} | "
                f"{_fmt(m['docs_per_s'])} | {spread} | {_fmt(rc, 2)} | {_fmt(rb, 2)} | "
                f"{_fmt(m['peak_rss_mb'])} ({_fmt(m['max_peak_rss_mb'])}) | {m['runs']} |"
            )
    if first.get("scale"):
        print("\n| rows | docs/s | wall s | peak RSS MB | source |")
        print("| ---: | ---: | ---: | ---: | --- |")
        for s in first["scale"]:
            print(
                f"| {_fmt(s['rows'])} | {_fmt(s.get('docs_per_s'))} | {_fmt(s.get('seconds'), 1)} | "
                f"{_fmt(s.get('peak_rss_mb'))} | {s.get('source', '')} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
