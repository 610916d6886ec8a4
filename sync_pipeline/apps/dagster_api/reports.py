"""What runs did, read back from the webserver: status, tags, times, and the
per-batch counts the load assets record as observations while they run.

A run's summary comes from its event log: its `_index`/`_changes` asset's bulk
batches, the materializations' totals (rows extracted, buffer entries claimed),
and the failure events' first lines. A full sync's load records every batch in
one observation's table (`naming.BATCH_TABLE`, a TableMetadataEntry: what the
run page shows), a drain one observation per batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sync_pipeline.apps.dagster_api.transport import (
    DagsterApiError,
    Endpoint,
    check_union,
    first_line,
    post,
    redact_url,
    resolve_url,
    spec_name,
)
from sync_pipeline.core.naming import (
    BACKFILL_TAG,
    BATCH_FIELDS,
    BATCH_TABLE,
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    ROW_COUNT,
    SPEC_TAG,
    changes_asset,
    is_extract_asset,
    is_load_asset,
)
from sync_pipeline.core.report.run_totals import fold_batches

if TYPE_CHECKING:
    from sync_pipeline.core.spec.model import SyncSpec

FINISHED_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
COUNT_FIELDS = ("indexed", "deleted", "stale_skipped", "conflicts", "failed", "dead_lettered")
EVENTS_PAGE = 1000

_RUN_FIELDS = """
  runId jobName status creationTime startTime endTime
  tags { key value }
"""

_RUN_QUERY = f"""
query SyncRun($runId: ID!) {{
  runOrError(runId: $runId) {{
    __typename
    ... on Run {{ {_RUN_FIELDS} }}
    ... on Error {{ message }}
  }}
}}
"""

_RUN_STATUS_QUERY = """
query SyncRunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status }
    ... on Error { message }
  }
}
"""

_RUNS_QUERY = f"""
query SyncRuns($filter: RunsFilter, $limit: Int) {{
  runsOrError(filter: $filter, limit: $limit) {{
    __typename
    ... on Runs {{ results {{ {_RUN_FIELDS} }} }}
    ... on Error {{ message }}
  }}
}}
"""

_METADATA = """
  metadataEntries {
    __typename label
    ... on IntMetadataEntry { intRepr }
    ... on FloatMetadataEntry { floatValue }
  }
"""

# an observation may carry the load's batch table: its rows, each one JSON object
_OBSERVATION_METADATA = """
  metadataEntries {
    __typename label
    ... on IntMetadataEntry { intRepr }
    ... on FloatMetadataEntry { floatValue }
    ... on TableMetadataEntry { table { records } }
  }
"""

_EVENTS_QUERY = f"""
query SyncRunEvents($runId: ID!, $cursor: String, $limit: Int) {{
  logsForRun(runId: $runId, afterCursor: $cursor, limit: $limit) {{
    __typename
    ... on EventConnection {{
      cursor hasMore
      events {{
        __typename
        ... on ObservationEvent {{ assetKey {{ path }} partition {_OBSERVATION_METADATA} }}
        ... on MaterializationEvent {{ assetKey {{ path }} partition {_METADATA} }}
        ... on ExecutionStepFailureEvent {{ stepKey error {{ message className causes {{ message }} }} }}
        ... on RunFailureEvent {{ message error {{ message className causes {{ message }} }} }}
      }}
    }}
    ... on Error {{ message }}
  }}
}}
"""


def _is_changes_asset(asset: str) -> bool:
    # the suffix naming gives a spec's change-buffer asset (naming has no predicate for it)
    return asset.endswith(changes_asset(""))


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat().replace("+00:00", "Z")


def _numeric_metadata(entries: Sequence[Mapping[str, Any]]) -> dict[str, int | float]:
    values: dict[str, int | float] = {}
    for entry in entries:
        if entry["__typename"] == "IntMetadataEntry" and entry.get("intRepr") is not None:
            values[entry["label"]] = int(entry["intRepr"])
        elif entry["__typename"] == "FloatMetadataEntry" and entry.get("floatValue") is not None:
            values[entry["label"]] = float(entry["floatValue"])
    return values


def _table_rows(entries: Sequence[Mapping[str, Any]], label: str) -> list[dict[str, Any]] | None:
    """The rows of the table entry under `label`, or None when there is none."""
    for entry in entries:
        if entry["__typename"] == "TableMetadataEntry" and entry["label"] == label:
            return [json.loads(record) for record in entry["table"]["records"]]
    return None


def _batch_entries(
    tables: Mapping[str, list[Mapping[str, Any]]], observed: Sequence[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """One entry per batch, asset by asset in the order they first reported.

    An asset with a batch table (a full sync whose load ended) lists its rows, by batch number
    (core.report.run_totals reads them as `history --batches` does). One without (a drain: one observation per
    batch; a full sync still loading, or killed before its table) lists its observations as they
    came: a full sync's progress observation sums several batches (`batches` of them).
    """
    entries: list[dict[str, Any]] = []
    for asset in dict.fromkeys([a for a, _ in observed] + list(tables)):
        if asset in tables:
            records = fold_batches([(asset, {BATCH_TABLE: tables[asset]})])
            entries.extend(
                {"asset": asset, "batches": 1, **{f: getattr(r, f) for f in BATCH_FIELDS}} for r in records
            )
        else:
            entries.extend(
                {"asset": asset, "batches": int(meta.get("batches", 1)),
                 **{f: meta[f] for f in BATCH_FIELDS if f in meta}}
                for a, meta in observed if a == asset
            )  # fmt: skip
    return entries


def _run_events(endpoint: Endpoint, run_id: str, timeout: float) -> list[Mapping[str, Any]]:
    events: list[Mapping[str, Any]] = []
    cursor = None
    while True:
        data = post(
            endpoint, _EVENTS_QUERY, {"runId": run_id, "cursor": cursor, "limit": EVENTS_PAGE}, timeout
        )
        page = check_union(endpoint, data["logsForRun"], f"run {run_id}")
        events.extend(page["events"])
        if not page.get("hasMore") or not page["events"] or page.get("cursor") in (None, cursor):
            return events
        cursor = page["cursor"]


def _error_line(event: Mapping[str, Any]) -> str:
    """The first line of what went wrong, without Dagster's step-execution wrapper."""
    error = event.get("error") or {}
    message = error.get("message") or ""
    causes = error.get("causes") or []
    if error.get("className") == "DagsterExecutionStepExecutionError" and causes:
        message = causes[0].get("message") or message
    return first_line(message or event.get("message") or "")


def _partition_range(tags: Mapping[str, str]) -> dict[str, str] | None:
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        return {"start": tags[RANGE_START_TAG], "end": tags[RANGE_END_TAG]}
    if PARTITION_TAG in tags:
        return {"start": tags[PARTITION_TAG], "end": tags[PARTITION_TAG]}
    return None


def _summarise(run: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    tags = {t["key"]: t["value"] for t in run.get("tags") or []}
    tables: dict[str, list[Mapping[str, Any]]] = {}
    observed: list[tuple[str, dict[str, Any]]] = []
    materialized: dict[str, dict[str, int | float]] = {}
    errors: list[str] = []
    run_errors: list[str] = []
    for event in events:
        kind = event["__typename"]
        if kind in ("ObservationEvent", "MaterializationEvent"):
            asset = "/".join(event["assetKey"]["path"])
            entries = event.get("metadataEntries") or []
            meta = _numeric_metadata(entries)
            if kind == "ObservationEvent":
                rows = _table_rows(entries, BATCH_TABLE) if is_load_asset(asset) else None
                if rows is not None:
                    tables.setdefault(asset, []).extend(rows)
                elif is_load_asset(asset) and "batch" in meta:
                    observed.append((asset, meta))
            else:
                # a range run reports the same totals once per partition: keep one per asset
                materialized.setdefault(asset, meta)
        elif kind == "ExecutionStepFailureEvent":
            errors.append(f"{event.get('stepKey')}: {_error_line(event)}")
        elif kind == "RunFailureEvent":
            run_errors.append(_error_line(event))
    batches = _batch_entries(tables, observed)
    if not errors:  # the run failed without a failed step (it could not start, it was killed, …)
        errors = [line for line in run_errors if line]

    totals: dict[str, Any] = {field: sum(int(b.get(field, 0)) for b in batches) for field in COUNT_FIELDS}
    totals["batches"] = sum(b["batches"] for b in batches)
    totals["seconds"] = round(sum(float(b.get("seconds", 0.0)) for b in batches), 3)
    docs = sum(totals[f] for f in COUNT_FIELDS)
    totals["docs_per_s"] = round(docs / totals["seconds"], 1) if totals["seconds"] else 0.0
    extracts = [m for a, m in materialized.items() if is_extract_asset(a)]
    changes = [m for a, m in materialized.items() if _is_changes_asset(a)]
    totals["extracted"] = sum(int(m.get(ROW_COUNT, 0)) for m in extracts) if extracts else None
    totals["claimed"] = sum(int(m.get("claimed", 0)) for m in changes) if changes else None

    started, ended = run.get("startTime"), run.get("endTime")
    return {
        "run_id": run["runId"],
        "job_name": run["jobName"],
        "status": run["status"],
        "spec": tags.get(SPEC_TAG),
        "backfill_id": tags.get(BACKFILL_TAG),
        "partition_range": _partition_range(tags),
        "creation_time": _iso(run.get("creationTime")),
        "start_time": _iso(started),
        "end_time": _iso(ended),
        "duration_s": round(ended - started, 3) if started is not None and ended is not None else None,
        "tags": tags,
        "batches": batches,
        "totals": totals,
        "errors": errors,
    }


def run_report(url: str | None, run_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """What a run did: status, job, tags, start/end time, one entry per bulk batch of its
    `_index`/`_changes` asset (a full sync still loading: one per progress observation,
    `batches` of them each), and totals (plus `extracted` rows for a sync, `claimed`
    buffer entries for a drain). Raises DagsterNotFoundError for an unknown run id."""
    endpoint = Endpoint.parse(url)
    data = post(endpoint, _RUN_QUERY, {"runId": run_id}, timeout)
    run = check_union(endpoint, data["runOrError"], f"run {run_id}")
    return _summarise(run, _run_events(endpoint, run_id, timeout))


def recent_runs(
    url: str | None,
    spec: str | SyncSpec | None = None,
    limit: int = 20,
    *,
    with_batches: bool = False,
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """The newest runs (of one spec when given: runs tagged sync_pipeline/spec), newest
    first, each summarised like run_report (without its batch list unless asked)."""
    endpoint = Endpoint.parse(url)
    run_filter = {"tags": [{"key": SPEC_TAG, "value": spec_name(spec)}]} if spec is not None else {}
    data = post(endpoint, _RUNS_QUERY, {"filter": run_filter, "limit": int(limit)}, timeout)
    runs = check_union(endpoint, data["runsOrError"], "the run list")["results"]
    reports = []
    for run in runs:
        report = _summarise(run, _run_events(endpoint, run["runId"], timeout))
        if not with_batches:
            report.pop("batches")
        reports.append(report)
    return reports


def run_status(url: str | None, run_id: str, *, timeout: float = 30.0) -> str:
    """The run's status name (QUEUED, STARTING, STARTED, SUCCESS, FAILURE, CANCELED, …)."""
    endpoint = Endpoint.parse(url)
    data = post(endpoint, _RUN_STATUS_QUERY, {"runId": run_id}, timeout)
    return check_union(endpoint, data["runOrError"], f"run {run_id}")["status"]


def wait_for_run(url: str | None, run_id: str, *, timeout: float = 600.0, poll_seconds: float = 1.0) -> str:
    """Poll until the run finished; returns SUCCESS, FAILURE or CANCELED.
    Raises DagsterApiError when it has not finished within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        status = run_status(url, run_id)
        if status in FINISHED_RUN_STATUSES:
            return status
        if time.monotonic() >= deadline:
            safe = redact_url(resolve_url(url))
            raise DagsterApiError(f"run {run_id} still {status} after {timeout:g}s ({safe})", safe)
        time.sleep(poll_seconds)
