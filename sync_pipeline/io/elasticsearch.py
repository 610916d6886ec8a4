"""Documents → Elasticsearch: index creation, bulk requests, per-batch accounting.

Documents travel as bulk NDJSON bytes from the staged file to the request
body: nothing is parsed or re-serialised on the way, except the few documents
Elasticsearch refuses. Each body is one bulk call whose outcome is counted
(indexed, deleted, stale, failed, dead-lettered) so the run history shows
exactly what happened batch by batch; several bodies are in flight at once.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import orjson
from elasticsearch import ApiError, Elasticsearch
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch import ConnectionTimeout as ESConnectionTimeout

from sync_pipeline.core.documents import BulkBody, Doc, action_line
from sync_pipeline.core.specs import SyncSpec

T = TypeVar("T")

TRANSIENT_STATUS = {429, 502, 503, 504}


@dataclass
class Rejected:
    """A document Elasticsearch refused for good (mapping/parse errors, too large)."""

    doc_id: str
    action: dict[str, Any]
    error: dict[str, Any]


@dataclass
class BatchResult:
    batch: int
    indexed: int = 0
    deleted: int = 0
    stale_skipped: int = 0  # ES already holds a newer version: not a failure, and counted
    stale_ids: list[str] = field(default_factory=list)
    failed: int = 0  # transient failures that outlived the retries: the run must fail
    rejected: list[Rejected] = field(default_factory=list)  # permanent: for the dead-letter table
    seconds: float = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)  # first few, for the report

    @property
    def dead_lettered(self) -> int:
        return len(self.rejected)

    @property
    def docs(self) -> int:
        return self.indexed + self.deleted + self.stale_skipped + self.failed + self.dead_lettered

    @property
    def docs_per_second(self) -> float:
        return self.docs / self.seconds if self.seconds > 0 else 0.0


@dataclass
class LoadTotals:
    batches: int = 0
    indexed: int = 0
    deleted: int = 0
    stale_skipped: int = 0
    failed: int = 0
    dead_lettered: int = 0
    seconds: float = 0.0
    first_errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def docs(self) -> int:
        return self.indexed + self.deleted + self.stale_skipped + self.failed + self.dead_lettered

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        self.indexed += result.indexed
        self.deleted += result.deleted
        self.stale_skipped += result.stale_skipped
        self.failed += result.failed
        self.dead_lettered += result.dead_lettered
        self.seconds += result.seconds
        if len(self.first_errors) < 5:
            self.first_errors.extend(result.errors[: 5 - len(self.first_errors)])


DEFAULT_BODY_BYTES = 5 * 1024 * 1024


def iter_bodies(
    lines: Iterable[bytes], max_docs: int, max_bytes: int = DEFAULT_BODY_BYTES
) -> Iterator[BulkBody]:
    """Group bulk NDJSON lines (a staged file) into bodies of at most `max_docs` documents and
    about `max_bytes` (a single larger document still gets a body of its own)."""
    docs: list[bytes] = []
    size = 0
    iterator = iter(lines)
    for line in iterator:
        if not line.strip():
            continue
        doc = line
        if not line.startswith(b'{"delete"'):
            source = next(iterator, None)
            if source is None:
                raise ValueError(f"staged documents end in an action line without its source: {line[:200]!r}")
            doc = line + source
        if docs and (len(docs) >= max_docs or size + len(doc) > max_bytes):
            yield BulkBody.join(docs)
            docs, size = [], 0
        docs.append(doc)
        size += len(doc)
    if docs:
        yield BulkBody.join(docs)


def rebody(
    bodies: Iterable[BulkBody], max_docs: int, max_bytes: int = DEFAULT_BODY_BYTES
) -> Iterator[BulkBody]:
    """Bodies within the request limits pass untouched (no copy); larger ones are cut."""
    for body in bodies:
        if len(body) <= max_docs and len(body.data) <= max_bytes:
            yield body
            continue
        pending: list[bytes] = []
        size = 0
        for i in range(len(body)):
            doc = body.data[body.starts[i] : body.starts[i + 1]]
            if pending and (len(pending) >= max_docs or size + len(doc) > max_bytes):
                yield BulkBody.join(pending)
                pending, size = [], 0
            pending.append(doc)
            size += len(doc)
        if pending:
            yield BulkBody.join(pending)


def staged_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from handle


def entry_doc(entry: dict[str, Any]) -> bytes:
    """A document given as {"_id", "_op", "_version"?, "_source"?} → its bulk lines."""
    action = action_line(entry["_op"], entry["_id"], entry.get("_version"))
    if entry["_op"] == "delete":
        return action
    return action + orjson.dumps(entry["_source"], option=orjson.OPT_APPEND_NEWLINE)


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ESConnectionError | ESConnectionTimeout):
        return True
    return isinstance(exc, ApiError) and exc.status_code in TRANSIENT_STATUS


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped in attempts and in total time."""

    attempts: int = 8
    base_seconds: float = 0.5
    cap_seconds: float = 30.0
    max_total_seconds: float = 300.0


def with_backoff(
    call: Callable[[], T],
    policy: RetryPolicy = RetryPolicy(),
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run `call`, retrying transient ES errors (429, 502-504, connection, timeout)."""
    deadline = clock() + policy.max_total_seconds
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == policy.attempts or not is_transient(exc):
                raise
            delay = random.uniform(0, min(policy.cap_seconds, policy.base_seconds * 2 ** (attempt - 1)))
            if clock() + delay > deadline:
                raise
            sleep(delay)
    raise AssertionError("unreachable")


def ensure_index(es: Elasticsearch, index: str, mappings: dict[str, Any], settings: dict[str, Any]) -> bool:
    """Make `index` exist; True when created.

    A new target is created as the versioned index `<index>_v1` behind the
    alias `<index>` (its write index), so `rebuild` can later fill `<index>_v2`
    and swap the alias atomically while readers keep querying `<index>`.
    """
    if es.indices.exists(index=index):
        return False
    try:
        es.indices.create(
            index=f"{index}_v1",
            mappings=mappings,
            settings=settings,
            aliases={index: {"is_write_index": True}},
        )
    except ApiError as exc:
        # another run created it between exists() and create()
        if exc.status_code == 400 and "resource_already_exists" in str(exc.body):
            return False
        raise
    return True


def backing_indices(es: Elasticsearch, name: str) -> list[str]:
    """The concrete indices behind `name` (an alias, or an index of that name)."""
    if es.indices.exists_alias(name=name):
        return sorted(es.indices.get_alias(name=name))
    return [name] if es.indices.exists(index=name) else []


def drop_target(es: Elasticsearch, name: str) -> list[str]:
    """Delete an alias's indices (or the index of that name); returns what was deleted."""
    indices = backing_indices(es, name)
    for index in indices:
        es.indices.delete(index=index, ignore_unavailable=True)
    return indices


def _error_summary(op: str, doc_id: str | None, item: dict[str, Any]) -> dict[str, Any]:
    error = item.get("error")
    reason = error.get("reason") if isinstance(error, dict) else error
    kind = error.get("type") if isinstance(error, dict) else None
    return {"op": op, "_id": doc_id, "status": item.get("status"), "type": kind, "reason": reason}


def _op_and_id(action: bytes) -> tuple[str, str | None]:
    op, meta = next(iter(orjson.loads(action).items()))
    return op, meta.get("_id")


def _rejected(doc: Doc, summary: dict[str, Any]) -> Rejected:
    op, doc_id = _op_and_id(doc[0])
    action: dict[str, Any] = {"_op_type": op, "_id": doc_id}
    if doc[1] is not None:
        action["_source"] = orjson.loads(doc[1])
    return Rejected(str(doc_id), action, summary)


# only what the accounting reads: the error flag, and each item's status and error
_BULK_FILTER = "errors,items.*.status,items.*.error"


def send_body(
    es: Elasticsearch,
    index: str,
    body: BulkBody,
    batch: int,
    retry: RetryPolicy = RetryPolicy(),
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchResult:
    """Send one bulk body and account for every document in it.

    Items come back in request order, so each outcome maps to its document by
    position. Request-level transient errors retry the whole body; per-item
    429s/5xx retry just those documents, with the same backoff policy. What
    still fails after the retries counts as `failed` (the run must fail);
    a 409 is an older version than the index holds (`stale_skipped`); any
    other refusal is permanent and becomes a dead letter.
    """
    result = BatchResult(batch=batch)
    started = time.perf_counter()
    deadline = time.monotonic() + retry.max_total_seconds
    pending = list(range(len(body)))
    sending = body
    for attempt in range(1, retry.attempts + 1):
        response = with_backoff(
            lambda data=sending.data: es.bulk(operations=data, index=index, filter_path=_BULK_FILTER).body,
            retry,
        )
        if not response.get("errors"):
            deletes = body.deletes(pending)
            result.deleted += deletes
            result.indexed += len(pending) - deletes
            break
        retry_later: list[int] = []
        for i, item in zip(pending, response["items"], strict=True):
            info = next(iter(item.values()))
            status = info.get("status", 500)
            is_delete = body.is_delete(i)
            if "error" not in info or (is_delete and status == 404):
                # deleting an absent document is already the desired state
                if is_delete:
                    result.deleted += 1
                else:
                    result.indexed += 1
            elif status == 409:
                result.stale_skipped += 1
                result.stale_ids.append(str(_op_and_id(body.doc(i)[0])[1]))
            elif status in TRANSIENT_STATUS or status >= 500:
                retry_later.append(i)
            else:
                doc = body.doc(i)
                op, doc_id = _op_and_id(doc[0])
                summary = _error_summary(op, doc_id, info)
                result.rejected.append(_rejected(doc, summary))
                if len(result.errors) < 5:
                    result.errors.append(summary)
        if not retry_later:
            break
        delay = random.uniform(0, min(retry.cap_seconds, retry.base_seconds * 2 ** (attempt - 1)))
        if attempt == retry.attempts or time.monotonic() + delay > deadline:
            result.failed += len(retry_later)
            last = {i: next(iter(item.values())) for i, item in zip(pending, response["items"], strict=True)}
            for i in retry_later[: max(0, 5 - len(result.errors))]:
                op, doc_id = _op_and_id(body.doc(i)[0])
                result.errors.append(_error_summary(op, doc_id, last[i]))
            break
        sleep(delay)
        pending = retry_later
        sending = body.subset(pending)
    result.seconds = time.perf_counter() - started
    return result


def load_bulk(
    es: Elasticsearch,
    index: str,
    bodies: Iterable[BulkBody],
    concurrency: int = 1,
    on_batch: Callable[[BatchResult], None] | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> LoadTotals:
    """Send bodies with up to `concurrency` requests in flight; memory is about concurrency + 1 bodies.

    `on_batch` sees every result in body order, on the calling thread (it may
    write to PostgreSQL or log to Dagster). An exception from any request
    (retries exhausted at the request level) stops the load and propagates.
    """
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
                in_flight.append(pool.submit(send_body, es, index, body, number, retry))
            while in_flight:
                finish(in_flight.popleft().result())
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
    totals.seconds = time.perf_counter() - started  # wall time: the bodies overlap
    return totals


def load_documents(
    es: Elasticsearch,
    index: str,
    entries: Iterable[dict[str, Any]],
    batch_size: int,
    on_batch: Callable[[BatchResult], None] | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> LoadTotals:
    """Documents given as {"_id", "_op", "_version"?, "_source"?} dicts, one body at a time."""
    bodies = (BulkBody.join(chunk) for chunk in chunked(map(entry_doc, entries), batch_size))
    return load_bulk(es, index, bodies, 1, on_batch, retry)


@contextmanager
def bulk_indexing(es: Elasticsearch, index: str, replicas: int) -> Iterator[None]:
    """Refresh off and no replicas while a large load runs; restored afterwards, even on failure.

    A refresh interval of -1 found at the start was left by a load that was
    killed before it could restore it, so it is restored to the default.
    """
    current = es.indices.get_settings(index=index, name="index.refresh_interval")
    intervals = {(v["settings"].get("index") or {}).get("refresh_interval") for v in current.body.values()}
    intervals.discard("-1")
    restore = intervals.pop() if len(intervals) == 1 else None
    es.indices.put_settings(
        index=index, settings={"index": {"refresh_interval": "-1", "number_of_replicas": 0}}
    )
    try:
        yield
    finally:
        es.indices.put_settings(
            index=index, settings={"index": {"refresh_interval": restore, "number_of_replicas": replicas}}
        )


def retry_policy(spec: SyncSpec) -> RetryPolicy:
    r = spec.retry
    return RetryPolicy(r.attempts, r.initial_seconds, r.max_backoff_seconds, r.max_total_seconds)
