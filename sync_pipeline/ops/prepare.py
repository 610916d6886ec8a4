"""Before a load writes: the index in the shape the spec asks for, whatever it takes.

ops/target.py creates the index or changes its mapping in place. Two things follow
from an in-place change that Elasticsearch does not do by itself:

- a new multi-field (or a new field fed by a column that already holds values) covers
  only documents written after it: the ones already indexed are re-sent, every live
  row once, into the same index (a `refill`). The need is recorded in the index's
  `_meta` before the mapping changes, so a run that dies after the change, or half-way
  through the re-send, leaves it for the next run to finish (and `verify` reports the
  documents a multi-field is missing from, whatever the record says);
- a conflicting change cannot be made in place at all: with `on_mapping_change:
  rebuild` the spec's zero-downtime rebuild runs here (one at a time per spec, under
  an advisory lock), otherwise the caller stops with the conflict before any write.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.engine import Engine

from sync_pipeline.core.mapping_diff import Change, MappingDiff
from sync_pipeline.core.quoting import qualified_table, quote_ident
from sync_pipeline.core.sql import Statement
from sync_pipeline.io.locks import advisory_lock
from sync_pipeline.io.postgres import execute
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.io.search.indices import record_index_meta
from sync_pipeline.ops.binding import Bound
from sync_pipeline.ops.rebuild import fill_index, rebuild
from sync_pipeline.ops.target import MappingConflict, TargetState, reconcile_target

REFILL_KEY = "refill"


def prepare_target(
    es: SearchTarget,
    bound: Bound,
    engine: Engine,
    run_id: str | None = None,
    log: Callable[[str], None] = print,
) -> TargetState:
    """Make the spec's index ready for writes; returns what that took (for the run's metadata)."""

    def record_refill(found: TargetState, diff: MappingDiff) -> None:
        # before the change: a run killed right after it still leaves the re-send to the next
        reasons = _refill_reasons(engine, bound, diff)
        if found.index is None or not reasons or not es.count(index=found.index)["count"]:
            return
        earlier = [r for r in found.meta.get(REFILL_KEY) or [] if r not in reasons]
        found.meta = {**found.meta, REFILL_KEY: [*earlier, *reasons]}
        record_index_meta(es, found.index, found.meta)

    try:
        state, _ = reconcile_target(es, bound, engine, before_change=record_refill)
    except MappingConflict as conflict:
        if bound.spec.on_mapping_change != "rebuild":
            raise
        return _rebuild(es, bound, engine, conflict, run_id, log)
    if state.created or state.index is None:
        return state
    reasons = state.meta.get(REFILL_KEY)
    if reasons and es.count(index=bound.spec.target.index)["count"]:
        _refill(es, bound, engine, state, reasons, run_id, log)
    return state


def _refill_reasons(engine: Engine, bound: Bound, diff: MappingDiff) -> list[str]:
    """Why the documents already indexed must be sent again after `diff` was applied."""
    reasons = [f"new multi-field {c.path}" for c in diff.additions if c.what == "new multi-field"]
    for change in diff.additions:
        if change.what == "new field" and _holds_values(engine, bound, change):
            reasons.append(f"new field {change.path}")
    return reasons


def _holds_values(engine: Engine, bound: Bound, change: Change) -> bool:
    """Whether existing rows may carry a value for a new field: a column added with no default
    (the usual migration) holds none, and documents lacking the field already say null."""
    spec = bound.spec
    column = next((f.column for f in bound.plan.fields if f.name == change.path), None)
    if column is None or spec.source.table is None or column in {r.name for r in spec.source.relations}:
        return True  # a relation's field, or a query's: not worth a precise answer here
    sql = (
        f"SELECT EXISTS (SELECT 1 FROM {qualified_table(spec.source.table)} "
        f"WHERE {quote_ident(column)} IS NOT NULL)"
    )
    with engine.connect() as conn:
        return bool(execute(conn, Statement(sql)).scalar_one())


def _refill(
    es: SearchTarget,
    bound: Bound,
    engine: Engine,
    state: TargetState,
    reasons: list[str],
    run_id: str | None,
    log: Callable[[str], None],
) -> None:
    spec, index = bound.spec, state.index
    assert index is not None
    started = time.perf_counter()
    log(f"{spec.name}: re-sending every document into {index} ({'; '.join(reasons)})")
    totals = fill_index(engine, es, spec, spec.target.index, run_id=run_id, kind="refill")
    if totals.failed:
        raise MappingConflict(
            f"spec '{spec.name}': re-sending the documents for {'; '.join(reasons)} left {totals.failed} "
            "unacknowledged; the next run tries again (recorded in the index's _meta)",
            [],
        )
    record_index_meta(es, index, {k: v for k, v in state.meta.items() if k != REFILL_KEY})
    es.indices.refresh(index=spec.target.index)
    state.applied.append(
        f"re-sent {totals.indexed} documents in {time.perf_counter() - started:.1f}s for {'; '.join(reasons)}"
    )


def _rebuild(
    es: SearchTarget,
    bound: Bound,
    engine: Engine,
    conflict: MappingConflict,
    run_id: str | None,
    log: Callable[[str], None],
) -> TargetState:
    spec = bound.spec
    with advisory_lock(engine, f"sync_pipeline rebuild {spec.name}") as held:
        if not held:
            raise MappingConflict(
                f"{conflict}\nA rebuild of spec '{spec.name}' is already running in another run; "
                "this one wrote nothing and leaves its work to the next run.",
                conflict.conflicts,
            )
        log(f"{conflict}\non_mapping_change: rebuild — rebuilding {spec.target.index} now")
        report = rebuild(engine, es, spec, run_id=run_id)
    changed = ", ".join(sorted({c.path for c in conflict.conflicts}))
    return TargetState(
        rebuilt=report.new_index,
        applied=[
            f"mapping conflicted ({changed}): rebuilt into {report.new_index} and swapped the alias "
            f"({report.filled.indexed if report.filled else 0} documents, {report.seconds:.1f}s)"
        ],
        index=report.new_index,
    )
