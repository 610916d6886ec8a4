"""The loads a `prepare_target` verdict may ask for before a sync or a drain writes.

Its caller (the Dagster asset, the CLI) decides to run them: a re-send of every
document into the same index (`refill`), or the zero-downtime rebuild into a new one
(`rebuild_for`, one at a time per spec, under an advisory lock). Each returns the
index's state afterwards, for the run's metadata; the verdict's `done(state)` is then
ready for the load.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.engine import Engine

from sync_pipeline.io.locks import advisory_lock
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.io.search.indices import record_index_meta
from sync_pipeline.ops.prepare import REFILL_KEY, TargetVerdict
from sync_pipeline.ops.rebuild import fill_index, rebuild
from sync_pipeline.ops.target import MappingConflict, TargetState


def refill(
    engine: Engine,
    es: SearchTarget,
    verdict: TargetVerdict,
    run_id: str | None = None,
    log: Callable[[str], None] = print,
) -> TargetState:
    """Re-send every live row into the index for the verdict's reasons; the record in its `_meta`
    is cleared only once every document was acknowledged."""
    spec, state, reasons = verdict.bound.spec, verdict.state, list(verdict.refill)
    index = state.index
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
    seconds = time.perf_counter() - started
    applied = f"re-sent {totals.indexed} documents in {seconds:.1f}s for {'; '.join(reasons)}"
    return TargetState(state.created, [*state.applied, applied], state.rebuilt, index, state.meta)


def rebuild_for(
    engine: Engine,
    es: SearchTarget,
    verdict: TargetVerdict,
    run_id: str | None = None,
    log: Callable[[str], None] = print,
) -> TargetState:
    """The rebuild the verdict's mapping conflict asks for (`on_mapping_change: rebuild`); a
    MappingConflict, nothing written, when another run of the spec is rebuilding already."""
    spec, conflict = verdict.bound.spec, verdict.conflict
    assert conflict is not None
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
