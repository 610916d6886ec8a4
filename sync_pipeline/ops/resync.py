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

from sync_pipeline.core.bulk import BatchResult, BulkBody, entry_doc, retry_policy
from sync_pipeline.core.documents import batch_to_documents, document_id
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.io.elasticsearch import send_body
from sync_pipeline.io.postgres import fetch_keys
from sync_pipeline.ops.binding import Bound

Key = tuple[Any, ...]


def key_from_id(spec: SyncSpec, doc_id: str) -> Key:
    """Inverse of documents.document_ids for keys that were JSON-typed (composite ids)."""
    if len(spec.source.primary_key) == 1:
        return (doc_id,)
    return tuple(orjson.loads(doc_id))


def resync_keys(
    conn: Connection,
    es: Elasticsearch,
    bound: Bound,
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
    spec = bound.spec
    docs = batch_to_documents(fetch_keys(conn, spec, bound.columns, keys), bound.plan)
    entries: list[dict[str, Any]] = []
    present = set(docs.ids)
    for doc_id, doc, deleted, version in zip(
        docs.ids, docs.documents, docs.deleted, docs.versions, strict=True
    ):
        entry: dict[str, Any] = {
            "_id": doc_id,
            "_op": "delete" if deleted else "index",
            "_version": force_version if force_version is not None else version,
        }
        if not deleted:
            entry["_source"] = doc
        entries.append(entry)
    for key in keys:
        doc_id = document_id(key)
        if doc_id in present:
            continue
        entry = {"_id": doc_id, "_op": "delete"}
        if delete_versions and doc_id in delete_versions:
            entry["_version"] = delete_versions[doc_id]
        entries.append(entry)
    if not entries:
        return BatchResult(batch=batch)
    return send_body(es, spec.target.index, BulkBody.join(map(entry_doc, entries)), batch, retry_policy(spec))
