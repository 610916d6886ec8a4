"""Zero-downtime rebuild: fill a new versioned index, verify it, swap the read alias.

Readers always query the alias (`target.index`). A rebuild creates
`<index>_v<N+1>` with the current mapping, streams every live row into it,
repairs it against PostgreSQL (`verify --fix` passes, which also apply every
change made during the fill — hard deletes included) until a pass finds no
drift, and swaps the alias in one atomic `_aliases` call. Writes made between
that pass and the swap went to the old index, so one more repair runs on the
alias right after the swap: no change is lost.

A new index that refuses a document, or that still drifts after the last pass,
is never swapped in: readers would stop seeing documents the old index serves.
The rebuild stops, the alias is left alone and the new index is deleted.

The swap records, in the new index's mapping `_meta`, which index it replaced:
that record is the alias's history, and `--rollback` follows it back one step.
An index that was never swapped in has no such record, and no record names it.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from sync_pipeline.core.documents.build import batch_to_bulk
from sync_pipeline.core.documents.diff import VerifyReport, diff_sorted
from sync_pipeline.core.documents.index_mapping import index_settings
from sync_pipeline.core.load.bulk import BatchResult, BulkBody, LoadTotals, Rejected, rebody
from sync_pipeline.core.load.counts import Counts
from sync_pipeline.core.mapping.dialect import settings_for_server
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.io import deadletters
from sync_pipeline.io.bulk_load import load_bulk
from sync_pipeline.io.ranges import iter_key_ranges
from sync_pipeline.io.search import SearchApiError, SearchTarget
from sync_pipeline.io.search.indices import (
    META_KEY,
    backing_indices,
    delete_index,
    elasticsearch_documents,
    field_types,
    index_meta,
    record_index_meta,
    write_index,
)
from sync_pipeline.ops.binding import Bound, bind, target_mapping
from sync_pipeline.ops.resync import Key
from sync_pipeline.ops.target import emitted, refusal
from sync_pipeline.ops.verify import (
    PAGE_SIZE,
    BulkRepairs,
    check_key_order,
    postgres_documents,
    sort_normaliser,
)

PASSES = 6


class RebuildError(RuntimeError):
    """A rebuild or rollback asked for what cannot be done (nothing to roll back to): a usage error."""


class RebuildAborted(RebuildError):
    """The new index did not verify: it was not swapped in, the alias was not touched, and the new
    index was deleted."""

    def __init__(self, reason: str, report: RebuildReport):
        super().__init__(reason)
        self.report = report


@dataclass
class RebuildReport:
    spec: str
    alias: str
    old_indices: list[str]
    new_index: str
    filled: LoadTotals = field(default_factory=LoadTotals)
    passes: list[VerifyReport] = field(default_factory=list)  # before the swap, in order
    dead_letters: int = 0  # documents the new index refused, stored in the dead-letter table
    swapped: bool = False
    after_swap: VerifyReport | None = None
    seconds: float = 0.0

    @property
    def before_swap(self) -> VerifyReport | None:
        """The last pass before the swap: the one that found no drift, when it swapped."""
        return self.passes[-1] if self.passes else None

    @property
    def problems(self) -> list[str]:
        """What went wrong after a swap (the catch-up's failures, conflicts, refusals); [] if none."""
        repaired = self.after_swap.repaired if self.after_swap else None
        if repaired is None:
            return []
        counts = {"failed": repaired.failed, "conflicts": repaired.conflicts}
        counts["refused (dead letters)"] = repaired.dead_lettered
        return [f"{n} {what}" for what, n in counts.items() if n]


def versioned_name(alias: str, existing: list[str]) -> str:
    """The next `<alias>_v<N>` after every existing version (`<alias>_variants_v1` is none of them)."""
    pattern = re.compile(rf"^{re.escape(alias)}_v(\d+)$")
    versions = [int(m.group(1)) for name in existing if (m := pattern.match(name))]
    return f"{alias}_v{max(versions, default=0) + 1}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _dead_letter(
    engine: Engine, spec: SyncSpec, index: str, refused: list[Rejected], run_id: str | None, kind: str
) -> int:
    """Store documents `index` refused. Their partition reads `<kind> <index>` (`rebuild t_v2`)
    and their error names the index: told apart from a sync's dead letters and from each other."""
    if not refused:
        return 0
    labelled = [Rejected(r.doc_id, r.action, {**r.error, "index": index}) for r in refused]
    with engine.begin() as conn:
        return deadletters.record(conn, spec.name, labelled, f"{kind} {index}", run_id)


def fill_index(
    engine: Engine,
    es: SearchTarget,
    spec: SyncSpec,
    index: str,
    on_batch: Callable[[BatchResult], None] | None = None,
    run_id: str | None = None,
    kind: str = "rebuild",
) -> LoadTotals:
    """Stream every live row, in key order, into `index` (memory: one batch); documents it refuses
    become dead letters as they come (their partition reads `<kind> <index>`)."""

    def keep(batch: BatchResult) -> None:
        _dead_letter(engine, spec, index, batch.rejected, run_id, kind)
        if on_batch is not None:
            on_batch(batch)

    bound = bind(engine, spec)
    # by key ranges, each in a snapshot of its own whose version its documents carry: rows
    # written meanwhile are read by the ranges after them, or by the repair passes
    pages = iter_key_ranges(engine, spec, bound.columns, spec.batch_size, bound.relations)
    unrepresentable: list[Rejected] = []

    def bodies() -> Iterator[BulkBody]:
        # soft-deleted rows are simply not written into the new index; rows no document can
        # carry (core/sql/poison.py) become dead letters, as refused documents do
        for page in pages:
            chunk = batch_to_bulk(page, bound.plan, include_deletes=False)
            _dead_letter(engine, spec, index, list(chunk.rejected), run_id, kind)
            unrepresentable.extend(chunk.rejected)
            if chunk.docs:
                yield chunk.body

    totals = load_bulk(
        es,
        index,
        rebody(bodies(), spec.batch_size, spec.target.bulk_max_bytes),
        spec.target.bulk_concurrency,
        keep,
        spec.retry,
    )
    totals.counts += Counts(dead_lettered=len(unrepresentable))
    return totals


class _KeepingRefused(BulkRepairs):
    """verify --fix's repairs, also keeping the documents the index refused: BulkRepairs counts
    them only, and a rebuild must store them as dead letters."""

    def __init__(self, engine: Engine, es: SearchTarget, bound: Bound) -> None:
        super().__init__(engine, es, bound)
        self.refused: list[Rejected] = []

    def _resync(self, keys: list[Key], number: int):
        result = super()._resync(keys, number)
        self.refused.extend(result.rejected)
        return result


def repair_pass(engine: Engine, es: SearchTarget, spec: SyncSpec) -> tuple[VerifyReport, list[Rejected]]:
    """One `verify --fix` pass over the spec's index, with the documents it refused: verify_spec's
    merge, here because verify_spec builds its own BulkRepairs, which only counts refusals."""
    index = spec.target.index
    page_size = min(PAGE_SIZE, spec.batch_size)
    bound = bind(engine, spec)
    report = VerifyReport(spec=spec.name, index=index)
    repairs = _KeepingRefused(engine, es, bound)
    es.indices.refresh(index=index)
    sort_key = sort_normaliser(bound, field_types(es, index))
    expected = postgres_documents(engine, bound, page_size, sort_key)
    diff_sorted(expected, elasticsearch_documents(es, spec, page_size), report, repairs)
    repairs.flush()
    report.repaired = repairs.totals
    es.indices.refresh(index=index)
    return report, repairs.refused


def catch_up(
    engine: Engine, es: SearchTarget, spec: SyncSpec, kind: str, run_id: str | None = None
) -> VerifyReport:
    """Repair the alias's current index from the rows as they are now (after a swap or a
    rollback, `kind`: it missed what was written to the other index); refusals become dead
    letters."""
    report, refused = repair_pass(engine, es, spec)
    index = write_index(es, spec.target.index) or spec.target.index
    _dead_letter(engine, spec, index, refused, run_id, kind)
    return report


def describe_catch_up(report: VerifyReport) -> str:
    """One line for a catch-up pass: what it found and what it did about it (not "DRIFT": the
    drift it found is what it was there to repair)."""
    r = report.repaired or LoadTotals()
    found = f"missing={report.missing} extra={report.extra} mismatched={report.mismatched}"
    failed = r.failed + r.conflicts + r.dead_lettered
    return f"{report.index}: {r.indexed + r.deleted} repaired ({found}), {failed} not repaired"


def rebuild(
    engine: Engine,
    es: SearchTarget,
    spec: SyncSpec,
    on_batch: Callable[[BatchResult], None] | None = None,
    on_pass: Callable[[int, VerifyReport], None] | None = None,
    run_id: str | None = None,
    passes: int = PASSES,
) -> RebuildReport:
    """Fill, verify and swap; raises RebuildAborted (alias untouched, new index deleted) when the
    new index refused documents or did not reach 0 drift within `passes` repair passes."""
    started = time.perf_counter()
    alias = spec.target.index
    old = backing_indices(es, alias)
    previous = write_index(es, alias)  # None for a pre-alias plain index: the swap deletes it
    existing = sorted(es.indices.get(index=f"{alias}_v*", allow_no_indices=True, expand_wildcards="all"))
    new = versioned_name(alias, existing)
    report = RebuildReport(spec.name, alias, old, new)
    bound = bind(engine, spec)
    check_key_order(bound)  # its repair passes are verify's merge: refuse before an index exists
    mapping = emitted(bound, target_mapping(engine, bound), es.server)
    # marked as building from the start: an index a crash leaves behind says what it is
    entry = {"spec": spec.name, "state": "building", "started_at": _now()}
    try:
        es.indices.create(
            index=new,
            mappings={**mapping, "_meta": {META_KEY: entry}},
            settings=settings_for_server(index_settings(spec), mapping, es.server),
        )
    except SearchApiError as exc:
        if exc.status_code == 400:
            raise refusal(
                spec.name, es.server.label, f"the mapping or settings of the new index {new}", exc
            ) from None
        raise
    building = spec.model_copy(update={"target": spec.target.model_copy(update={"index": new})})
    try:
        report.filled = fill_index(engine, es, building, new, on_batch, run_id)
        report.dead_letters = report.filled.dead_lettered
        reason = _fill_problem(report) or _converge(engine, es, building, report, on_pass, run_id, passes)
        if reason:
            where = f"the alias still points at {', '.join(old) or 'nothing'}; {new} was deleted"
            raise RebuildAborted(f"{reason}; {where}", report)
        swap_alias(es, alias, old, new)
        report.swapped = True
    except BaseException:
        report.seconds = time.perf_counter() - started
        # best effort, so the original error is the one raised: an index left behind (Elasticsearch
        # gone) stays marked "building", and no history names it. Never delete what the alias
        # points at: a swap that timed out may still have happened.
        with contextlib.suppress(Exception):
            if new not in backing_indices(es, alias):
                delete_index(es, new)
        raise
    # recorded only now: an index that was not swapped in never carries a history
    record_index_meta(es, new, {**entry, "state": "swapped", "previous": previous, "swapped_at": _now()})
    report.after_swap = catch_up(engine, es, spec, "rebuild", run_id)  # writes the old index took
    report.seconds = time.perf_counter() - started
    return report


def _fill_problem(report: RebuildReport) -> str | None:
    filled, new = report.filled, report.new_index
    if filled.failed:
        first = filled.first_errors[0] if filled.first_errors else "?"
        return f"{filled.failed} documents did not reach {new} after the retries (first error: {first})"
    if filled.dead_lettered:
        return _refused(report, filled.first_errors)
    return None


def _refused(report: RebuildReport, errors: list[dict]) -> str:
    first = next((e for e in errors if e.get("type")), {})
    example = f"_id {first.get('_id')}: {first.get('type')}: {str(first.get('reason'))[:160]}"
    return (
        f"{report.dead_letters} documents refused by {report.new_index}, stored as dead letters "
        f"(`sync-pipeline dead-letters list --spec {report.spec}`; first: {example}); "
        "fix those rows or the mapping, then rebuild again"
    )


def _converge(
    engine: Engine,
    es: SearchTarget,
    building: SyncSpec,
    report: RebuildReport,
    on_pass: Callable[[int, VerifyReport], None] | None,
    run_id: str | None,
    passes: int,
) -> str | None:
    """Repair passes until one finds no drift at all: the fill took a while and writes went on.
    Returns why the index cannot be swapped in, or None.

    A refused repair (a row changed meanwhile into something the new mapping refuses) is stored
    and ends the rebuild after that pass; so no pass has to tell a dead letter from drift.
    """
    for number in range(1, passes + 1):
        verified, refused = repair_pass(engine, es, building)
        report.passes.append(verified)
        report.dead_letters += _dead_letter(engine, building, report.new_index, refused, run_id, "rebuild")
        if on_pass is not None:
            on_pass(number, verified)
        if refused:
            errors = [r.error for r in refused]
            besides = verified.drift - len(refused)
            return f"{_refused(report, errors)} (drift besides them in pass {number}: {besides})"
        if verified.ok:
            return None
    last = "; ".join(report.passes[-1].lines()[:2])
    return (
        f"{report.new_index} still drifts after {passes} repair passes ({last}): writes outpaced the "
        "passes, or the drift cannot be repaired (a conflict: see verify)"
    )


def swap_alias(es: SearchTarget, alias: str, old: list[str], new: str) -> None:
    """Point `alias` at `new` only, atomically. A pre-alias concrete index named like the alias
    must be deleted in the same call (an alias cannot share a name with an index)."""
    actions: list[dict] = [{"add": {"index": new, "alias": alias, "is_write_index": True}}]
    for index in old:
        if index == alias:
            actions.append({"remove_index": {"index": index}})
        else:
            actions.append({"remove": {"index": index, "alias": alias}})
    es.indices.update_aliases(actions=actions)


def rollback(es: SearchTarget, spec: SyncSpec) -> tuple[str, str]:
    """Point the alias back at the index its current one replaced, as recorded at the swap.

    Only the alias's own history is followed — never index names, which other specs may share
    (`products_v*` also matches `products_variants_v1`) and which aborted rebuilds leave behind.
    """
    alias = spec.target.index
    current = write_index(es, alias)
    if current is None:
        raise RebuildError(f"'{alias}' is not an alias: there is no rebuild history to roll back")
    history = index_meta(es, current)
    previous = history.get("previous") if history.get("swapped_at") else None
    if history.get("state") == "building":
        raise RebuildError(
            f"'{alias}' → {current}: the rebuild stopped right after its swap, before recording what "
            "it replaced; point the alias back by hand (`_aliases`)"
        )
    if not previous:
        raise RebuildError(
            f"'{alias}' → {current} has no rebuild history to roll back to (it was created by a sync, "
            "or replaced a plain index, which the swap deleted)"
        )
    if not es.indices.exists(index=previous):
        raise RebuildError(f"'{alias}' → {current} replaced {previous}, which no longer exists")
    if index_meta(es, previous).get("state") == "building":
        # cannot happen through this module (only a serving index is recorded as previous), but
        # an alias edited by hand could lead here: a half-filled index must never serve
        raise RebuildError(f"{previous} is marked as an unfinished rebuild; not rolling back to it")
    swap_alias(es, alias, backing_indices(es, alias), previous)
    # kept for the record; `previous` stays, so the chain back from older indices is intact
    record_index_meta(es, current, {**history, "state": "rolled back", "rolled_back_at": _now()})
    return current, previous
