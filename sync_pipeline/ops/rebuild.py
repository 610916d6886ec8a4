"""Zero-downtime rebuild: fill a new versioned index, verify it, swap the read alias.

Readers always query the alias (`target.index`). A rebuild creates
`<index>_v<N+1>` with the current mapping, streams every live row into it,
repairs it against PostgreSQL (`verify --fix`, which also applies every change
made during the fill — hard deletes included), and swaps the alias in one
atomic `_aliases` call. Writes made between that repair and the swap went to
the old index, so a second repair pass runs on the alias right after the swap:
no change is lost. The old index stays for `--rollback`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from elasticsearch import Elasticsearch
from sqlalchemy.engine import Engine

from sync_pipeline.core.bulk import BatchResult, LoadTotals, rebody, retry_policy
from sync_pipeline.core.diff import VerifyReport
from sync_pipeline.core.documents import batch_to_bulk, index_mapping, index_settings
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.io.elasticsearch import backing_indices, load_bulk
from sync_pipeline.io.postgres import iter_pages
from sync_pipeline.ops.binding import bind
from sync_pipeline.ops.verify import verify_spec


class RebuildError(RuntimeError):
    """The new index did not verify; the alias was not touched."""


@dataclass
class RebuildReport:
    spec: str
    alias: str
    old_indices: list[str]
    new_index: str
    filled: LoadTotals
    before_swap: VerifyReport
    after_swap: VerifyReport
    seconds: float


def versioned_name(alias: str, existing: list[str]) -> str:
    """The next `<alias>_v<N>` after every existing version."""
    pattern = re.compile(rf"^{re.escape(alias)}_v(\d+)$")
    versions = [int(m.group(1)) for name in existing if (m := pattern.match(name))]
    return f"{alias}_v{max(versions, default=0) + 1}"


def fill_index(
    engine: Engine,
    es: Elasticsearch,
    spec: SyncSpec,
    index: str,
    on_batch: Callable[[BatchResult], None] | None = None,
) -> LoadTotals:
    """Stream every live row, in key order, into `index` (memory: one batch)."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        bound = bind(conn, spec)
        pages = iter_pages(
            conn, spec, bound.columns, None, spec.batch_size, modes=["by_key"], relations=bound.relations
        )
        # soft-deleted rows are simply not written into the new index
        bodies = (batch_to_bulk(page, bound.plan, include_deletes=False).body for page in pages)
        return load_bulk(
            es,
            index,
            rebody(bodies, spec.batch_size, spec.target.bulk_max_bytes),
            spec.target.bulk_concurrency,
            on_batch,
            retry_policy(spec),
        )


def rebuild(
    engine: Engine, es: Elasticsearch, spec: SyncSpec, on_batch: Callable[[BatchResult], None] | None = None
) -> RebuildReport:
    started = time.perf_counter()
    alias = spec.target.index
    old = backing_indices(es, alias)
    existing = sorted(es.indices.get(index=f"{alias}_v*", allow_no_indices=True, expand_wildcards="all"))
    new = versioned_name(alias, existing)
    plan = bind(engine, spec).plan
    es.indices.create(index=new, mappings=index_mapping(plan), settings=index_settings(spec))
    building = spec.model_copy(update={"target": spec.target.model_copy(update={"index": new})})
    filled = fill_index(engine, es, building, new, on_batch)
    if filled.failed:
        raise RebuildError(f"{filled.failed} documents did not reach {new}; the alias still points at {old}")
    before = converge(engine, es, building)
    if not acceptable(before):
        raise RebuildError(f"{new} did not verify ({'; '.join(before.lines())}); the alias was not moved")
    swap_alias(es, alias, old, new)
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        after = verify_spec(conn, es, spec, fix=True)  # writes made to the old index before the swap
    return RebuildReport(spec.name, alias, old, new, filled, before, after, time.perf_counter() - started)


def acceptable(report: VerifyReport) -> bool:
    """Drift left by writes racing the last repair pass is small and repaired after the swap;
    anything more means the new index is broken (a mapping that refuses documents, say)."""
    return report.drift <= max(10, report.pg_count // 100)


def converge(engine: Engine, es: Elasticsearch, spec: SyncSpec, passes: int = 6) -> VerifyReport:
    """Repair passes until one finds (almost) nothing left to repair: the fill took a while,
    and writes went on meanwhile."""
    for _ in range(passes):
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            report = verify_spec(conn, es, spec, fix=True)
        if acceptable(report):
            break
    return report


def swap_alias(es: Elasticsearch, alias: str, old: list[str], new: str) -> None:
    """Point `alias` at `new` only, atomically. A pre-alias concrete index named like the alias
    must be deleted in the same call (an alias cannot share a name with an index)."""
    actions: list[dict] = [{"add": {"index": new, "alias": alias, "is_write_index": True}}]
    for index in old:
        if index == alias:
            actions.append({"remove_index": {"index": index}})
        else:
            actions.append({"remove": {"index": index, "alias": alias}})
    es.indices.update_aliases(actions=actions)


def rollback(es: Elasticsearch, spec: SyncSpec) -> tuple[str, str]:
    """Point the alias back at the newest version older than the current one."""
    alias = spec.target.index
    current = backing_indices(es, alias)
    versions = sorted(
        es.indices.get(index=f"{alias}_v*", allow_no_indices=True, expand_wildcards="all"),
        key=lambda name: int(name.rsplit("_v", 1)[1]) if name.rsplit("_v", 1)[1].isdigit() else -1,
    )
    if not current or current[0] not in versions or versions.index(current[0]) == 0:
        raise RebuildError(f"no earlier version of '{alias}' to roll back to (have {versions})")
    previous = versions[versions.index(current[0]) - 1]
    swap_alias(es, alias, current, previous)
    return current[0], previous
