"""`--json`: what a command found, as one versioned JSON document on stdout (docs/cli.md).

Every document is an object whose `schema` is `sync_pipeline.<command>/<version>` and whose `ok`
is true exactly when the command exits 0. Each shape is built here (search's beside its result,
in search.py), from the result objects the text output prints, so the two never disagree.
Version rule: adding a key keeps the version; removing, renaming or changing the meaning or type
of one bumps it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sync_pipeline.apps.cli.runner import HistoryRun, SyncSummary
from sync_pipeline.apps.health_json import doctor_rows
from sync_pipeline.core.documents.diff import VerifyReport
from sync_pipeline.core.load.counts import PER_BATCH
from sync_pipeline.core.report.run_totals import BatchRecord
from sync_pipeline.ops.health import HealthReport

VERSIONS = {
    "verify": 1,
    "sync": 1,
    "flush": 1,
    "history": 1,
    "doctor": 1,
    "dead-letters": 1,
    "search": 1,
}


def schema(command: str) -> str:
    return f"sync_pipeline.{command}/{VERSIONS[command]}"


def document(command: str, ok: bool, **body: Any) -> dict[str, Any]:
    return {"schema": schema(command), "ok": ok, **body}


def json_safe(value: Any) -> Any:
    """Datetimes as ISO 8601 in UTC (a naive one is taken as UTC), NaN and infinities as null,
    tuples as lists, anything else unknown as its text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return json_safe(float(value))
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return aware.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    return str(value)


def dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(json_safe(doc), ensure_ascii=False, allow_nan=False, indent=2)


def emit(doc: Mapping[str, Any]) -> None:
    print(dumps(doc))


def verify_report(report: VerifyReport) -> dict[str, Any]:
    repaired = report.repaired
    return {
        "spec": report.spec,
        "index": report.index,
        "ok": report.ok,
        "drift": report.drift,
        "postgres_count": report.pg_count,
        "index_count": report.es_count,
        "missing": report.missing,
        "extra": report.extra,
        "mismatched": report.mismatched,
        "missing_ids": list(report.missing_ids),
        "extra_ids": list(report.extra_ids),
        "mismatches": [{"id": m.doc_id, "fields": list(m.fields)} for m in report.mismatches],
        "mapping_differences": list(report.mapping),
        "fixed": None
        if repaired is None
        else {
            "indexed": repaired.indexed,
            "deleted": repaired.deleted,
            "failed": repaired.failed + repaired.dead_lettered,
        },
    }


def verify_document(
    reports: Sequence[VerifyReport], after_fix: Sequence[VerifyReport] | None, ok: bool
) -> dict[str, Any]:
    return document(
        "verify",
        ok,
        reports=[verify_report(r) for r in reports],
        after_fix=None if after_fix is None else [verify_report(r) for r in after_fix],
    )


def run_summary(summary: SyncSummary) -> dict[str, Any]:
    return {
        "spec": summary.spec,
        "partitions": summary.partitions,
        "run_id": summary.run_id,
        "success": summary.success,
        "error": summary.error or None,
        "extracted": summary.extracted,
        **summary.counts.as_dict(),
        "claimed": summary.claimed,
        "load_seconds": summary.seconds,
        "wall_seconds": summary.wall_seconds,
        "docs_per_second": summary.docs_per_second,
        "load_docs_per_second": summary.load_docs_per_second,
    }


def runs_document(command: str, summaries: Sequence[SyncSummary], ok: bool) -> dict[str, Any]:
    """`sync` (one run) and `flush` (one run per spec): the same run objects."""
    return document(command, ok, runs=[run_summary(s) for s in summaries])


def history_run(run: HistoryRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "job": run.job,
        "spec": run.spec,
        "kind": run.kind,
        "partitions": run.partitions,
        "status": run.status,
        "start": run.start,
        "end": run.end,
        "duration_seconds": run.duration_seconds,
        "batches": run.totals["batches"],
        "indexed": run.totals["indexed"],
        "failed": run.totals["failed"],
        "stale_skipped": run.totals["stale_skipped"],
        "dead_lettered": run.totals["dead_lettered"],
    }


def history_batch(run: HistoryRun, batch: BatchRecord) -> dict[str, Any]:
    return {
        "asset": batch.asset,
        "batch": batch.batch,
        "partitions": run.partitions,
        **batch.counts.as_dict(PER_BATCH),
        "seconds": batch.seconds,
        "docs_per_second": batch.docs_per_s,
    }


def history_document(
    runs: Sequence[HistoryRun], batches: Sequence[BatchRecord] | None = None
) -> dict[str, Any]:
    """`history`; with `--run ID --batches`, the one run and `batches`: every batch it recorded."""
    extra = {} if batches is None else {"batches": [history_batch(runs[0], b) for b in batches]}
    return document("history", True, runs=[history_run(r) for r in runs], **extra)


def doctor_document(report: HealthReport) -> dict[str, Any]:
    return document("doctor", report.findings == 0, findings=report.findings, **doctor_rows(report))


def dead_letter(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "spec": row["spec"],
        "partition": row["partition"],
        "run_id": row.get("run_id"),
        "doc_id": row["doc_id"],
        "error": row["error"],
        "created_at": row["created_at"],
    }


def dead_letters_document(rows: Sequence[Mapping[str, Any]], limit: int) -> dict[str, Any]:
    return document("dead-letters", True, limit=limit, dead_letters=[dead_letter(r) for r in rows])
