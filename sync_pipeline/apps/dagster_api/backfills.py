"""Backfills and partitions as the webserver sees them: a backfill's status and
runs, and which partitions of a spec's assets are materialized, failed,
materializing or missing."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sync_pipeline.apps.dagster_api.launch import partitioned_asset_keys
from sync_pipeline.apps.dagster_api.transport import (
    DagsterApiError,
    Endpoint,
    check_union,
    first_line,
    post,
    redact_url,
    resolve_url,
)

if TYPE_CHECKING:
    from sync_pipeline.core.spec.model import SyncSpec

FINISHED_BACKFILL_STATUSES = frozenset(
    {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
)

_BACKFILL_QUERY = """
query SyncBackfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status title numPartitions partitionNames
      tags { key value }
      error { message }
      runs(limit: 1000) { runId status tags { key value } }
    }
    ... on Error { message }
  }
}
"""

_PARTITION_STATUS_QUERY = """
query SyncPartitionStatus($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      partitionKeys
      assetPartitionStatuses {
        __typename
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
        ... on DefaultPartitionStatuses {
          materializedPartitions failedPartitions materializingPartitions
        }
      }
    }
    ... on Error { message }
  }
}
"""


def backfill_status(url: str | None, backfill_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """A backfill's status (REQUESTED, COMPLETED_SUCCESS, COMPLETED_FAILED, FAILED, CANCELED,
    …), its partitions and the runs it launched."""
    endpoint = Endpoint.parse(url)
    data = post(endpoint, _BACKFILL_QUERY, {"id": backfill_id}, timeout)
    backfill = check_union(endpoint, data["partitionBackfillOrError"], f"backfill {backfill_id}")
    return {
        "backfill_id": backfill["id"],
        "status": backfill["status"],
        "title": backfill.get("title"),
        "partitions": list(backfill.get("partitionNames") or []),
        "num_partitions": backfill.get("numPartitions"),
        "tags": {t["key"]: t["value"] for t in backfill.get("tags") or []},
        "error": first_line((backfill.get("error") or {}).get("message") or "") or None,
        "runs": [
            {"run_id": r["runId"], "status": r["status"], "tags": {t["key"]: t["value"] for t in r["tags"]}}
            for r in backfill.get("runs") or []
        ],
    }


def wait_for_backfill(
    url: str | None, backfill_id: str, *, timeout: float = 600.0, poll_seconds: float = 2.0
) -> dict[str, Any]:
    """Poll until the backfill finished (see FINISHED_BACKFILL_STATUSES); returns backfill_status.
    Raises DagsterApiError when it has not finished within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        status = backfill_status(url, backfill_id)
        if status["status"] in FINISHED_BACKFILL_STATUSES:
            return status
        if time.monotonic() >= deadline:
            safe = redact_url(resolve_url(url))
            raise DagsterApiError(
                f"backfill {backfill_id} still {status['status']} after {timeout:g}s "
                "(is a dagster-daemon running on the same instance?)",
                safe,
            )
        time.sleep(poll_seconds)


def partition_status(
    url: str | None, spec: str | SyncSpec, *, timeout: float = 30.0
) -> dict[str, dict[str, list]]:
    """Per partitioned asset of the spec: its partition keys by state,
    {"materialized": [...], "failed": [...], "materializing": [...], "missing": [...]}."""
    endpoint = Endpoint.parse(url)
    result: dict[str, dict[str, list]] = {}
    for asset in partitioned_asset_keys(spec):
        data = post(endpoint, _PARTITION_STATUS_QUERY, {"key": {"path": [asset]}}, timeout)
        node = check_union(endpoint, data["assetNodeOrError"], f"asset {asset}")
        keys = list(node.get("partitionKeys") or [])
        position = {key: i for i, key in enumerate(keys)}
        states: dict[str, set[str]] = {"materialized": set(), "failed": set(), "materializing": set()}
        statuses = node.get("assetPartitionStatuses") or {}
        # time partitions come as ranges of keys, other partitions as lists of them
        for span in statuses.get("ranges") or []:
            state = span["status"].lower()
            lo, hi = position.get(span["startKey"]), position.get(span["endKey"])
            if state in states and lo is not None and hi is not None:
                states[state].update(keys[lo : hi + 1])
        for state in states:
            states[state].update(statuses.get(f"{state}Partitions") or [])
        done = set().union(*states.values())
        result[asset] = {
            **{state: [k for k in keys if k in members] for state, members in states.items()},
            "missing": [k for k in keys if k not in done],
        }
    return result
