"""`sync-pipeline doctor`: what needs action, one table per topic, and the fix of each finding.

Exit 0 when nothing needs action, 1 when something does (an orphaned or
incomplete trigger, a backlog older than --backlog-minutes or of a spec no
longer in the file, dead letters, a missing index), 2 for usage or
configuration errors, like every command.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from sync_pipeline.apps.cli import json_shapes
from sync_pipeline.apps.cli.output import EXIT_DRIFT, EXIT_OK, format_table
from sync_pipeline.apps.cli.session import Session, UsageError
from sync_pipeline.ops.health import HealthReport, check


def cmd_doctor(args: argparse.Namespace) -> int:
    if args.backlog_minutes <= 0:
        raise UsageError(f"--backlog-minutes must be above 0 (got {args.backlog_minutes:g})")
    session = Session.open(args)
    scope = {args.spec} if args.spec else None
    report = check(session.engine, session.es(), session.specs, scope, args.backlog_minutes * 60)
    if args.json:
        json_shapes.emit(json_shapes.doctor_document(report))
    else:
        print(render(report))
    return EXIT_DRIFT if report.findings else EXIT_OK


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _size(count: int | None) -> str:
    if count is None:
        return "-"
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def _needing(count: int) -> str:
    return f"{count} need{'s' if count == 1 else ''} action"


def _section(
    title: str,
    headers: Sequence[str],
    rows: Sequence[tuple[list[Any], list[str]]],
    numbers: Iterator[int],
    empty: str,
) -> list[str]:
    """A titled table whose rows needing action are numbered, then each number's fix, one
    statement or command a line (so SQL can be copied as printed)."""
    need = sum(1 for _, fix in rows if fix)
    lines = [f"{title}: {_needing(need) if need else 'ok'}"]
    if not rows:
        return [*lines, f"  {empty}"]
    table = []
    # findings with the same fix (every table of one spec missing its TRUNCATE trigger) share it
    fixes: dict[tuple[str, ...], list[int]] = {}
    for cells, fix in rows:
        number = next(numbers) if fix else None
        table.append([f"[{number}]" if number else "", *cells])
        if number:
            fixes.setdefault(tuple(fix), []).append(number)
    out = [*lines, format_table(["", *headers], table)]
    for fix, numbered in fixes.items():
        out.append(f"fix {', '.join(f'[{n}]' for n in numbered)}:")
        out += [f"  {step}" for step in fix]
    return out


def render(report: HealthReport) -> str:
    numbers = itertools.count(1)
    sections = [
        _section(
            "capture triggers",
            ["spec", "table", "function", "problem"],
            [([i.spec, i.table, i.function, i.problem], i.fix) for i in report.capture],
            numbers,
            "no orphaned or missing triggers",
        ),
        _section(
            "change buffer",
            ["spec", "pending", "truncates", "oldest", "status"],
            [
                (
                    [b.spec, b.pending, b.truncates, age(b.oldest_age_seconds), b.problem or "ok"],
                    b.fix,
                )
                for b in report.backlog
            ],
            numbers,
            "nothing buffered",
        ),
        _section(
            "replication slots (capture: logical)",
            ["spec", "slot", "lag", "oldest", "wal", "reader", "status"],
            [
                (
                    [
                        x.spec,
                        x.slot,
                        _size(x.lag_bytes),
                        age(x.age_seconds),
                        x.wal_status,
                        x.reader,
                        x.problem or "ok",
                    ],
                    x.fix,
                )
                for x in report.slots
            ],
            numbers,
            "no spec uses logical capture",
        ),
        _section(
            "dead letters",
            ["spec", "dead letters"],
            [([d.spec, d.count], d.fix) for d in report.dead_letters],
            numbers,
            "none",
        ),
        _section(
            "elasticsearch indexes",
            ["spec", "alias", "indices", "status"],
            [
                ([x.spec, x.index, ", ".join(x.backing) or "-", "MISSING" if x.fix else "ok"], x.fix)
                for x in report.indexes
            ],
            numbers,
            "no spec selected",
        ),
        _section(
            "index mappings",
            ["spec", "index", "status"],
            [([m.spec, m.index, "; ".join(m.conflicts) or "in step"], m.fix) for m in report.mappings],
            numbers,
            "no index to compare",
        ),
    ]
    found = report.findings
    verdict = "nothing needs action"
    if found:
        verdict = "1 finding needs action" if found == 1 else f"{found} findings need action"
    return "\n\n".join("\n".join(lines) for lines in [*sections, [verdict]])
