"""Documents → Elasticsearch: bulk requests and per-batch accounting.

Documents travel as bulk NDJSON bytes from the staged file to the request
body: nothing is parsed or re-serialised on the way, except the few documents
Elasticsearch refuses. Each body is one bulk call whose outcome is counted
(indexed, deleted, stale, failed, dead-lettered) so the run history shows
exactly what happened batch by batch; several bodies are in flight at once.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import orjson

from sync_pipeline.core.load.bulk import (
    FIRST_ERRORS,
    TRANSIENT_STATUS,
    BatchResult,
    BulkBody,
    Doc,
    LoadTotals,
    Rejected,
)
from sync_pipeline.core.load.counts import Counts
from sync_pipeline.core.load.retry import DEFAULT_RETRY, RetryBudget, backoff_delay
from sync_pipeline.core.spec.model import RetrySpec
from sync_pipeline.io.search import SearchApiError, SearchTarget
from sync_pipeline.io.search.indices import with_backoff

_HELD_VERSION = re.compile(r"current version \[(\d+)\]")


def _held_version(item: dict[str, Any]) -> int | None:
    """The version Elasticsearch holds, from a 409's reason ("current version [X] is higher…")."""
    error = item.get("error")
    match = _HELD_VERSION.search(str(error.get("reason") if isinstance(error, dict) else error))
    return int(match.group(1)) if match else None


def _error_summary(op: str, doc_id: str | None, item: dict[str, Any]) -> dict[str, Any]:
    error = item.get("error")
    reason = error.get("reason") if isinstance(error, dict) else error
    kind = error.get("type") if isinstance(error, dict) else None
    return {"op": op, "_id": doc_id, "status": item.get("status"), "type": kind, "reason": reason}


def _blocked(info: dict[str, Any]) -> bool:
    """A cluster or index block (the disk flood-stage watermark's read-only-allow-delete, a lost
    master, an operator's write block): the server lifts it without any change to the
    document, 429 or 403 depending on the version, so the document waits and retries; it
    never becomes a dead letter. Outliving the retries fails the run (and alerts)."""
    error = info.get("error")
    return isinstance(error, dict) and error.get("type") == "cluster_block_exception"


def _op_and_id(action: bytes) -> tuple[str, str | None]:
    op, meta = next(iter(orjson.loads(action).items()))
    return op, meta.get("_id")


def _rejected(doc: Doc, summary: dict[str, Any]) -> Rejected:
    op, doc_id = _op_and_id(doc[0])
    action: dict[str, Any] = {"_op_type": op, "_id": doc_id}
    if doc[1] is not None:
        try:
            action["_source"] = orjson.loads(doc[1])
        except orjson.JSONDecodeError as exc:  # nested too deep for any parser: the row still has it
            summary = {**summary, "source_not_kept": str(exc)}
    return Rejected(str(doc_id), action, summary)


INDEXED, DELETED, STALE = Counts(indexed=1), Counts(deleted=1), Counts(stale_skipped=1)

# only what the accounting reads: the error flag, and each item's status and error
_BULK_FILTER = "errors,items.*.status,items.*.error"


def send_body(
    es: SearchTarget,
    index: str,
    body: BulkBody,
    batch: int,
    retry: RetrySpec = DEFAULT_RETRY,
    *,
    budget: RetryBudget | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchResult:
    """Send one bulk body and account for every document in it.

    Items come back in request order, so each outcome maps to its document by
    position. Request-level transient errors retry the whole body; per-item
    429s/5xx retry just those documents, with the same backoff policy. What
    still fails after the retries counts as `failed` (the run must fail);
    a 409 is an older version than the index holds (`stale_skipped`); any
    other refusal is permanent and becomes a dead letter. Every retry draws on `budget` (the
    load's; none: the policy's total from now).
    """
    result = BatchResult(batch=batch)
    started = time.perf_counter()
    budget = budget or RetryBudget.starting(retry, time.monotonic())
    pending = list(range(len(body)))
    sending = body
    for attempt in range(1, retry.attempts + 1):
        try:
            response = with_backoff(
                lambda data=sending.data: (
                    es.bulk(operations=data, index=index, filter_path=_BULK_FILTER).body
                ),
                retry,
                budget=budget,
            )
        except SearchApiError as exc:
            if not _refused_for_a_document(exc):
                raise
            result.absorb(_bisect(es, index, sending, batch, budget, exc, sleep))
            break
        if not response.get("errors"):
            deletes = body.deletes(pending)
            result.answered += Counts(deleted=deletes, indexed=len(pending) - deletes)
            break
        retry_later: list[int] = []
        for i, item in zip(pending, response["items"], strict=True):
            info = next(iter(item.values()))
            status = info.get("status", 500)
            is_delete = body.is_delete(i)
            if "error" not in info or (is_delete and status == 404):
                # deleting an absent document is already the desired state
                result.answered += DELETED if is_delete else INDEXED
            elif status == 409:
                result.answered += STALE
                doc_id = str(_op_and_id(body.doc(i)[0])[1])
                result.stale_ids.append(doc_id)
                held = _held_version(info)
                if held is not None:
                    result.stale_versions[doc_id] = held
            elif status in TRANSIENT_STATUS or status >= 500 or _blocked(info):
                retry_later.append(i)
            else:
                doc = body.doc(i)
                op, doc_id = _op_and_id(doc[0])
                summary = _error_summary(op, doc_id, info)
                result.rejected.append(_rejected(doc, summary))
                if len(result.errors) < FIRST_ERRORS:
                    result.errors.append(summary)
        if not retry_later:
            break
        delay = backoff_delay(retry, attempt)
        if attempt == retry.attempts or not budget.allows(delay, time.monotonic()):
            result.answered += Counts(failed=len(retry_later))
            last = {i: next(iter(item.values())) for i, item in zip(pending, response["items"], strict=True)}
            for i in retry_later[: max(0, FIRST_ERRORS - len(result.errors))]:
                op, doc_id = _op_and_id(body.doc(i)[0])
                result.errors.append(_error_summary(op, doc_id, last[i]))
            break
        sleep(delay)
        pending = retry_later
        sending = body.subset(pending)
    result.seconds = time.perf_counter() - started
    return result


# what a whole request is refused with for what one of its documents holds (an `_id` over 512
# bytes, a body over http.max_content_length): never the index's or the cluster's state
_DOCUMENT_REFUSALS = frozenset({"action_request_validation_exception", "x_content_parse_exception"})


def _refused_for_a_document(exc: SearchApiError) -> bool:
    return exc.status_code == 413 or (exc.status_code == 400 and exc.error_type in _DOCUMENT_REFUSALS)


def _bisect(
    es: SearchTarget,
    index: str,
    body: BulkBody,
    batch: int,
    budget: RetryBudget,
    refusal: SearchApiError,
    sleep: Callable[[float], None],
) -> BatchResult:
    """A request refused as a whole for one document's sake: its halves go on their own until
    that document is alone and becomes a dead letter, so the rest lands and the claim or window
    moves on (about 2·log2(n) more requests per such document; none on the happy path)."""
    if len(body) > 1:
        result = BatchResult(batch=batch)
        for half in body.split(2):
            result.absorb(send_body(es, index, half, batch, budget.policy, budget=budget, sleep=sleep))
        return result
    doc = body.doc(0)
    op, doc_id = _op_and_id(doc[0])
    summary = {
        "op": op,
        "_id": doc_id,
        "status": refusal.status_code,
        "type": refusal.error_type,
        "reason": refusal.message[:1000],
    }
    return BatchResult(batch=batch, rejected=[_rejected(doc, summary)], errors=[summary])


# a part smaller than this is not worth a request of its own
MIN_PART_DOCS = 500


def send_split(
    es: SearchTarget,
    index: str,
    body: BulkBody,
    batch: int,
    retry: RetrySpec = DEFAULT_RETRY,
    concurrency: int = 1,
    *,
    budget: RetryBudget | None = None,
) -> BatchResult:
    """One batch sent as up to `concurrency` requests side by side, counted as one batch.

    A single bulk request to a one-shard index is indexed by one write thread,
    so a drain's batch sent whole keeps one of Elasticsearch's cores busy while
    the full sync keeps `bulk_concurrency` requests in flight. Each part has its
    own retries, all within `budget`; the batch fails if any part's documents do."""
    parts = min(max(1, concurrency), len(body) // MIN_PART_DOCS)
    if parts <= 1:
        return send_body(es, index, body, batch, retry, budget=budget)
    result = BatchResult(batch=batch)
    load_bulk(es, index, body.split(parts), parts, on_batch=result.absorb, retry=retry, budget=budget)
    return result


def load_bulk(
    es: SearchTarget,
    index: str,
    bodies: Iterable[BulkBody],
    concurrency: int = 1,
    on_batch: Callable[[BatchResult], None] | None = None,
    retry: RetrySpec = DEFAULT_RETRY,
    *,
    budget: RetryBudget | None = None,
) -> LoadTotals:
    """Send bodies with up to `concurrency` requests in flight; memory is about concurrency + 1 bodies.

    `on_batch` sees every result in body order, on the calling thread (it may
    write to PostgreSQL or log to Dagster). An exception from any request
    (retries exhausted at the request level) stops the load and propagates. Every request's
    retries draw on one budget, `retry.max_total_seconds` from the load's start (or `budget`).
    """
    budget = budget or RetryBudget.starting(retry, time.monotonic())
    totals = LoadTotals()
    started = time.perf_counter()

    def finish(result: BatchResult) -> None:
        totals.add(result)
        if on_batch is not None:
            on_batch(result)

    in_flight: deque[Future[BatchResult]] = deque()
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="bulk") as pool:
        try:
            for number, body in enumerate(bodies, start=1):
                if len(in_flight) >= max(1, concurrency):
                    finish(in_flight.popleft().result())
                in_flight.append(pool.submit(send_body, es, index, body, number, retry, budget=budget))
            while in_flight:
                finish(in_flight.popleft().result())
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
    totals.seconds = time.perf_counter() - started  # wall time: the bodies overlap
    return totals


@contextmanager
def bulk_indexing(
    es: SearchTarget, index: str, replicas: int, refresh_interval: str | None = None
) -> Iterator[None]:
    """Refresh off while a large load runs; afterwards, even on failure, every backing index gets
    back the refresh interval it had.

    The replicas are left alone: `index` is the alias readers and drains use, and a drain's
    write acknowledged by a shard with no replica is lost with its node, after the drain has
    deleted its buffer entry. Refresh off loses nothing acknowledged (the translog holds it).
    A refresh interval of -1 found at the start was left by a load that was killed before it
    could restore it, so it goes back to `refresh_interval` (the spec's; None: the default);
    0 replicas found with it were left by an older version's killed load, which lowered them,
    and go back to `replicas` (the spec's).
    """
    names = ["index.refresh_interval", "index.number_of_replicas"]
    restore: dict[str, dict[str, Any]] = {}
    for name, found in es.indices.get_settings(index=index, name=names).body.items():
        settings = found["settings"].get("index") or {}
        killed = settings.get("refresh_interval") == "-1"
        restore[name] = {"refresh_interval": refresh_interval if killed else settings.get("refresh_interval")}
        if killed and settings.get("number_of_replicas") == "0":
            restore[name]["number_of_replicas"] = replicas
    es.indices.put_settings(index=index, settings={"index": {"refresh_interval": "-1"}})
    try:
        yield
    finally:
        for name, settings in restore.items():
            es.indices.put_settings(index=name, settings={"index": settings})
