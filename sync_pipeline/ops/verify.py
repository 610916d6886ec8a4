"""Prove PostgreSQL and Elasticsearch agree, streaming both sides in key order.

Both sides are read in primary-key order — PostgreSQL by keyset pages, ES by
`search_after` on the key fields — and merged like two sorted files, so memory
is a page on each side however large the table is: no set of all ids is built.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from elasticsearch import Elasticsearch
from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.documents import (
    DocumentPlan,
    batch_to_documents,
    build_plan,
    document_id,
    index_mapping,
    index_settings,
)
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.io.elasticsearch import LoadTotals, ensure_index
from sync_pipeline.io.postgres import ColumnInfo, Window, describe_source, iter_pages, window_count_query
from sync_pipeline.ops.resync import resync_keys

Keyed = tuple[tuple[Any, ...], str, dict[str, Any]]  # (sort key, _id, document)

EXAMPLES = 10


@dataclass
class Mismatch:
    doc_id: str
    fields: list[str]


@dataclass
class VerifyReport:
    spec: str
    index: str
    pg_count: int = 0
    es_count: int = 0
    missing: int = 0
    extra: int = 0
    mismatched: int = 0
    missing_ids: list[str] = field(default_factory=list)
    extra_ids: list[str] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    repaired: LoadTotals | None = None

    @property
    def drift(self) -> int:
        return self.missing + self.extra + self.mismatched

    @property
    def ok(self) -> bool:
        return self.drift == 0

    def lines(self) -> list[str]:
        status = "OK" if self.ok else "DRIFT"
        out = [
            f"{self.spec} → {self.index}: {status}  postgres={self.pg_count} elasticsearch={self.es_count} "
            f"missing={self.missing} extra={self.extra} mismatched={self.mismatched}"
        ]
        if self.missing_ids:
            out.append(f"  missing in ES (first {len(self.missing_ids)}): {', '.join(self.missing_ids)}")
        if self.extra_ids:
            out.append(f"  extra in ES (first {len(self.extra_ids)}): {', '.join(self.extra_ids)}")
        for m in self.mismatches:
            out.append(f"  _id {m.doc_id} differs in: {', '.join(m.fields)}")
        if self.repaired is not None:
            r = self.repaired
            out.append(
                f"  fixed: {r.indexed} re-indexed, {r.deleted} deleted, {r.failed + r.dead_lettered} failed"
            )
        return out


def normalise(doc: dict[str, Any]) -> dict[str, Any]:
    """JSON round trip, so both sides compare as what ES actually stores."""
    return orjson.loads(orjson.dumps(doc))


def differing_fields(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    keys = set(expected) | set(actual)
    # a field that is null on one side and absent on the other is the same document
    return sorted(k for k in keys if expected.get(k) != actual.get(k))


class Repairs(Protocol):
    """What `verify --fix` does with each difference as the merge finds it."""

    def repair(self, key: tuple[Any, ...]) -> None: ...


def diff_sorted(
    expected: Iterable[Keyed], actual: Iterable[Keyed], report: VerifyReport, repairs: Repairs | None = None
) -> VerifyReport:
    """Merge two key-ordered streams, counting missing, extra and changed documents."""
    exp_iter: Iterator[Keyed] = iter(expected)
    act_iter: Iterator[Keyed] = iter(actual)
    exp = next(exp_iter, None)
    act = next(act_iter, None)
    while exp is not None or act is not None:
        if act is None or (exp is not None and exp[0] < act[0]):
            assert exp is not None
            report.missing += 1
            report.pg_count += 1
            if len(report.missing_ids) < EXAMPLES:
                report.missing_ids.append(exp[1])
            if repairs:
                repairs.repair(exp[0])
            exp = next(exp_iter, None)
        elif exp is None or act[0] < exp[0]:
            report.extra += 1
            report.es_count += 1
            if len(report.extra_ids) < EXAMPLES:
                report.extra_ids.append(act[1])
            if repairs:
                repairs.repair(act[0])
            act = next(act_iter, None)
        else:
            report.pg_count += 1
            report.es_count += 1
            fields = differing_fields(normalise(exp[2]), normalise(act[2]))
            if fields:
                report.mismatched += 1
                if len(report.mismatches) < EXAMPLES:
                    report.mismatches.append(Mismatch(exp[1], fields))
                if repairs:
                    repairs.repair(exp[0])
            exp = next(exp_iter, None)
            act = next(act_iter, None)
    return report


def postgres_documents(
    conn: Connection, spec: SyncSpec, columns: Sequence[ColumnInfo], plan: DocumentPlan, page_size: int
) -> Iterator[Keyed]:
    """Every live row of the source as the document it should be, in key order."""
    key_fields = spec.key_fields
    for batch in iter_pages(conn, spec, columns, None, page_size, modes=["by_key"]):
        docs = batch_to_documents(batch, plan)
        for doc_id, doc, deleted in zip(docs.ids, docs.documents, docs.deleted, strict=True):
            if not deleted:
                yield tuple(doc[k] for k in key_fields), doc_id, doc


def elasticsearch_documents(es: Elasticsearch, spec: SyncSpec, page_size: int) -> Iterator[Keyed]:
    """Every document of the index, sorted by the key fields, via search_after."""
    sort = [{name: {"order": "asc"}} for name in spec.key_fields]
    after: list[Any] | None = None
    while True:
        response = es.search(
            index=spec.target.index,
            size=page_size,
            sort=sort,
            search_after=after,
            track_total_hits=False,
            query={"match_all": {}},
        )
        hits = response["hits"]["hits"]
        if not hits:
            return
        for hit in hits:
            yield tuple(hit["sort"]), hit["_id"], hit["_source"]
        after = hits[-1]["sort"]


class BulkRepairs:
    """Repairs drifting documents in bounded batches while the merge runs.

    Each drifting key is re-synced from its row as it is *now* (not as the
    verify snapshot saw it), through the same path as the change buffer: so a
    write that landed during the verify is never replaced by an older copy,
    and an extra document whose row appeared meanwhile is indexed, not deleted.
    Where Elasticsearch still holds a higher version than the current row (a
    document edited behind our back), the row is forced in with a version of now.
    """

    def __init__(
        self, engine: Engine, es: Elasticsearch, spec: SyncSpec, columns, plan, batch_size: int = 500
    ):
        self.engine, self.es, self.spec, self.columns, self.plan = engine, es, spec, columns, plan
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
            result = resync_keys(conn, self.es, self.spec, self.columns, self.plan, self.pending, number)
            if result.stale_ids:
                stale = set(result.stale_ids)
                keys = [k for k in self.pending if document_id(k) in stale]
                now = int(time.time() * 1_000_000)
                again = resync_keys(
                    conn, self.es, self.spec, self.columns, self.plan, keys, number, force_version=now
                )
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
    columns = describe_source(conn, spec)
    plan = build_plan(spec, columns)
    report = VerifyReport(spec=spec.name, index=spec.target.index)
    repairs = BulkRepairs(conn.engine, es, spec, columns, plan) if fix else None
    if fix:
        ensure_index(es, spec.target.index, index_mapping(plan), index_settings(spec))
    if es.indices.exists(index=spec.target.index):
        es.indices.refresh(index=spec.target.index)
        actual: Iterable[Keyed] = elasticsearch_documents(es, spec, page_size)
    else:
        actual = []  # every row is missing; still stream PostgreSQL to count them
    diff_sorted(postgres_documents(conn, spec, columns, plan, page_size), actual, report, repairs)
    if repairs:
        repairs.flush()
        report.repaired = repairs.totals
        es.indices.refresh(index=spec.target.index)
    return report


# --- per-window reconciliation ------------------------------------------------------------------


@dataclass(frozen=True)
class WindowDigest:
    """Count and an order-independent content hash of the documents in one window."""

    count: int
    digest: int

    @classmethod
    def of(cls, documents: Iterable[dict[str, Any]]) -> WindowDigest:
        count = total = 0
        for doc in documents:
            count += 1
            total = (total + document_hash(doc)) % 2**64  # a sum: independent of read order
        return cls(count, total)


def document_hash(doc: dict[str, Any]) -> int:
    canonical = orjson.dumps(normalise(doc), option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.blake2b(canonical, digest_size=8).digest(), "big")


def postgres_window_documents(
    conn: Connection, spec: SyncSpec, columns: Sequence[ColumnInfo], plan: DocumentPlan, window: Window
) -> Iterator[dict[str, Any]]:
    for batch in iter_pages(conn, spec, columns, window, spec.batch_size):
        docs = batch_to_documents(batch, plan)
        yield from (doc for doc, deleted in zip(docs.documents, docs.deleted, strict=True) if not deleted)


def window_query(spec: SyncSpec, window: Window) -> dict[str, Any]:
    field_name = spec.field_name(spec.source.updated_at)
    bounds: dict[str, str] = {}
    if window.start is not None:
        bounds["gte"] = window.start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if window.end is not None:
        bounds["lt"] = window.end.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    in_range: dict[str, Any] = (
        {"range": {field_name: bounds}} if bounds else {"exists": {"field": field_name}}
    )
    if not window.include_null_updated_at:
        return in_range
    missing = {"bool": {"must_not": {"exists": {"field": field_name}}}}
    return {"bool": {"should": [in_range, missing], "minimum_should_match": 1}}


def elasticsearch_window_documents(
    es: Elasticsearch, spec: SyncSpec, window: Window
) -> Iterator[dict[str, Any]]:
    sort = [{name: {"order": "asc"}} for name in spec.key_fields]
    after: list[Any] | None = None
    while True:
        hits = es.search(
            index=spec.target.index,
            size=2000,
            sort=sort,
            search_after=after,
            track_total_hits=False,
            query=window_query(spec, window),
        )["hits"]["hits"]
        if not hits:
            return
        yield from (hit["_source"] for hit in hits)
        after = hits[-1]["sort"]


def reconcile_window(
    conn: Connection, es: Elasticsearch, spec: SyncSpec, window: Window
) -> tuple[WindowDigest, WindowDigest]:
    """(PostgreSQL, Elasticsearch) digests of one updated_at window, for the per-partition check."""
    columns = describe_source(conn, spec)
    plan = build_plan(spec, columns)
    source = WindowDigest.of(postgres_window_documents(conn, spec, columns, plan, window))
    target = WindowDigest.of(elasticsearch_window_documents(es, spec, window))
    return source, target


def count_window(conn: Connection, es: Elasticsearch, spec: SyncSpec, window: Window) -> tuple[int, int]:
    """(PostgreSQL, Elasticsearch) live-document counts of one window: one count query per side."""
    columns = describe_source(conn, spec)
    source = conn.execute(window_count_query(spec, columns, window)).scalar_one()
    target = es.count(index=spec.target.index, query=window_query(spec, window))["count"]
    return int(source), int(target)
