"""Bring specific documents in line with their rows: the shared step behind the
change-buffer drain, `verify --fix` and dead-letter replay.

Rows are re-read *now*, so whatever happened to them in between (several
updates, a delete, a soft delete) collapses into their current state. The
caller's connection must be in a REPEATABLE READ transaction: the rows found,
the keys found missing (deletes) and the version they are written with all
come from that one snapshot (core/sql/versions.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.documents.build import batch_to_bulk, document_ids
from sync_pipeline.core.load.bulk import BatchResult, BulkBody, Rejected, action_line, rebody
from sync_pipeline.core.load.retry import RetryBudget
from sync_pipeline.core.sql.keys import document_id, texts_from_id
from sync_pipeline.core.sql.poison import MAX_ID_BYTES
from sync_pipeline.io.bulk_load import send_split
from sync_pipeline.io.postgres import fetch_keys, snapshot_version
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.ops.binding import Bound

Key = tuple[str, ...]  # canonical key texts (core/sql/keys.py)


def key_from_id(bound: Bound, doc_id: str) -> Key:
    """The canonical key texts of a document id (inverse of core.sql.keys.document_id)."""
    return tuple(texts_from_id(doc_id, len(bound.plan.keys)))


def resync_keys(
    conn: Connection,
    es: SearchTarget,
    bound: Bound,
    keys: Sequence[Key],
    batch_number: int = 1,
) -> BatchResult:
    """Index the current row of every key that still exists; delete the others — all with the
    version of the connection's snapshot, so a slower writer holding an older read can neither
    replace nor resurrect them."""
    body, rejected = resync_body(conn, bound, keys)
    result = BatchResult(batch=batch_number) if body is None else send_resync(es, bound, body, batch_number)
    result.rejected.extend(rejected)
    return result


def resync_body(
    conn: Connection, bound: Bound, keys: Sequence[Key]
) -> tuple[BulkBody | None, tuple[Rejected, ...]]:
    """The bulk body that brings `keys` in line with the connection's snapshot (None: nothing
    to send), and the rows no document can carry (core/sql/poison.py: dead letters, never sent, and
    never deleted either, since their rows exist); sending the body is `send_resync`, which a
    drain does while it reads the next keys."""
    batch = fetch_keys(conn, bound.spec, bound.columns, keys, bound.relations)
    # documents assembled by the full sync's own Arrow kernels (core/documents/build.batch_to_bulk), with
    # the version column every read carries: in this transaction, the snapshot's version
    chunk = batch_to_bulk(batch, bound.plan)
    present = set(document_ids(batch, bound.plan))
    gone = [document_id(key, bound.plan.keys) for key in keys]
    # an `_id` too long to index was never indexed (and would fail the whole request)
    gone = [i for i in dict.fromkeys(gone) if i not in present and len(i.encode()) <= MAX_ID_BYTES]
    if not gone and not chunk.docs:
        return None, chunk.rejected
    body = chunk.body
    if gone:
        version = snapshot_version(conn)
        deletes = BulkBody.join(action_line("delete", doc_id, version) for doc_id in gone)
        body = BulkBody.concat(body, deletes) if chunk.docs else deletes
    return body, chunk.rejected


def send_resync(es: SearchTarget, bound: Bound, body: BulkBody, batch_number: int) -> BatchResult:
    """One counted batch, in requests cut at the spec's `bulk_max_mb` as the full sync's are: a
    fan-out of large documents would otherwise make one request of any size. The batch's
    requests retry within one `retry.max_total_seconds`."""
    spec, target = bound.spec, bound.spec.target
    budget = RetryBudget.starting(spec.retry, time.monotonic())
    pieces = list(rebody([body], max(len(body), spec.batch_size), target.bulk_max_bytes))
    sent = [
        send_split(es, target.index, piece, batch_number, spec.retry, target.bulk_concurrency, budget=budget)
        for piece in pieces
    ]
    if len(sent) == 1:
        return sent[0]
    result = BatchResult(batch=batch_number)
    for part in sent:
        result.absorb(part)
    return result


def classify_stale(engine: Engine, result: BatchResult) -> int | None:
    """After a write from the newest read, a 409 is only an older read's if what Elasticsearch
    holds is no newer than a snapshot taken now; anything above that no read of ours wrote, so
    the sides disagree (a conflict: counted apart, failing the run's check). Returns the version
    of that snapshot (None: nothing was refused, none was taken)."""
    if not result.stale_ids:
        return None
    with engine.connect() as conn:
        now = snapshot_version(conn)
        conn.commit()
    beyond = {i for i in result.stale_ids if result.stale_versions.get(i, now + 1) > now}
    result.mark_conflicts(beyond)
    return now
