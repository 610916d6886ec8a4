"""Before a load writes: is the index in the shape the spec asks for, and what does it need?

ops/target.py creates the index or changes its mapping in place. Two things follow
from an in-place change that Elasticsearch does not do by itself, and neither is done
here: `prepare_target` only says which one is needed (a `TargetVerdict`), and the
caller — the Dagster asset (defs/) or the CLI — decides to run it (ops/readying.py)
before it writes:

- a new multi-field (or a new field fed by a column that already holds values) covers
  only documents written after it: the ones already indexed are re-sent, every live
  row once, into the same index (a `refill`). The need is recorded in the index's
  `_meta` before the mapping changes, so a run that dies after the change, or half-way
  through the re-send, leaves it for the next run to finish (and `verify` reports the
  documents a multi-field is missing from, whatever the record says);
- a conflicting change cannot be made in place at all: with `on_mapping_change:
  rebuild` the verdict asks for the spec's zero-downtime rebuild, otherwise the
  conflict is raised (MappingConflict) before any write.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sqlalchemy.engine import Engine

from sync_pipeline.core.mapping.diff import Change, MappingDiff
from sync_pipeline.io.catalog import column_holds_values
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.io.search.indices import record_index_meta
from sync_pipeline.ops.binding import Bound
from sync_pipeline.ops.target import MappingConflict, TargetState, reconcile_target

REFILL_KEY = "refill"


class TargetNotReady(MappingConflict):
    """A load met an index that still needs a re-send or a rebuild, before writing anything:
    `verdict` says which, for its caller to run (ops/readying.py) before it loads again."""

    # no run happened: the caller readies the index and runs again, which is what is measured
    ran = False

    def __init__(self, message: str, verdict: TargetVerdict) -> None:
        super().__init__(message, verdict.conflict.conflicts if verdict.conflict else [])
        self.verdict = verdict


@dataclass(frozen=True)
class TargetVerdict:
    """What `prepare_target` found: the index ready for writes, or the load it needs first.

    `refill`: why every document must be re-sent into the same index (ops/readying.refill);
    `conflict`: the mapping conflict a rebuild into a new index resolves (ops/readying.rebuild_for).
    Ready when it needs neither; `state` says what readying took (the run's metadata)."""

    bound: Bound
    state: TargetState = field(default_factory=TargetState)
    refill: tuple[str, ...] = ()
    conflict: MappingConflict | None = None

    @property
    def needs_rebuild(self) -> bool:
        return self.conflict is not None

    @property
    def needs_refill(self) -> bool:
        return bool(self.refill) and self.conflict is None

    @property
    def ready(self) -> bool:
        return not self.needs_rebuild and not self.needs_refill

    def done(self, state: TargetState) -> TargetVerdict:
        """Ready, after the caller's refill or rebuild left `state`."""
        return replace(self, state=state, refill=(), conflict=None)

    def require_ready(self) -> TargetState:
        """The state of a ready index; TargetNotReady (nothing written) otherwise."""
        if self.ready:
            return self.state
        why = str(self.conflict) if self.conflict else f"documents to re-send ({'; '.join(self.refill)})"
        raise TargetNotReady(
            f"spec '{self.bound.spec.name}': the index needs a "
            f"{'rebuild' if self.conflict else 're-send'} before this load writes: {why}",
            self,
        )


def prepare_target(es: SearchTarget, bound: Bound, engine: Engine) -> TargetVerdict:
    """Create the spec's index or change its mapping in place, and say what else it needs before
    writes: never a load itself. MappingConflict when only a rebuild helps and the spec does not
    rebuild on its own (`on_mapping_change: fail`)."""

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
        return TargetVerdict(bound, conflict=conflict)
    if state.created or state.index is None:
        return TargetVerdict(bound, state)
    reasons = state.meta.get(REFILL_KEY)
    if reasons and es.count(index=bound.spec.target.index)["count"]:
        return TargetVerdict(bound, state, refill=tuple(reasons))
    return TargetVerdict(bound, state)


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
    with engine.connect() as conn:
        return column_holds_values(conn, spec.source.table, column)
