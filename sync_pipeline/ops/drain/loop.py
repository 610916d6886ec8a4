"""The one drain loop: claim a batch of changes from a source, write the documents they affect,
confirm the batch back to the source; when none is waiting, wait for the next.

A source (the trigger buffer, or the replication slot: ops/drain/sources.py) hands out a
`Claim` in a REPEATABLE READ transaction: every document written for it, and every delete,
carries the version of that one snapshot (core/sql/versions.py). It is confirmed — the buffer's
entries deleted, the slot's position moved — only once Elasticsearch acknowledged every document
of it, so a crash anywhere leaves the changes with their source for the next drain. A claim
holding a TRUNCATE is reconciled instead (verify with fix, ops/drain/batches.py) after its
transaction ended, then confirmed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
from sqlalchemy.engine import Connection, Engine, RootTransaction

from sync_pipeline.core.cdc import fanout
from sync_pipeline.core.cdc.fanout import Watched
from sync_pipeline.core.cdc.triggers import TRUNCATE_OP
from sync_pipeline.core.load.bulk import BatchResult
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.io.buffer import ClaimedEntry
from sync_pipeline.io.postgres import describe_table, execute
from sync_pipeline.io.row_cursor import stream_rows
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.ops.binding import Bound, bind
from sync_pipeline.ops.capture import TABLE_SOURCE
from sync_pipeline.ops.drain.batches import Batches, DrainTotals, reconcile_truncate
from sync_pipeline.ops.prepare import prepare_target
from sync_pipeline.ops.resync import Key


@dataclass
class Claim:
    """A batch of changes a source handed out, its transaction open until it is confirmed.

    `roots`: the document keys of the root table's changed rows; `entries`: the claimed entries
    of a table of changes (`changes`: the buffer, or the slot's session table), whose related and
    change-table entries are resolved to the documents they feed, in the claim's snapshot."""

    conn: Connection
    transaction: RootTransaction
    count: int  # changes claimed
    roots: list[Key] = field(default_factory=list)
    entries: list[ClaimedEntry] = field(default_factory=list)
    changes: str = ""
    truncate: bool = False  # a TRUNCATE among them: the whole spec is reconciled instead
    last: bool = True  # nothing more waits behind it now: the index is refreshed after it
    own_connection: bool = False  # `conn` is the claim's alone: closed once the claim ended


def root_keys(entries: Sequence[ClaimedEntry]) -> list[Key]:
    """The document keys the root table's entries name, each once, in claim order."""
    return list(dict.fromkeys(e.key for e in entries if e.source is None))


def holds_truncate(ops: Iterable[str]) -> bool:
    return any(op == TRUNCATE_OP for op in ops)


class ChangeSource(Protocol):
    """Where a drain's changes come from (ops/drain/sources.py builds the spec's, for a Drain)."""

    def claim(self, deadline: float) -> Claim | None:
        """The next batch of changes, at most the drain's batch size (about, for the slot); None
        when none is waiting now (the slot reads what arrives until `deadline` at most)."""

    def confirm(self, claim: Claim) -> None:
        """Elasticsearch acknowledged every document of `claim`: let its changes go — in the
        claim's transaction (the buffer deletes its entries there), or only once it committed
        (the slot: moving it cannot be rolled back)."""

    def wait(self, seconds: float) -> None:
        """Sleep until a change may have arrived, at most `seconds`."""

    def caught_up(self) -> bool:
        """Has the source handed out everything committed before the drain began?"""

    def cover_partitions(self, conn: Connection, table: str, watched: list[Watched]) -> None:
        """Give new partitions of `table` what this capture's install gives partitions."""

    def close(self) -> None: ...


def take_changes(
    source: ChangeSource,
    take: Callable[[Claim], bool],
    refresh: Callable[[], None],
    idle_seconds: float | None,
    deadline: float = math.inf,
    max_batches: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Claim the source's changes and `take` each (True: documents were written) until none
    arrived for `idle_seconds` once the source caught up (0: until what waits now is taken; None:
    until `deadline`), or `deadline` (on `clock`) passed — what is left waits for the next run,
    which keeps every run inside its max runtime — or `max_batches` claims were taken. Returns
    the claims taken."""
    claims, last_change, unrefreshed = 0, clock(), False
    while max_batches is None or claims < max_batches:
        claim = source.claim(deadline)
        if claim is not None:
            claims += 1
            unrefreshed = take(claim) or unrefreshed
            last_change = clock()
            if claim.last and unrefreshed:
                # searchable now, not at the index's next refresh (docs/configuration.md): once
                # a burst is written, not per batch of it
                refresh()
                unrefreshed = False
            if last_change >= deadline:
                break
            continue
        if unrefreshed:
            refresh()
            unrefreshed = False
        now = clock()
        if now >= deadline:
            break
        if idle_seconds is not None and source.caught_up() and now - last_change >= idle_seconds:
            break
        source.wait(deadline - now)
    if unrefreshed:
        refresh()
    return claims


class Drain:
    """One drain run of a spec: its handles, binding, batch size, bulk batches, totals and the
    change tables it described — bound on the first claim, so a spec whose buffer was never
    installed is neither described nor its index touched."""

    def __init__(
        self,
        engine: Engine,
        es: SearchTarget,
        spec: SyncSpec,
        run_id: str | None = None,
        on_batch: Callable[[BatchResult], None] | None = None,
        batch_size: int | None = None,
    ):
        self.engine, self.es, self.spec = engine, es, spec
        self.run_id, self.on_batch = run_id, on_batch
        self.size = batch_size or spec.batch_size
        self.totals = DrainTotals()
        self._bound: Bound | None = None
        self._batches: Batches | None = None
        self._tables: dict[str, Any] = {}  # change tables by name, described once a run

    def binding(self) -> Bound:
        """The spec bound to its source, its index prepared for it (once)."""
        if self._bound is None:
            self._bound = bind(self.engine, self.spec)
            # a refill or rebuild the index needs is the caller's to run: TargetNotReady (defs/assets.py)
            verdict = prepare_target(self.es, self._bound, self.engine)
            self.totals.mapping_changes = verdict.require_ready().lines
            self._batches = Batches(
                self.engine, self.es, self._bound, self.totals, self.run_id, self.on_batch
            )
        return self._bound

    def run(
        self, source: ChangeSource, idle_seconds: float | None, deadline: float = math.inf,
        max_batches: int | None = None,
    ) -> None:  # fmt: skip
        """The source's changes taken (`take_changes`), each claim written and confirmed."""

        def take(claim: Claim) -> bool:
            written = self.totals.batches
            self.take(source, claim)
            return self.totals.batches > written

        take_changes(source, take, self._refresh, idle_seconds, deadline, max_batches)

    def take(self, source: ChangeSource, claim: Claim) -> None:
        """Write what the claim affects and confirm it, or reconcile the spec for a TRUNCATE: the
        whole-table read runs after the claim's transaction ended, so it holds neither its
        snapshot nor its row locks; a concurrent drain may claim the same entries meanwhile and
        reconcile too, which is only work twice."""
        try:
            if claim.truncate:
                claim.transaction.commit()
                reconcile_truncate(self.engine, self.es, self.spec, self.totals, claim.entries)
            else:
                batches = self._batches_bound()
                batches.write_all(claim.conn, self._pages(claim))
            source.confirm(claim)
            if claim.transaction.is_active:
                claim.transaction.commit()
        except BaseException:
            if claim.transaction.is_active:  # the claim rolls back: every change stays with its source
                claim.transaction.rollback()
            raise
        finally:
            if claim.own_connection:
                claim.conn.close()
        self.totals.claimed += claim.count

    def close(self) -> None:
        if self._batches is not None:
            self._batches.close()

    def _batches_bound(self) -> Batches:
        self.binding()
        assert self._batches is not None
        return self._batches

    def _refresh(self) -> None:
        self.es.indices.refresh(index=self.spec.target.index)

    def _pages(self, claim: Claim) -> Iterator[list[Key] | pa.RecordBatch]:
        """The claim's documents, page by page: the root entries' keys at once, then what each
        table's entries feed (core/cdc/fanout.py) — a related table's as the documents' rows, read
        set-wise through a cursor in batches of at most `size` rows; a change table's as keyset
        pages of keys — one bulk batch each, so a rename touching a million documents never
        holds a million keys or rows."""
        if claim.roots:
            yield claim.roots
        by_source: dict[str, list[int]] = {}
        for entry in claim.entries:
            if entry.source is not None:
                by_source.setdefault(entry.source, []).append(entry.id)
        bound = self.binding() if by_source else None
        for source, ids in by_source.items():
            if source.startswith(TABLE_SOURCE):
                yield from self._resolved(claim.conn, claim.changes, source, ids)
                continue
            assert bound is not None
            statement = fanout.fanned_out_rows(
                self.spec, bound.columns, bound.relations, source, ids, claim.changes
            )
            yield from stream_rows(claim.conn, statement, bound.columns, bound.relations, self.size)

    def _resolved(self, conn: Connection, changes: str, source: str, ids: list[int]) -> Iterator[list[Key]]:
        """The keys of the documents that entries `ids` of change table `source` feed (a `query`
        spec's `roots:` query), page by page."""
        spec, bound, size = self.spec, self.binding(), self.size
        width = len(spec.source.primary_key)
        name = source.removeprefix(TABLE_SOURCE)
        if name not in self._tables:
            self._tables[name] = describe_table(conn, name)
        roots = next(c.roots for c in spec.source.change_tables if c.table == name)
        after: list[Any] | None = None
        while True:
            statement = fanout.query_root_keys(
                spec, bound.columns, roots or "", self._tables[name], ids, after, size, changes
            )
            rows = execute(conn, statement).all()
            if not rows:
                return
            # each row: the root's primary key (the page's keyset position), then the document key
            yield [tuple(row[width:]) for row in rows]
            after = list(rows[-1][:width])
            if len(rows) < size:
                return
