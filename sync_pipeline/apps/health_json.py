"""`doctor`'s findings as JSON rows, and /healthz's document built from the same rows.

Light on purpose (no Dagster, no CLI): the Flask extension's /healthz imports it.
"""

from __future__ import annotations

from typing import Any

from sync_pipeline.ops.health import HealthReport
from sync_pipeline.ops.scrape import Health

HEALTHZ_SCHEMA = "sync_pipeline.healthz/1"


def _row(fix: list[str], **fields: Any) -> dict[str, Any]:
    return {**fields, "needs_action": bool(fix), "fix": list(fix)}


def doctor_rows(report: HealthReport) -> dict[str, list[dict[str, Any]]]:
    """Each topic's rows, as `doctor --json` shows them (docs/cli.md)."""
    return {
        "capture": [
            _row(i.fix, spec=i.spec, table=i.table, function=i.function, problem=i.problem)
            for i in report.capture
        ],
        "backlog": [
            _row(
                b.fix,
                spec=b.spec,
                in_file=b.in_file,
                pending=b.pending,
                truncates=b.truncates,
                oldest_age_seconds=b.oldest_age_seconds,
                problem=b.problem or None,
            )
            for b in report.backlog
        ],
        "slots": [
            _row(
                s.fix,
                spec=s.spec,
                slot=s.slot,
                lag_bytes=s.lag_bytes,
                age_seconds=s.age_seconds,
                wal_status=s.wal_status,
                reader=s.reader,
                problem=s.problem or None,
            )
            for s in report.slots
        ],
        "dead_letters": [_row(d.fix, spec=d.spec, count=d.count) for d in report.dead_letters],
        "indexes": [
            _row(x.fix, spec=x.spec, alias=x.index, indices=list(x.backing), missing=bool(x.fix))
            for x in report.indexes
        ],
        "mappings": [
            _row(m.fix, spec=m.spec, index=m.index, conflicts=list(m.conflicts)) for m in report.mappings
        ],
    }


def healthz_document(health: Health) -> dict[str, Any]:
    """Per spec of the file: ok (nothing of it needs action), doctor's rows of it by topic, and
    when each of its operations last ended well; `others`: findings of no spec in the file."""
    specs: dict[str, dict[str, Any]] = {
        name: {
            "ok": True,
            "last_ok": {op: at.isoformat() if at else None for op, at in sorted(ops.items())},
        }
        for name, ops in health.last_ok.items()
    }
    others: list[dict[str, Any]] = []
    for topic, rows in doctor_rows(health.report).items():
        for row in rows:
            entry = specs.get(row["spec"])
            if entry is None:
                others.append({"topic": topic, **row})
                continue
            entry.setdefault(topic, []).append(row)
            entry["ok"] = entry["ok"] and not row["needs_action"]
    return {
        "schema": HEALTHZ_SCHEMA,
        "ok": health.ok,
        "findings": health.report.findings,
        "specs": specs,
        "others": others,
    }
