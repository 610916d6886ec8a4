"""Documents → Elasticsearch: index creation, bulk actions, per-batch accounting.

Each batch becomes one bulk call whose outcome is counted (indexed, deleted,
failed) so the run history shows exactly what happened batch by batch.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import orjson
from elasticsearch import ApiError, Elasticsearch, helpers
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch import ConnectionTimeout as ESConnectionTimeout

from .specs import SyncSpec

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


def bulk_action(index: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A staged document line → a bulk action for elasticsearch-py's helpers.

    Versions are external_gte: re-sending the same version is an idempotent
    no-op success, while an older version (a backfill racing an incremental
    sync) is refused with a 409 that we count as stale_skipped.
    """
    action: dict[str, Any] = {"_op_type": entry["_op"], "_index": index, "_id": entry["_id"]}
    if "_version" in entry:
        action["version"] = entry["_version"]
        action["version_type"] = "external_gte"
    if entry["_op"] != "delete":
        action["_source"] = entry["_source"]
    return action


def read_staged_documents(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield orjson.loads(line)


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


def _error_summary(op: str, item: dict[str, Any]) -> dict[str, Any]:
    error = item.get("error")
    reason = error.get("reason") if isinstance(error, dict) else error
    kind = error.get("type") if isinstance(error, dict) else None
    return {"op": op, "_id": item.get("_id"), "status": item.get("status"), "type": kind, "reason": reason}


def bulk_batch(
    es: Elasticsearch, actions: list[dict[str, Any]], batch: int, retry: RetryPolicy = RetryPolicy()
) -> BatchResult:
    """Send one batch; per-item 429s and transient request errors are retried."""
    result = BatchResult(batch=batch)
    started = time.perf_counter()

    def send() -> list[tuple[bool, dict[str, Any]]]:
        return list(
            helpers.streaming_bulk(
                es,
                actions,
                chunk_size=len(actions),
                max_chunk_bytes=50 * 1024 * 1024,
                raise_on_error=False,  # count failures instead of aborting the batch
                max_retries=retry.attempts,  # per-item 429s (retried only with raise_on_error=False)
                initial_backoff=retry.base_seconds,
                max_backoff=retry.cap_seconds,
            )
        )

    by_id = {a["_id"]: a for a in actions}
    for ok, item in with_backoff(send, retry):
        op, info = next(iter(item.items()))
        status = info.get("status", 500)
        if op == "delete" and (ok or status == 404):
            result.deleted += 1  # deleting an absent doc is already the desired state
        elif ok:
            result.indexed += 1
        elif status == 409:
            result.stale_skipped += 1
            result.stale_ids.append(str(info.get("_id")))
        else:
            summary = _error_summary(op, info)
            if status in TRANSIENT_STATUS or status >= 500:
                result.failed += 1
            else:
                result.rejected.append(
                    Rejected(str(info.get("_id")), by_id.get(info.get("_id"), {}), summary)
                )
            if len(result.errors) < 5:
                result.errors.append(summary)
    result.seconds = time.perf_counter() - started
    return result


def load_documents(
    es: Elasticsearch,
    index: str,
    entries: Iterable[dict[str, Any]],
    batch_size: int,
    on_batch: Callable[[BatchResult], None] | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> LoadTotals:
    totals = LoadTotals()
    actions = (bulk_action(index, entry) for entry in entries)
    for number, chunk in enumerate(chunked(actions, batch_size), start=1):
        result = bulk_batch(es, chunk, number, retry)
        totals.add(result)
        if on_batch is not None:
            on_batch(result)
    return totals


def retry_policy(spec: SyncSpec) -> RetryPolicy:
    r = spec.retry
    return RetryPolicy(r.attempts, r.initial_seconds, r.max_backoff_seconds, r.max_total_seconds)
