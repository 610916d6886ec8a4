"""Prove PostgreSQL and Elasticsearch agree, streaming both sides in key order.

Both sides are read in primary-key order — PostgreSQL by key ranges, each in a
snapshot of its own (io/ranges.py), ES by `search_after` on the key fields — and
merged (core.documents.diff), so memory is a page on each side however large the table
is, and no transaction stays open across the read. With `fix`, every difference
found is repaired while the merge runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.documents.build import batch_to_documents, expect_exact_numerics, key_order_problems
from sync_pipeline.core.documents.diff import Keyed, VerifyReport, WindowDigest, diff_sorted
from sync_pipeline.core.load.bulk import BatchResult, LoadTotals
from sync_pipeline.core.load.counts import Counts
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.keys import document_id
from sync_pipeline.core.sql.statements import SourceError
from sync_pipeline.core.sql.versions import XIP_SLOTS
from sync_pipeline.core.windows import Window
from sync_pipeline.io import deadletters
from sync_pipeline.io.postgres import burn_transaction_id, count_window_rows, iter_pages
from sync_pipeline.io.ranges import iter_key_ranges, range_transaction
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.io.search.indices import (
    count_window_documents,
    elasticsearch_documents,
    field_types,
    window_documents,
)
from sync_pipeline.io.search.multi_fields import multi_field_gaps
from sync_pipeline.ops.binding import Bound, bind
from sync_pipeline.ops.resync import Key, classify_stale, key_from_id, resync_body, send_resync
from sync_pipeline.ops.target import field_sources, mapping_drift, reconcile_target

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PAGE_SIZE = 2000  # rows of a key range at most: a spec's smaller batch_size bounds it further


class UnorderedKeyError(SourceError):
    """A spec whose key verify cannot merge on: the two sides would not come in one order."""


def check_key_order(bound: Bound) -> None:
    """Refuse keys Elasticsearch sorts otherwise than PostgreSQL orders them (core/sql/columns.py
    key_sort_problem): the merge would report false missing and extra documents.

    No tiebreaker follows the key fields in the sort: every key this lets through sorts each
    value to a sort value of its own, and the primary key is unique, so no two documents we
    write share a sort position and search_after skips none. (A document indexed behind our
    back that repeats a key could tie; Elasticsearch refuses to sort on _id.)
    """
    problems = key_order_problems(bound.plan)
    if problems:
        raise UnorderedKeyError(
            f"spec '{bound.spec.name}': verify reads both sides in key order and cannot on "
            + "; ".join(problems)
            + " (it would report documents as missing and extra that are not)"
        )


def _epoch(text: str, unit: int) -> int:
    """An ISO timestamp or date (as documents carry them) in epoch `unit`s (1_000: ms, 10**9: ns)."""
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:  # a dead letter's key no document date holds: ±infinity, BC, after 9999
        return -math.inf if text.startswith("-") or text.endswith(" BC") else math.inf
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    delta = instant - EPOCH
    return (delta.days * 86_400 + delta.seconds) * unit + delta.microseconds * unit // 1_000_000


def sort_normaliser(bound: Bound, es_types: dict[str, str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """The merge key of a document as Elasticsearch reports its sort values: date fields sort as
    epoch milliseconds, date_nanos as epoch nanoseconds, everything else as the value itself."""
    units = {}
    for info in bound.plan.keys:
        name = bound.spec.field_name(info.name)
        if info.pg_type in ("timestamp", "timestamptz", "date"):
            units[name] = 10**9 if es_types.get(name) == "date_nanos" else 1_000
    names = bound.spec.key_fields

    def key(doc: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(_epoch(doc[n], units[n]) if n in units and doc[n] is not None else doc[n] for n in names)

    return key


def postgres_documents(
    engine: Engine, bound: Bound, page_size: int, sort_key: Callable[[dict[str, Any]], tuple[Any, ...]]
) -> Iterator[Keyed]:
    """Every live row of the source as the document it should be, in key order: by key ranges
    of `page_size` rows, each read in a transaction of its own."""
    for batch in iter_key_ranges(engine, bound.spec, bound.columns, page_size, bound.relations):
        docs = batch_to_documents(batch, bound.plan)
        expect_exact_numerics(batch, bound.plan, docs.documents)
        problems = docs.unrepresentable or [None] * len(docs)
        for doc_id, doc, deleted, problem in zip(
            docs.ids, docs.documents, docs.deleted, problems, strict=True
        ):
            if problem is not None:  # a dead letter (core/sql/poison.py), not drift
                yield sort_key(_keyed_by_id(doc, doc_id, bound)), doc_id, None
            elif not deleted:
                yield sort_key(doc), doc_id, doc


def _keyed_by_id(doc: dict[str, Any], doc_id: str, bound: Bound) -> dict[str, Any]:
    """A dead letter's key fields from its `_id` (the key's texts, core/sql/keys.py): a key value the
    read could not represent is NULL in its document, but its place in the merge is the row's."""
    texts = key_from_id(bound, doc_id)
    return {**doc, **{n: t for n, t in zip(bound.spec.key_fields, texts, strict=True) if doc.get(n) is None}}


# a 409 above "now" by no more than this is an edit made since our last read (an internal-version
# bump, say): one fresh transaction id moves the next snapshot above it
_NEAR_PRESENT = 2 * XIP_SLOTS


class BulkRepairs:
    """Repairs drifting documents in bounded batches while the merge runs.

    Each drifting document is re-synced from its row as it is *now* (not as the
    verify snapshot saw it), through the same path as the change buffer, with
    the version of the repair's own snapshot: so a write that landed during the
    verify is never replaced by an older copy, and an extra document whose row
    appeared meanwhile is indexed, not deleted. A document Elasticsearch holds at
    a version just above the present (edited behind our back) is repaired from a
    snapshot taken after one more transaction id; one held at a version from the
    future is left and counted as a conflict — forcing a version in would make
    every later write look stale.
    """

    def __init__(self, engine: Engine, es: SearchTarget, bound: Bound, batch_size: int = 500):
        self.engine, self.es, self.bound = engine, es, bound
        self.batch_size = batch_size
        self.pending: list[Key] = []
        self.totals = LoadTotals()

    def repair(self, doc_id: str) -> None:
        self.pending.append(key_from_id(self.bound, doc_id))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def _resync(self, keys: list[Key], number: int) -> BatchResult:
        # sent after the read's transaction ended: the body carries its snapshot's version, and
        # no snapshot waits on Elasticsearch
        with range_transaction(self.engine) as conn:
            body, rejected = resync_body(conn, self.bound, keys)
        result = BatchResult(batch=number) if body is None else send_resync(self.es, self.bound, body, number)
        result.rejected.extend(rejected)  # rows no document can carry: dead letters, never sent
        return result

    def flush(self) -> None:
        if not self.pending:
            return
        number = self.totals.batches + 1
        result = self._resync(self.pending, number)
        now = classify_stale(self.engine, result)
        if result.conflicts and now is not None:
            held = result.stale_versions
            near = {i for i in held if now < held[i] <= now + _NEAR_PRESENT}
            if near:
                burn_transaction_id(self.engine)
                keys = [k for k in self.pending if document_id(k, self.bound.plan.keys) in near]
                again = self._resync(keys, number)
                # what is still refused after the fresh read stays a conflict
                refused = again.stale_skipped + again.conflicts - len(near)
                written = Counts(indexed=again.indexed, deleted=again.deleted, failed=again.failed)
                result.answered += written + Counts(conflicts=refused)
                result.rejected += again.rejected
        self.totals.add(result)
        self.pending = []


def verify_spec(
    source: Engine | Connection,
    es: SearchTarget,
    spec: SyncSpec,
    page_size: int | None = None,
    fix: bool = False,
) -> VerifyReport:
    """Compare the spec's source and index; with `fix`, also repair every difference found.

    Repairs go to the index while the merge still reads it; search_after pages
    by key, so a repaired document behind the cursor is never read again. Every
    read takes a connection of its own from `source`'s engine (a connection
    passed in stays out of any transaction); a key range is at most `page_size`
    rows (default: PAGE_SIZE or the spec's batch_size, the smaller).
    """
    engine = source if isinstance(source, Engine) else source.engine
    page_size = page_size or min(PAGE_SIZE, spec.batch_size)
    bound = bind(engine, spec)
    check_key_order(bound)
    report = VerifyReport(spec=spec.name, index=spec.target.index)
    repairs = BulkRepairs(engine, es, bound) if fix else None
    if fix:
        # repairs written under a mapping that disagrees with the spec would be indexed wrongly
        # too: an in-place change is applied first, a conflict stops the fix (MappingConflict)
        reconcile_target(es, bound, engine)
    es_types: dict[str, str] = {}
    drift = mapping_drift(es, bound)
    if drift is not None:
        sources = field_sources(bound)
        report.mapping = [c.describe(sources) for c in (*drift[1].conflicts, *drift[1].additions)]
    if es.indices.exists(index=spec.target.index):
        es.indices.refresh(index=spec.target.index)
        es_types = field_types(es, spec.target.index)
        actual: Iterable[Keyed] = elasticsearch_documents(es, spec, page_size)
    else:
        actual = []  # every row is missing; still stream PostgreSQL to count them
    with engine.connect() as conn:
        dead = deadletters.doc_ids(conn, spec.name)
    expected = postgres_documents(engine, bound, page_size, sort_normaliser(bound, es_types))
    diff_sorted(expected, actual, report, repairs, dead)
    if es_types:  # the index exists: `_source` cannot show a multi-field its documents lack
        report.mapping += multi_field_gaps(es, spec, repairs.repair if repairs else None)
    if repairs:
        repairs.flush()
        report.repaired = repairs.totals
        es.indices.refresh(index=spec.target.index)
    return report


def postgres_window_documents(conn: Connection, bound: Bound, window: Window) -> Iterator[dict[str, Any]]:
    spec = bound.spec
    for batch in iter_pages(conn, spec, bound.columns, window, spec.batch_size, relations=bound.relations):
        docs = batch_to_documents(batch, bound.plan)
        expect_exact_numerics(batch, bound.plan, docs.documents)
        problems = docs.unrepresentable or [None] * len(docs)
        rows = zip(docs.documents, docs.deleted, problems, strict=True)
        # a row no document can carry is a dead letter: the index holds no document of it
        yield from (doc for doc, deleted, problem in rows if not deleted and problem is None)


def reconcile_window(
    conn: Connection, es: SearchTarget, spec: SyncSpec, window: Window, bound: Bound | None = None
) -> tuple[WindowDigest, WindowDigest]:
    """(PostgreSQL, Elasticsearch) digests of one updated_at window, for the per-partition check
    (`bound`: the spec's binding, when the run holds one already)."""
    bound = bound or bind(conn, spec)
    source = WindowDigest.of(postgres_window_documents(conn, bound, window))
    target = WindowDigest.of(window_documents(es, spec, window))
    return source, target


def count_window(
    conn: Connection, es: SearchTarget, spec: SyncSpec, window: Window, bound: Bound | None = None
) -> tuple[int, int]:
    """(PostgreSQL, Elasticsearch) live-document counts of one window: one count query per side."""
    bound = bound or bind(conn, spec)
    return count_window_rows(conn, spec, bound.columns, window), count_window_documents(es, spec, window)
