"""Prove PostgreSQL and Elasticsearch agree, streaming both sides in key order.

Both sides are read in primary-key order — PostgreSQL by keyset pages, ES by
`search_after` on the key fields — and merged (core.diff), so memory is a page
on each side however large the table is. With `fix`, every difference found is
repaired while the merge runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from elasticsearch import Elasticsearch
from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.bulk import LoadTotals
from sync_pipeline.core.diff import Keyed, VerifyReport, WindowDigest, diff_sorted
from sync_pipeline.core.documents import batch_to_documents, document_id
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.core.windows import Window
from sync_pipeline.io.elasticsearch import (
    count_window_documents,
    elasticsearch_documents,
    window_documents,
)
from sync_pipeline.io.postgres import count_window_rows, iter_pages
from sync_pipeline.ops.binding import Bound, bind, ensure_target
from sync_pipeline.ops.resync import resync_keys


def postgres_documents(conn: Connection, bound: Bound, page_size: int) -> Iterator[Keyed]:
    """Every live row of the source as the document it should be, in key order."""
    spec = bound.spec
    key_fields = spec.key_fields
    for batch in iter_pages(conn, spec, bound.columns, None, page_size, modes=["by_key"]):
        docs = batch_to_documents(batch, bound.plan)
        for doc_id, doc, deleted in zip(docs.ids, docs.documents, docs.deleted, strict=True):
            if not deleted:
                yield tuple(doc[k] for k in key_fields), doc_id, doc


class BulkRepairs:
    """Repairs drifting documents in bounded batches while the merge runs.

    Each drifting key is re-synced from its row as it is *now* (not as the
    verify snapshot saw it), through the same path as the change buffer: so a
    write that landed during the verify is never replaced by an older copy,
    and an extra document whose row appeared meanwhile is indexed, not deleted.
    Where Elasticsearch still holds a higher version than the current row (a
    document edited behind our back), the row is forced in with a version of now.
    """

    def __init__(self, engine: Engine, es: Elasticsearch, bound: Bound, batch_size: int = 500):
        self.engine, self.es, self.bound = engine, es, bound
        self.batch_size = batch_size
        self.pending: list[tuple[Any, ...]] = []
        self.totals = LoadTotals()

    def repair(self, key: tuple[Any, ...]) -> None:
        self.pending.append(key)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        number = self.totals.batches + 1
        with self.engine.connect() as conn:
            result = resync_keys(conn, self.es, self.bound, self.pending, number)
            if result.stale_ids:
                stale = set(result.stale_ids)
                keys = [k for k in self.pending if document_id(k) in stale]
                now = int(time.time() * 1_000_000)
                again = resync_keys(conn, self.es, self.bound, keys, number, force_version=now)
                result.stale_skipped, result.stale_ids = 0, []
                result.indexed += again.indexed
                result.failed += again.failed
                result.rejected += again.rejected
        self.totals.add(result)
        self.pending = []


def verify_spec(
    conn: Connection, es: Elasticsearch, spec: SyncSpec, page_size: int = 2000, fix: bool = False
) -> VerifyReport:
    """Compare the spec's source and index; with `fix`, also repair every difference found.

    Repairs go to the index while the merge still reads it; search_after pages
    by key, so a repaired document behind the cursor is never read again.
    """
    bound = bind(conn, spec)
    report = VerifyReport(spec=spec.name, index=spec.target.index)
    repairs = BulkRepairs(conn.engine, es, bound) if fix else None
    if fix:
        ensure_target(es, bound)
    if es.indices.exists(index=spec.target.index):
        es.indices.refresh(index=spec.target.index)
        actual: Iterable[Keyed] = elasticsearch_documents(es, spec, page_size)
    else:
        actual = []  # every row is missing; still stream PostgreSQL to count them
    diff_sorted(postgres_documents(conn, bound, page_size), actual, report, repairs)
    if repairs:
        repairs.flush()
        report.repaired = repairs.totals
        es.indices.refresh(index=spec.target.index)
    return report


def postgres_window_documents(conn: Connection, bound: Bound, window: Window) -> Iterator[dict[str, Any]]:
    spec = bound.spec
    for batch in iter_pages(conn, spec, bound.columns, window, spec.batch_size):
        docs = batch_to_documents(batch, bound.plan)
        yield from (doc for doc, deleted in zip(docs.documents, docs.deleted, strict=True) if not deleted)


def reconcile_window(
    conn: Connection, es: Elasticsearch, spec: SyncSpec, window: Window
) -> tuple[WindowDigest, WindowDigest]:
    """(PostgreSQL, Elasticsearch) digests of one updated_at window, for the per-partition check."""
    bound = bind(conn, spec)
    source = WindowDigest.of(postgres_window_documents(conn, bound, window))
    target = WindowDigest.of(window_documents(es, spec, window))
    return source, target


def count_window(conn: Connection, es: Elasticsearch, spec: SyncSpec, window: Window) -> tuple[int, int]:
    """(PostgreSQL, Elasticsearch) live-document counts of one window: one count query per side."""
    bound = bind(conn, spec)
    return count_window_rows(conn, spec, bound.columns, window), count_window_documents(es, spec, window)
