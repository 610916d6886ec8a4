"""Documents → Elasticsearch: index creation, bulk requests, per-batch accounting.

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
from typing import Any, TypeVar

import orjson
from elasticsearch import ApiError, Elasticsearch
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch import ConnectionTimeout as ESConnectionTimeout

from sync_pipeline.core.bulk import (
    DEFAULT_RETRY,
    TRANSIENT_STATUS,
    BatchResult,
    BulkBody,
    Doc,
    LoadTotals,
    Rejected,
    RetryPolicy,
    backoff_delay,
)
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.core.windows import Window, es_window_query

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ESConnectionError | ESConnectionTimeout):
        return True
    return isinstance(exc, ApiError) and exc.status_code in TRANSIENT_STATUS


def with_backoff(
    call: Callable[[], T],
    policy: RetryPolicy = DEFAULT_RETRY,
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
            delay = backoff_delay(policy, attempt)
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


def write_index(es: Elasticsearch, alias: str) -> str | None:
    """The index that writes through `alias` reach: its write index, or its only index; None when
    `alias` is not an alias (absent, or a plain index of that name)."""
    if not es.indices.exists_alias(name=alias):
        return None
    found = es.indices.get_alias(name=alias).body
    for index, entry in sorted(found.items()):
        if entry.get("aliases", {}).get(alias, {}).get("is_write_index"):
            return index
    return next(iter(found)) if len(found) == 1 else None


# the key of sync_pipeline's own entry in an index's mapping `_meta` (other keys are the user's)
META_KEY = "sync_pipeline"


def index_meta(es: Elasticsearch, index: str) -> dict[str, Any]:
    """What sync_pipeline recorded in the mapping `_meta` of `index`; {} when nothing."""
    mappings = es.indices.get_mapping(index=index).body.get(index, {}).get("mappings", {})
    return dict((mappings.get("_meta") or {}).get(META_KEY) or {})


def record_index_meta(es: Elasticsearch, index: str, entry: dict[str, Any]) -> None:
    """Replace sync_pipeline's entry in the `_meta` of an existing index, keeping other keys.

    A mapping update replaces `_meta` as a whole, hence the read first. Elasticsearch
    allows it on an index that is serving, and it changes nothing documents are indexed by.
    """
    mappings = es.indices.get_mapping(index=index).body.get(index, {}).get("mappings", {})
    others = {k: v for k, v in (mappings.get("_meta") or {}).items() if k != META_KEY}
    with_backoff(lambda: es.indices.put_mapping(index=index, meta={**others, META_KEY: entry}))


def delete_index(es: Elasticsearch, index: str) -> None:
    es.indices.delete(index=index, ignore_unavailable=True)


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
    master, an operator's write block): Elasticsearch lifts it without any change to the
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
        action["_source"] = orjson.loads(doc[1])
    return Rejected(str(doc_id), action, summary)


# only what the accounting reads: the error flag, and each item's status and error
_BULK_FILTER = "errors,items.*.status,items.*.error"


def send_body(
    es: Elasticsearch,
    index: str,
    body: BulkBody,
    batch: int,
    retry: RetryPolicy = DEFAULT_RETRY,
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
                if len(result.errors) < 5:
                    result.errors.append(summary)
        if not retry_later:
            break
        delay = backoff_delay(retry, attempt)
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


# a part smaller than this is not worth a request of its own
MIN_PART_DOCS = 500


def send_split(
    es: Elasticsearch,
    index: str,
    body: BulkBody,
    batch: int,
    retry: RetryPolicy = DEFAULT_RETRY,
    concurrency: int = 1,
) -> BatchResult:
    """One batch sent as up to `concurrency` requests side by side, counted as one batch.

    A single bulk request to a one-shard index is indexed by one write thread,
    so a drain's batch sent whole keeps one of Elasticsearch's cores busy while
    the full sync keeps `bulk_concurrency` requests in flight. Each part has its
    own retries; the batch fails if any part's documents do."""
    parts = min(max(1, concurrency), len(body) // MIN_PART_DOCS)
    if parts <= 1:
        return send_body(es, index, body, batch, retry)
    result = BatchResult(batch=batch)
    load_bulk(es, index, body.split(parts), parts, on_batch=result.absorb, retry=retry)
    return result


def load_bulk(
    es: Elasticsearch,
    index: str,
    bodies: Iterable[BulkBody],
    concurrency: int = 1,
    on_batch: Callable[[BatchResult], None] | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
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


@contextmanager
def bulk_indexing(
    es: Elasticsearch, index: str, replicas: int, refresh_interval: str | None = None
) -> Iterator[None]:
    """Refresh off and no replicas while a large load runs; afterwards, even on failure, every
    backing index gets back the refresh interval and the replica count it had.

    The replicas are the operator's to set (more for search load, say): a load only borrows
    them. A refresh interval of -1 found at the start was left by a load that was killed before
    it could restore it, so it goes back to `refresh_interval` (the spec's; None: the default),
    and the 0 replicas that load left go back to `replicas` (the spec's).
    """
    names = ["index.refresh_interval", "index.number_of_replicas"]
    restore: dict[str, dict[str, Any]] = {}
    for name, found in es.indices.get_settings(index=index, name=names).body.items():
        settings = found["settings"].get("index") or {}
        killed = settings.get("refresh_interval") == "-1"
        kept = settings.get("number_of_replicas")
        restore[name] = {
            "refresh_interval": refresh_interval if killed else settings.get("refresh_interval"),
            "number_of_replicas": replicas if kept is None or (killed and kept == "0") else int(kept),
        }
    es.indices.put_settings(
        index=index, settings={"index": {"refresh_interval": "-1", "number_of_replicas": 0}}
    )
    try:
        yield
    finally:
        for name, settings in restore.items():
            es.indices.put_settings(index=name, settings={"index": settings})


# --- reading documents back (verify, reconcile) -------------------------------------------------

Keyed = tuple[tuple[Any, ...], str, dict[str, Any]]  # (sort key, _id, document)


def _sorted_hits(
    es: Elasticsearch, spec: SyncSpec, query: dict[str, Any], page_size: int
) -> Iterator[dict[str, Any]]:
    """Every hit of `query`, sorted by the key fields, page by page with search_after."""
    sort = [{name: {"order": "asc"}} for name in spec.key_fields]
    after: list[Any] | None = None
    while True:
        hits = es.search(
            index=spec.target.index,
            size=page_size,
            sort=sort,
            search_after=after,
            track_total_hits=False,
            query=query,
        )["hits"]["hits"]
        if not hits:
            return
        yield from hits
        after = hits[-1]["sort"]


def field_types(es: Elasticsearch, index: str) -> dict[str, str]:
    """Top-level field → mapping type of the index (its current backing index behind an alias)."""
    mappings = es.indices.get_mapping(index=index).body
    properties = next(iter(mappings.values()), {}).get("mappings", {}).get("properties", {})
    return {name: prop.get("type", "object") for name, prop in properties.items()}


def elasticsearch_documents(es: Elasticsearch, spec: SyncSpec, page_size: int) -> Iterator[Keyed]:
    """Every document of the index, sorted by the key fields."""
    for hit in _sorted_hits(es, spec, {"match_all": {}}, page_size):
        yield tuple(hit["sort"]), hit["_id"], hit["_source"]


def window_documents(
    es: Elasticsearch, spec: SyncSpec, window: Window, page_size: int = 2000
) -> Iterator[dict[str, Any]]:
    """The documents of one updated_at window."""
    query = es_window_query(spec.field_name(spec.source.updated_at), window)
    for hit in _sorted_hits(es, spec, query, page_size):
        yield hit["_source"]


def count_window_documents(es: Elasticsearch, spec: SyncSpec, window: Window) -> int:
    query = es_window_query(spec.field_name(spec.source.updated_at), window)
    return int(es.count(index=spec.target.index, query=query)["count"])
