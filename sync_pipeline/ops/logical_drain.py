"""Drain a `capture: logical` spec: read its replication slot, apply, then confirm.

Decoded changes become the entries a trigger would have buffered
(core/logical.entries_for) and go through the trigger drain's own apply step
(ops/apply.apply_claimed): written to a temporary table of the drain's
session, claimed from it, resolved to documents, re-read at one REPEATABLE
READ snapshot and written with its version. A batch of root-table entries
only names its documents already: their keys are re-read directly, no
session table in between. The slot is confirmed only past
transactions whose every entry Elasticsearch acknowledged, so a crash anywhere
leaves them in the slot and the next drain receives them again.

A decoded transaction has committed, but a snapshot taken a moment before
may not see it yet: the apply waits until its snapshot sees every transaction
it re-reads (core/logical.visible_in). Entries are applied in batches of at
most `batch_size` as they arrive — a transaction of a million rows never sits
in memory whole — and the slot is confirmed at each transaction's end. The
stream is read and decoded on its own thread (io/change_stream.py)
while a batch is applied, only the columns the entries need.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core import logical
from sync_pipeline.core.bulk import BatchResult
from sync_pipeline.core.capture import TRUNCATE_OP, canonical_keys_query
from sync_pipeline.core.fanout import Watched
from sync_pipeline.core.pgoutput import Begin, Change, Commit, Truncate, unix_seconds
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.io import buffer, replication
from sync_pipeline.io.change_stream import ChangeStream
from sync_pipeline.io.postgres import execute
from sync_pipeline.io.replication import SlotBusy
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.ops.apply import Batches, DrainError, DrainTotals, apply_claimed, reconcile_truncate
from sync_pipeline.ops.binding import Bound, bind
from sync_pipeline.ops.capture import watched_now
from sync_pipeline.ops.metrics import observe_lag
from sync_pipeline.ops.prepare import prepare_target
from sync_pipeline.ops.resync import REPEATABLE_READ

CHANGES = "pg_temp.sync_pipeline_changes"
_CHANGES_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS sync_pipeline_changes (id bigserial PRIMARY KEY, "
    "spec text NOT NULL, source text, pk jsonb NOT NULL, op char(1) NOT NULL, link jsonb) "
    "ON COMMIT DELETE ROWS"
)
VISIBILITY_WAIT_SECONDS = 10.0  # a committed transaction shows in new snapshots within moments
IDLE_CONFIRM_SECONDS = 5.0
QUIET_SECONDS = 0.02  # no message for this long after some: the burst is over, apply it
IDLE_WAIT_SECONDS = 0.5


def watched_by_relation(engine: Engine, spec: SyncSpec) -> dict[int, list[Watched]]:
    """The spec's watched tables by the relation ids their changes arrive under (io/replication)."""
    with engine.connect() as conn:
        found = replication.by_relation(conn, watched_now(conn, spec))
        conn.commit()
    return found


class _Relations:
    """watched_by_relation, and a relation id it lacks looked up once: a partition created or
    attached after the drain began is published with its table, and must not be dropped."""

    def __init__(self, engine: Engine, known: dict[int, list[Watched]]):
        self.engine, self.known = engine, known

    def __call__(self, relid: int) -> list[Watched]:
        if relid not in self.known:
            with self.engine.connect() as conn:
                ancestors = replication.ancestor_ids(conn, relid)
                conn.commit()
            roots = {id(w): w for a in ancestors if a in self.known for w in self.known[a]}
            self.known[relid] = list(roots.values())
        return self.known[relid]


def _snapshot_sees(conn: Connection, xids: set[int]) -> bool:
    """Does the snapshot of the caller's transaction see every transaction of `xids`? (Its first
    statement: in REPEATABLE READ, it takes the snapshot every later statement reads.)"""
    snapshot = conn.exec_driver_sql("SELECT CAST(pg_current_snapshot() AS text)").scalar_one()
    return all(logical.visible_in(xid, snapshot) for xid in xids)


class _Applier:
    """Pending entries of committed transactions, applied in batches on one session."""

    def __init__(self, engine: Engine, es: SearchTarget, bound: Bound, totals: DrainTotals, run_id, on_batch):
        self.engine, self.es, self.bound, self.totals = engine, es, bound, totals
        self.batches = Batches(engine, es, bound, totals, run_id, on_batch)
        self.entries: list[logical.Entry] = []
        self.xids: set[int] = set()
        self.commit_times: list[int] = []  # each entry's transaction's commit time, as pgoutput sends it
        self.tables: dict[str, Any] = {}
        self.conn = engine.connect().execution_options(**REPEATABLE_READ)
        with self.conn.begin():  # the session's table: once, not in every apply
            self.conn.exec_driver_sql(_CHANGES_DDL)

    def add(self, entry: logical.Entry, xid: int, commit_time_us: int) -> None:
        self.entries.append(entry)
        self.xids.add(xid)
        self.commit_times.append(commit_time_us)

    def apply(self) -> None:
        if not self.entries:
            return
        if any(e.op == TRUNCATE_OP for e in self.entries):
            self._reconcile()
        else:
            self._in_snapshot_seeing_them(self._write)
        # acknowledged: each change's lag from its transaction's commit (the client's clock, as
        # ops/slots reads a slot's age: commit times come from the server's)
        now = time.time()
        observe_lag(now - unix_seconds(commit) for commit in self.commit_times)
        self.entries, self.xids, self.commit_times = [], set(), []

    def _in_snapshot_seeing_them(self, work: Callable[[], None]) -> None:
        """Run `work` in a transaction whose snapshot sees every decoded transaction; until one
        does, each try is a transaction of its own that reads nothing else, so the next try
        takes a new snapshot."""
        deadline = time.monotonic() + VISIBILITY_WAIT_SECONDS
        while True:
            with self.conn.begin():
                if _snapshot_sees(self.conn, self.xids):
                    work()
                    return
            if time.monotonic() > deadline:
                raise DrainError(
                    f"transactions {sorted(self.xids)} decoded but not visible after "
                    f"{VISIBILITY_WAIT_SECONDS}s"
                )
            time.sleep(0.002)

    def _write(self) -> None:
        if all(e.source is None for e in self.entries):
            self._write_roots()
        else:
            self._write_claimed()
        self.totals.claimed += len(self.entries)

    def _reconcile(self) -> None:
        """A TRUNCATE among the changes: the whole spec is reconciled, by key ranges, outside
        any transaction of ours. Once every decoded transaction is visible, each range's
        snapshot (taken later) sees them all: the other changes need no applying of their own."""
        self._in_snapshot_seeing_them(lambda: None)
        reconcile_truncate(self.engine, self.es, self.bound.spec, self.totals)
        self.totals.claimed += len(self.entries)

    def _write_roots(self) -> None:
        """Only the root table's rows changed: the entries name their documents, so they need
        no session table to be claimed from and resolved through. Their keys are pgoutput's
        texts ('t', a timestamp in the sender's zone, char(n) padded): PostgreSQL turns them into
        the canonical texts a claim returns (core/keys.py), or a delete would miss its document."""
        pks = [e.pk for e in self.entries]
        statement = canonical_keys_query(self.bound.spec, self.bound.plan.keys, pks)
        keys = dict.fromkeys(tuple(row) for row in execute(self.conn, statement))
        self.batches.write_all(self.conn, [list(keys)])

    def _write_claimed(self) -> None:
        conn, spec, size = self.conn, self.bound.spec, self.bound.spec.batch_size
        buffer.add_entries(conn, spec.name, self.entries, CHANGES)
        while claimed := buffer.claim(conn, spec, self.bound.plan.keys, size, CHANGES):
            apply_claimed(
                conn, self.engine, self.es, self.bound, self.batches, claimed, size, self.tables,
                self.totals, CHANGES,
            )  # fmt: skip

    def close(self) -> None:
        self.batches.close()
        self.conn.close()


def _columns_read(by_relation: dict[int, list[Watched]]) -> dict[int, frozenset[str]]:
    """Per table, the columns entries_for looks at: the only ones worth decoding."""
    return {
        relid: frozenset(c for w in watched for c in (*w.own_key, *w.link, *w.required))
        for relid, watched in by_relation.items()
    }


def _open_stream(
    url: str, spec: SyncSpec, deadline: float, wanted: dict[int, frozenset[str]]
) -> ChangeStream:
    """The slot's stream; a slot still read by the run handing over is waited for."""
    while True:
        try:
            return ChangeStream(url, spec.name, wanted)
        except SlotBusy:
            if time.monotonic() >= deadline:  # the run handing over reads it until its own deadline
                raise
            time.sleep(0.05)


def _current_position(engine: Engine) -> int:
    with engine.connect() as conn:
        # the insert position, not the written or flushed one: an asynchronous commit
        # (synchronous_commit = off) may still sit in the WAL buffers, and reaches the slot only
        # once the WAL writer flushed it — moments later; it is still waited for
        lsn = conn.exec_driver_sql("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')").scalar_one()
        conn.commit()
    return int(lsn)


def follow_logical(
    engine: Engine,
    es: SearchTarget,
    spec: SyncSpec,
    idle_seconds: float | None,
    max_seconds: float,
    run_id: str | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
) -> DrainTotals:
    """Apply the slot's changes as they arrive until it stayed quiet for `idle_seconds` (0: until
    the changes waiting now are applied; None: until `max_seconds` have passed)."""
    started = time.monotonic()
    deadline = started + max_seconds
    totals = DrainTotals()
    bound = bind(engine, spec)
    # a refill or rebuild the index needs is the caller's to run: TargetNotReady (defs/assets.py)
    totals.mapping_changes = prepare_target(es, bound, engine).require_ready().lines
    by_relation = watched_by_relation(engine, spec)
    relations = _Relations(engine, by_relation)
    url = engine.url.render_as_string(hide_password=False)
    applier = _Applier(engine, es, bound, totals, run_id, on_batch)
    stream = _open_stream(url, spec, deadline, _columns_read(by_relation))
    # what was committed before the drain began: a drain that is not following ends once the
    # stream has passed it
    target = _current_position(engine)
    xid, committed, in_transaction, unrefreshed = 0, 0, False, False
    confirmable = confirmed = 0
    last_message = last_confirm = time.monotonic()

    def apply(refresh: bool = True) -> None:
        nonlocal confirmed, last_confirm, unrefreshed
        written = totals.batches
        applier.apply()
        unrefreshed |= totals.batches > written
        if refresh and unrefreshed:
            # searchable now, not at the index's next refresh (docs/configuration.md): once the
            # stream went quiet, not per batch of a burst
            es.indices.refresh(index=spec.target.index)
            unrefreshed = False
        if confirmable > confirmed:  # every entry up to the last commit seen is applied now
            stream.confirm(confirmable)
            confirmed, last_confirm = confirmable, time.monotonic()

    try:
        while (now := time.monotonic()) < deadline:
            # with entries waiting (or a one-off drain to end), a short silence means the burst is
            # over: apply now; with none, sleep on the socket (a message wakes it at once)
            waiting = bool(applier.entries) or in_transaction or confirmable > confirmed or idle_seconds == 0
            wait = QUIET_SECONDS if waiting else IDLE_WAIT_SECONDS
            message = stream.read(min(wait, max(0.0, deadline - now)))
            if message is None:
                if in_transaction:
                    # the server sends a transaction only once it committed, so a pause inside
                    # one is the sender catching up after our last apply, not the end of a
                    # burst: no small batch and no refresh for it
                    continue
                apply()
                if not in_transaction and time.monotonic() - last_confirm >= IDLE_CONFIRM_SECONDS:
                    # nothing of ours is pending: let the server drop the WAL of other tables
                    if stream.server_position > confirmed:
                        confirmed = stream.server_position
                        stream.confirm(confirmed)
                    last_confirm = time.monotonic()
                caught_up = stream.server_position >= target and not in_transaction
                if not caught_up:
                    stream.ping()  # a keepalive back says how far the server has read
                if idle_seconds is not None and caught_up and time.monotonic() - last_message >= idle_seconds:
                    break
                continue
            last_message = time.monotonic()
            if isinstance(message, Begin):
                xid, committed, in_transaction = message.xid, message.commit_time_us, True
            elif isinstance(message, Change | Truncate):
                for entry in logical.entries_of(message, relations):
                    applier.add(entry, xid, committed)
            elif isinstance(message, Commit):
                confirmable, in_transaction = message.end_lsn, False
            if len(applier.entries) >= spec.batch_size:
                apply(refresh=False)  # entries of committed transactions: safe before their commit
        apply()
    finally:
        stream.close()
        applier.close()
    return totals
