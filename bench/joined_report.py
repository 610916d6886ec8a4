"""The joined-documents section's targets and printed table (bench/joined.py measures; bench/summary.py
lists these targets with the others and prints the table after its own)."""

from __future__ import annotations

from typing import Any

# --- targets (bench/summary.py lists them with the others) ------------------------------------------

PEAK_RSS_MB = 300


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """Issue 27's joined-documents targets per shape: measured, met, and measured ÷ target (`by`:
    above 1 beats a floor, below 1 beats a ceiling). A figure not measured is not met and says why."""
    section = report.get("joined")
    if not isinstance(section, dict):
        return {}
    out: dict[str, Any] = {}

    def target(name: str, what: str, bound: float, value: Any, floor: bool, note: str | None = None) -> None:
        number = isinstance(value, int | float)
        met = number and (value >= bound if floor else value <= bound)
        out[name] = {
            "target": f"{'>=' if floor else '<='} {bound}",
            "measured": value,
            "met": bool(met),
            "by": round(value / bound, 3) if number else None,
            "what": what,
        }
        if not number:
            out[name]["note"] = note or section.get("error") or "not measured"

    for shape, f in (section.get("shapes") or {}).items():
        target(
            f"joined_vs_ceiling_{shape}",
            f"joined {shape}: pipeline ÷ ceiling docs/s",
            0.8,
            f.get("ratio_to_ceiling"),
            True,
        )
        target(
            f"joined_vs_pgsync_{shape}",
            f"joined {shape}: pipeline ÷ PGSync docs/s",
            3.0,
            f.get("ratio_to_pgsync"),
            True,
            f.get("pgsync_unavailable"),
        )
        target(
            f"joined_pg_cpu_vs_root_{shape}",
            f"joined {shape}: PostgreSQL CPU-s per 1M documents ÷ reading the root table alone",
            2.0,
            f.get("pg_cpu_ratio_to_root"),
            False,
        )
        points = [p for p in section.get("scale") or [] if p.get("shape") == shape]
        peaks = {p["rows"]: p.get("peak_rss_mb") for p in points}
        measured = [v for v in peaks.values() if isinstance(v, int | float)]
        target(
            f"joined_peak_rss_{shape}",
            f"joined {shape}: sync peak RSS MB, max over sizes {sorted(peaks)}",
            PEAK_RSS_MB,
            max(measured) if measured else None,
            False,
        )
        out[f"joined_peak_rss_{shape}"]["by_rows"] = peaks
        if max(peaks, default=0) < 10_000_000:
            out[f"joined_peak_rss_{shape}"]["scale_note"] = (
                f"reached {max(peaks, default=0):,} roots, not 10,000,000 (--joined-scale)"
            )
    return out


def print_table(section: dict[str, Any]) -> None:
    from sync_pipeline.apps.cli.output import format_table

    if section.get("error"):
        print(f"\njoined documents: FAILED: {section['error']}")
        return
    keys = (
        "docs_per_s",
        "ratio_to_ceiling",
        "ratio_to_pgsync",
        "cpu_s_per_million_docs",
        "pg_cpu_s_per_million_docs",
        "root_pg_cpu_s_per_million_docs",
        "pg_cpu_ratio_to_root",
        "peak_rss_mb",
    )
    rows = [
        [shape, *("-" if f.get(k) is None else f[k] for k in keys)] for shape, f in section["shapes"].items()
    ]
    print(f"\njoined documents ({section['rows']:,} roots per shape, medians):")
    print(
        format_table(
            [
                "shape",
                "docs/s",
                "× ceiling",
                "× PGSync",
                "CPU-s/M",
                "PG CPU-s/M",
                "root PG CPU-s/M",
                "PG ÷ root",
                "peak RSS MB",
            ],
            rows,
        )
    )
    for name, why in (section.get("unavailable") or {}).items():
        print(f"  {name}: {why}")
