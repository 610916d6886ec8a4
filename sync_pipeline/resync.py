"""Bring specific documents in line with their rows: the shared step behind the
change-buffer drain, `verify --fix` and dead-letter replay.

Rows are re-read *now*, so whatever happened to them in between (several
updates, a delete, a soft delete) collapses into their current state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from elasticsearch import Elasticsearch
from sqlalchemy.engine import Connection

from .extract import ColumnInfo, fetch_keys
from .load import BatchResult, bulk_batch, retry_policy
from .specs import SyncSpec
from .transform import DocumentPlan, document_id, frame_to_documents, record_batch_to_frame

Key = tuple[Any, ...]


def key_from_id(spec: SyncSpec, doc_id: str) -> Key:
    """Inverse of transform.document_ids for keys that were JSON-typed (composite ids)."""
    if len(spec.source.primary_key) == 1:
        return (doc_id,)
    return tuple(orjson.loads(doc_id))


def resync_keys(
    conn: Connection,
    es: Elasticsearch,
    spec: SyncSpec,
    columns: Sequence[ColumnInfo],
    plan: DocumentPlan,
    keys: Sequence[Key],
    batch: int = 1,
    delete_versions: dict[str, int] | None = None,
    force_version: int | None = None,
) -> BatchResult:
    """Index the current row of every key that still exists; delete the others.

    `delete_versions` (by document id) gives hard deletes an external version,
    so a slower writer holding an older copy cannot resurrect the document.
    `force_version` replaces the rows' own versions (verify --fix over an
    out-of-band edit).
    """
    frame = record_batch_to_frame(fetch_keys(conn, spec, columns, keys))
    docs = frame_to_documents(frame, plan)
    actions: list[dict[str, Any]] = []
    present = set(docs.ids)
    for doc_id, doc, deleted, version in zip(
        docs.ids, docs.documents, docs.deleted, docs.versions, strict=True
    ):
        action: dict[str, Any] = {
            "_op_type": "delete" if deleted else "index",
            "_index": spec.target.index,
            "_id": doc_id,
            "version": force_version if force_version is not None else version,
            "version_type": "external_gte",
        }
        if not deleted:
            action["_source"] = doc
        actions.append(action)
    for key in keys:
        doc_id = document_id(key)
        if doc_id in present:
            continue
        action = {"_op_type": "delete", "_index": spec.target.index, "_id": doc_id}
        if delete_versions and doc_id in delete_versions:
            action |= {"version": delete_versions[doc_id], "version_type": "external_gte"}
        actions.append(action)
    if not actions:
        return BatchResult(batch=batch)
    return bulk_batch(es, actions, batch, retry_policy(spec))
