"""Check that a benchmark result file is well-formed: `python -m bench.check FILE`.

Exit 0 when the JSON parses and carries the keys docs/benchmarks.md promises with
the right types and at least one successful run of ceiling, baseline and pipeline;
exit 1 with the problems listed otherwise. Used by `make bench-smoke`.
"""

from __future__ import annotations

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
]


def problems(report: dict) -> list[str]:
    found = []
    for key in REQUIRED_NUMBERS:
        value = report.get(key)
        if not isinstance(value, Number) or value <= 0:
            found.append(f"{key}: expected a positive number, got {value!r}")
    if not isinstance(report.get("scale"), list):
        found.append("scale: expected a list")
    else:
        for entry in report["scale"]:
            if not {"rows", "docs_per_s", "peak_rss_mb"} <= set(entry):
                found.append(f"scale entry lacks rows/docs_per_s/peak_rss_mb: {entry}")
    machine = report.get("machine")
    if not isinstance(machine, dict) or not {"nproc", "elasticsearch", "postgresql"} <= set(machine):
        found.append("machine: expected nproc, elasticsearch, postgresql")
    for name in ("ceiling", "naive", "pipeline"):
        runs = report.get("scenarios", {}).get(name, {}).get("runs", [])
        if not any(not r.get("failed") and r.get("complete") for r in runs):
            found.append(f"scenarios.{name}: no complete successful run")
    if not isinstance(report.get("targets"), dict):
        found.append("targets: expected an object")
    if not isinstance(report.get("pgsync"), dict) or "status" not in report["pgsync"]:
        found.append("pgsync: expected an object with a status")
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.check RESULT.json", file=sys.stderr)
        return 2
    try:
        with open(args[0], encoding="utf-8") as handle:
            report = json.load(handle)
    except (OSError, ValueError) as exc:
        print(f"{args[0]}: not readable JSON: {exc}", file=sys.stderr)
        return 1
    found = problems(report)
    for problem in found:
        print(f"{args[0]}: {problem}", file=sys.stderr)
    if not found:
        print(
            f"{args[0]}: well-formed (rows={report['rows']}, pipeline {report['pipeline_docs_per_s']} docs/s)"
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
