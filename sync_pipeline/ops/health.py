"""What needs a person: orphaned or incomplete capture, a stuck buffer, dead letters, a missing
index, an index whose mapping conflicts with its spec's.

Nothing here repairs anything. Each finding carries the exact fix — a command,
or SQL when no command can do it (the triggers of a spec removed from the file:
`uninstall-triggers` needs the spec) — because a trigger left behind fills the
buffer forever and nothing else would ever say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.cdc.triggers import drop_statements
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.quoting import sql_literal
from sync_pipeline.core.sql.statements import SourceError
from sync_pipeline.io import buffer, deadletters
from sync_pipeline.io.buffer import CaptureFunction
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.io.search.indices import backing_indices
from sync_pipeline.io.trigger_state import TriggerGap, trigger_gaps
from sync_pipeline.ops.binding import bind
from sync_pipeline.ops.capture import watched_now
from sync_pipeline.ops.slots import SlotStatus, orphan_statuses, spec_slot_status
from sync_pipeline.ops.target import field_sources, mapping_drift

OTHER_SPECS = "(specs not in the file)"


@dataclass
class CaptureIssue:
    spec: str
    table: str
    function: str
    problem: str
    fix: list[str]


@dataclass
class BacklogStatus:
    spec: str
    in_file: bool
    pending: int
    truncates: int
    oldest_age_seconds: float | None
    problem: str = ""
    fix: list[str] = field(default_factory=list)


@dataclass
class DeadLetterStatus:
    spec: str
    count: int
    fix: list[str] = field(default_factory=list)


@dataclass
class IndexStatus:
    spec: str
    index: str
    backing: list[str]
    fix: list[str] = field(default_factory=list)


@dataclass
class MappingStatus:
    """A spec's live index mapping against the spec's: in step (no conflicts), or conflicting in
    ways only a rebuild changes (the next sync or drain stops on them). Fields the spec added are
    no finding: the next load adds them in place."""

    spec: str
    index: str
    conflicts: list[str]
    fix: list[str] = field(default_factory=list)


@dataclass
class HealthReport:
    capture: list[CaptureIssue]
    backlog: list[BacklogStatus]
    dead_letters: list[DeadLetterStatus]
    indexes: list[IndexStatus]
    slots: list[SlotStatus] = field(default_factory=list)
    mappings: list[MappingStatus] = field(default_factory=list)

    @property
    def findings(self) -> int:
        """How many things need action (each row with a fix)."""
        rows: list[CaptureIssue | BacklogStatus | DeadLetterStatus | IndexStatus | MappingStatus] = [
            *self.capture,
            *self.backlog,
            *self.dead_letters,
            *self.indexes,
            *self.slots,
            *self.mappings,
        ]
        return sum(1 for row in rows if row.fix)


def _drops(function: CaptureFunction) -> list[str]:
    return drop_statements(function.schema, function.name, [t[:3] for t in function.triggers])


def _tables(function: CaptureFunction) -> str:
    if function.table is not None:
        return function.table
    return ", ".join(sorted({f"{schema}.{table}" for _, schema, table, _ in function.triggers})) or "-"


def _issue(function: CaptureFunction, problem: str, fix: list[str]) -> CaptureIssue:
    return CaptureIssue(function.spec, _tables(function), f"{function.schema}.{function.name}", problem, fix)


def _capture_of_spec(conn: Connection, spec: SyncSpec, mine: list[CaptureFunction]) -> list[CaptureIssue]:
    """A spec of the file: functions on tables it no longer watches, functions missing a trigger,
    and (if it uses capture at all) watched tables with none."""
    if not mine:
        return []  # capture was never installed: the spec relies on its windows alone
    install = [f"sync-pipeline install-triggers --spec {spec.name}"]
    watched = {w.table for w in watched_now(conn, spec)}
    gaps: dict[str, list[TriggerGap]] = {}
    for gap in trigger_gaps(conn, spec):
        gaps.setdefault(gap.table, []).append(gap)
    issues = []
    for function in mine:
        if function.legacy:
            # the earlier layout's function still fires (next to the per-table ones, if installed)
            # and captures no related table: uninstall removes both layouts, install the new one
            fix = [f"sync-pipeline uninstall-triggers --spec {spec.name}", *install]
            issues.append(_issue(function, "earlier layout's trigger: replace it", fix))
        elif function.table not in watched:
            issues.append(_issue(function, "table no longer watched by the spec", _drops(function)))
        else:
            # on the table the function was installed for (a re-created or renamed table leaves
            # the function, and its triggers elsewhere), and ENABLE ALWAYS
            for gap in gaps.get(function.table, []):
                repair = [f"sync-pipeline verify --spec {spec.name} --fix"] if gap.lost_changes else []
                issues.append(_issue(function, gap.describe(),
                                     [*install, *repair]))  # fmt: skip
    covered = {f.table for f in mine if not f.legacy}
    for table in sorted(watched - covered):
        issues.append(CaptureIssue(spec.name, table, "-", "watched but not captured", install))
    return issues


def capture_issues(conn: Connection, specs: Sequence[SyncSpec], scope: set[str] | None) -> list[CaptureIssue]:
    """Every capture function that needs action; `scope` None: also those of specs not in the file."""
    functions = buffer.capture_functions(conn)
    known = {s.name for s in specs}
    issues = []
    for spec in specs:
        if scope is None or spec.name in scope:
            issues += _capture_of_spec(conn, spec, [f for f in functions if f.spec == spec.name])
    if scope is None:
        for function in functions:
            if function.spec not in known:
                issues.append(_issue(function, "spec not in the spec file", _drops(function)))
    return issues


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def backlog_statuses(
    conn: Connection, specs: Sequence[SyncSpec], scope: set[str] | None, limit_seconds: float
) -> list[BacklogStatus]:
    """Every spec of the file in scope (pending or not), then every other spec with entries."""
    found = buffer.backlogs(conn)
    statuses = []
    for spec in specs:
        if scope is not None and spec.name not in scope:
            continue
        state = found.get(spec.name)
        status = BacklogStatus(spec.name, True, 0, 0, None)
        if state is not None:
            status = BacklogStatus(spec.name, True, state.pending, state.truncates, state.oldest_age_seconds)
        age = status.oldest_age_seconds
        if status.pending and spec.capture == "logical":
            # recorded by its triggers before the switch: only a drain of the spec takes them
            status.problem = "buffered before the switch to capture: logical, not yet drained"
            status.fix = [f"sync-pipeline flush --spec {spec.name}"]
        elif status.pending and age is not None and age > limit_seconds:
            status.problem = f"oldest waited over {_minutes(limit_seconds)}: is the buffer sensor running?"
            status.fix = [f"sync-pipeline flush --spec {spec.name}"]
        statuses.append(status)
    if scope is None:
        known = {s.name for s in specs}
        for name, state in sorted(found.items()):
            if name in known:
                continue
            # no spec drains them, ever: they only grow while the spec's triggers remain
            statuses.append(
                BacklogStatus(
                    name,
                    False,
                    state.pending,
                    state.truncates,
                    state.oldest_age_seconds,
                    "spec not in the spec file: never drained",
                    [f"DELETE FROM public.sync_pipeline_buffer WHERE spec = {sql_literal(name)};"],
                )
            )
    return statuses


def dead_letter_statuses(
    conn: Connection, specs: Sequence[SyncSpec], scope: set[str] | None, others: Sequence[str]
) -> list[DeadLetterStatus]:
    """Dead letters per spec of the file in scope; `scope` None: also those of `others` (specs not
    in the file that left triggers or entries), and whatever remains under no name we know."""
    statuses = []
    for spec in specs:
        if scope is None or spec.name in scope:
            count = deadletters.count(conn, spec.name)
            fix = [f"sync-pipeline dead-letters replay --spec {spec.name}"] if count else []
            statuses.append(DeadLetterStatus(spec.name, count, fix))
    if scope is None:
        for name in others:
            count = deadletters.count(conn, name)
            if count:
                fix = [f"DELETE FROM sync_pipeline_dead_letters WHERE spec = {sql_literal(name)};"]
                statuses.append(DeadLetterStatus(name, count, fix))
        rest = deadletters.count(conn) - sum(s.count for s in statuses)
        if rest > 0:
            # their names are in the list; no command purges a spec the file does not name
            fix = [
                "sync-pipeline dead-letters list",
                "DELETE FROM sync_pipeline_dead_letters WHERE spec = '<spec from the list>';",
            ]
            statuses.append(DeadLetterStatus(OTHER_SPECS, rest, fix))
    return statuses


def index_statuses(es: SearchTarget, specs: Sequence[SyncSpec], scope: set[str] | None) -> list[IndexStatus]:
    statuses = []
    for spec in specs:
        if scope is None or spec.name in scope:
            backing = backing_indices(es, spec.target.index)
            fix = [] if backing else [f"sync-pipeline sync --spec {spec.name} --full"]
            statuses.append(IndexStatus(spec.name, spec.target.index, backing, fix))
    return statuses


def mapping_statuses(
    engine: Engine, es: SearchTarget, specs: Sequence[SyncSpec], scope: set[str] | None
) -> list[MappingStatus]:
    """Each spec in scope whose index exists: its mapping against the spec's (a missing index is
    index_statuses' finding). A spec set to `on_mapping_change: rebuild` rebuilds by itself."""
    statuses = []
    for spec in specs:
        if scope is not None and spec.name not in scope:
            continue
        try:
            with engine.connect() as conn:
                bound = bind(conn, spec)
        except SourceError as exc:  # the source no longer matches the spec: what validate says
            fix = [f"sync-pipeline validate --spec {spec.name}"]
            statuses.append(MappingStatus(spec.name, spec.target.index, [f"source: {exc}"], fix))
            continue
        found = mapping_drift(es, bound)
        if found is None:
            continue
        index, diff = found
        conflicts = [change.describe(field_sources(bound)) for change in diff.conflicts]
        rebuild = conflicts and spec.on_mapping_change != "rebuild"
        fix = [f"sync-pipeline rebuild --spec {spec.name}"] if rebuild else []
        statuses.append(MappingStatus(spec.name, index, conflicts, fix))
    return statuses


def check(
    engine: Engine,
    es: SearchTarget,
    specs: Sequence[SyncSpec],
    scope: set[str] | None = None,
    backlog_seconds: float = 15 * 60,
) -> HealthReport:
    """Everything that needs action, for the specs of `scope` (None: the whole database, specs
    not in the file included)."""
    with engine.begin() as conn:  # begin: counting dead letters creates their table if absent
        capture = capture_issues(conn, specs, scope)
        backlog = backlog_statuses(conn, specs, scope, backlog_seconds)
        known = {s.name for s in specs}
        others = sorted(({i.spec for i in capture} | {b.spec for b in backlog}) - known)
        dead = dead_letter_statuses(conn, specs, scope, others)
        slots = [
            spec_slot_status(conn, spec, [w.table for w in watched_now(conn, spec)], backlog_seconds)
            for spec in specs
            if spec.capture == "logical" and (scope is None or spec.name in scope)
        ]
        if scope is None:
            slots += orphan_statuses(conn, specs)
    orphaned = {i.spec for i in capture} - known
    for status in backlog:
        if status.spec in orphaned:  # deleted first, its triggers would only refill it
            status.problem += " (drop its triggers first, above)"
    indexes = index_statuses(es, specs, scope)
    mappings = mapping_statuses(engine, es, specs, scope)
    return HealthReport(capture, backlog, dead, indexes, slots, mappings)
