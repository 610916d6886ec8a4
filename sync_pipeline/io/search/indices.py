"""The search target: retries of transient errors, index creation and metadata, reading documents back.

Bulk requests and their per-batch accounting are io/bulk_load.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sync_pipeline.core.load.bulk import TRANSIENT_STATUS
from sync_pipeline.core.load.retry import DEFAULT_RETRY, RetryBudget, backoff_delay
from sync_pipeline.core.spec.model import RetrySpec, SyncSpec
from sync_pipeline.core.windows import Window, es_window_query
from sync_pipeline.io.search.errors import SearchApiError, SearchConnectionError, SearchConnectionTimeout
from sync_pipeline.io.search.port import SearchTarget

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, SearchConnectionError | SearchConnectionTimeout):
        return True
    return isinstance(exc, SearchApiError) and exc.status_code in TRANSIENT_STATUS


def with_backoff(
    call: Callable[[], T],
    policy: RetrySpec = DEFAULT_RETRY,
    *,
    budget: RetryBudget | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run `call`, retrying transient ES errors (429, 502-504, connection, timeout) up to the
    policy's attempts, within `budget` (a load's, shared with its other requests; none: the
    policy's total from now)."""
    budget = budget or RetryBudget.starting(policy, clock())
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == policy.attempts or not is_transient(exc):
                raise
            delay = backoff_delay(policy, attempt)
            if not budget.allows(delay, clock()):
                raise
            sleep(delay)
    raise AssertionError("unreachable")


# the key of sync_pipeline's own entry in an index's mapping `_meta` (other keys are the user's)
META_KEY = "sync_pipeline"


def ensure_index(
    es: SearchTarget,
    index: str,
    mappings: dict[str, Any],
    settings: dict[str, Any],
    meta: dict[str, Any] | None = None,
) -> bool:
    """Make `index` exist; True when created.

    A new target is created as the versioned index `<index>_v1` behind the
    alias `<index>` (its write index), so `rebuild` can later fill `<index>_v2`
    and swap the alias atomically while readers keep querying `<index>`. `meta` is sync_pipeline's
    entry in the new index's `_meta`, written with the index itself: an index is never ours
    without saying so, even when the run that created it dies the next moment.
    """
    if es.indices.exists(index=index):
        return False
    try:
        es.indices.create(
            index=f"{index}_v1",
            mappings={**mappings, "_meta": {META_KEY: meta}} if meta else mappings,
            settings=settings,
            aliases={index: {"is_write_index": True}},
        )
    except SearchApiError as exc:
        # another run created it between exists() and create()
        if exc.status_code == 400 and "resource_already_exists" in str(exc.body):
            return False
        raise
    return True


def backing_indices(es: SearchTarget, name: str) -> list[str]:
    """The concrete indices behind `name` (an alias, or an index of that name)."""
    if es.indices.exists_alias(name=name):
        return sorted(es.indices.get_alias(name=name))
    return [name] if es.indices.exists(index=name) else []


def drop_target(es: SearchTarget, name: str) -> list[str]:
    """Delete an alias's indices (or the index of that name); returns what was deleted."""
    indices = backing_indices(es, name)
    for index in indices:
        es.indices.delete(index=index, ignore_unavailable=True)
    return indices


def write_index(es: SearchTarget, alias: str) -> str | None:
    """The index that writes through `alias` reach: its write index, or its only index; None when
    `alias` is not an alias (absent, or a plain index of that name)."""
    if not es.indices.exists_alias(name=alias):
        return None
    found = es.indices.get_alias(name=alias).body
    for index, entry in sorted(found.items()):
        if entry.get("aliases", {}).get(alias, {}).get("is_write_index"):
            return index
    return next(iter(found)) if len(found) == 1 else None


def index_meta(es: SearchTarget, index: str) -> dict[str, Any]:
    """What sync_pipeline recorded in the mapping `_meta` of `index`; {} when nothing."""
    mappings = es.indices.get_mapping(index=index).body.get(index, {}).get("mappings", {})
    return dict((mappings.get("_meta") or {}).get(META_KEY) or {})


def record_index_meta(es: SearchTarget, index: str, entry: dict[str, Any]) -> None:
    """Replace sync_pipeline's entry in the `_meta` of an existing index, keeping other keys.

    A mapping update replaces `_meta` as a whole, hence the read first. Elasticsearch
    allows it on an index that is serving, and it changes nothing documents are indexed by.
    """
    mappings = es.indices.get_mapping(index=index).body.get(index, {}).get("mappings", {})
    others = {k: v for k, v in (mappings.get("_meta") or {}).items() if k != META_KEY}
    with_backoff(lambda: es.indices.put_mapping(index=index, meta={**others, META_KEY: entry}))


def update_index_meta(es: SearchTarget, index: str, key: str, change: Callable[[Any], Any]) -> None:
    """Replace one key of sync_pipeline's entry in the `_meta` of `index` by `change(its value
    now)` (None: remove it), the rest of the entry as the index holds it now: what a run records
    as it goes (a window's confirmed key ranges) must not undo what another run recorded meanwhile."""
    entry = index_meta(es, index)
    value = change(entry.get(key))
    if value is None:
        if key not in entry:
            return
        entry.pop(key)
    else:
        entry[key] = value
    record_index_meta(es, index, entry)


def delete_index(es: SearchTarget, index: str) -> None:
    es.indices.delete(index=index, ignore_unavailable=True)


# --- reading documents back (verify, reconcile) -------------------------------------------------

Keyed = tuple[tuple[Any, ...], str, dict[str, Any]]  # (sort key, _id, document)


def _sorted_hits(
    es: SearchTarget, spec: SyncSpec, query: dict[str, Any], page_size: int
) -> Iterator[dict[str, Any]]:
    """Every hit of `query`, sorted by the key fields, page by page with search_after."""
    # "_last" is where an ascending sort puts a document without the field anyway; named, it keeps
    # OpenSearch 3 from approximating the query (ApproximateMatchAllQuery and
    # ApproximatePointRangeQuery skip a sort that names `missing`). Its approximation of a query
    # sorted on a numeric field walks each segment's points of that field from the cursor on and
    # stops after about `size` of them, deleted documents' points counted: a segment holding a run
    # of deleted documents then gives none of the live ones after the run, a later segment fills
    # the page, and search_after moves past them unread (3.3.2: verify reported key 3000 missing
    # although the index held it; test_compatibility pins it). Elasticsearch and OpenSearch 2 sort
    # the same either way.
    sort = [{name: {"order": "asc", "missing": "_last"}} for name in spec.key_fields]
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


def field_types(es: SearchTarget, index: str) -> dict[str, str]:
    """Top-level field → mapping type of the index (its current backing index behind an alias)."""
    mappings = es.indices.get_mapping(index=index).body
    properties = next(iter(mappings.values()), {}).get("mappings", {}).get("properties", {})
    return {name: prop.get("type", "object") for name, prop in properties.items()}


def elasticsearch_documents(es: SearchTarget, spec: SyncSpec, page_size: int) -> Iterator[Keyed]:
    """Every document of the index, sorted by the key fields."""
    for hit in _sorted_hits(es, spec, {"match_all": {}}, page_size):
        yield tuple(hit["sort"]), hit["_id"], hit["_source"]


def window_documents(
    es: SearchTarget, spec: SyncSpec, window: Window, page_size: int = 2000
) -> Iterator[dict[str, Any]]:
    """The documents of one updated_at window."""
    query = es_window_query(spec.field_name(spec.source.updated_at), window)
    for hit in _sorted_hits(es, spec, query, page_size):
        yield hit["_source"]


def count_window_documents(es: SearchTarget, spec: SyncSpec, window: Window) -> int:
    query = es_window_query(spec.field_name(spec.source.updated_at), window)
    return int(es.count(index=spec.target.index, query=query)["count"])


def matching_ids(
    es: SearchTarget, spec: SyncSpec, query: dict[str, Any], page_size: int = 2000
) -> Iterator[str]:
    """The _id of every document `query` matches, in key order."""
    for hit in _sorted_hits(es, spec, query, page_size):
        yield hit["_id"]
