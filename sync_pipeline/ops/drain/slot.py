"""`SlotSource`: the changes of a `capture: logical` spec, read from its replication slot.

Decoded changes become the entries a trigger would have buffered (core/cdc/logical.entries_for),
gathered from the stream as it is read, on its own thread, decoding only the columns the entries
need (io/change_stream.py). A claim hands them out in batches of about `batch_size` as they
arrive — a transaction of a million rows never sits in memory whole — or when the stream went
quiet. A batch of root-table entries only names its documents already: their keys are re-read
directly. Entries of related or change tables are written to the drain session's table
(io/session_changes.py), claimed and resolved from there exactly as the buffer's.

A decoded transaction has committed, but a snapshot taken a moment before may not see it yet: a
claim's transaction is one whose snapshot sees every transaction it re-reads
(core/cdc/logical.visible_in). Confirming a claim moves the slot only past transactions whose every
entry Elasticsearch acknowledged, so a crash anywhere leaves them in the slot and the next drain
receives them again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine, RootTransaction

from sync_pipeline.core.cdc import logical
from sync_pipeline.core.cdc.fanout import Watched
from sync_pipeline.core.cdc.pgoutput import Begin, Change, Commit, Message, Truncate, unix_seconds
from sync_pipeline.core.cdc.triggers import canonical_keys_query
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.io import buffer, replication, session_changes
from sync_pipeline.io.change_stream import ChangeStream
from sync_pipeline.io.postgres import execute, repeatable_read
from sync_pipeline.io.replication import SlotBusy
from sync_pipeline.ops.capture import watched_now
from sync_pipeline.ops.drain.batches import DrainError
from sync_pipeline.ops.drain.loop import Claim, Drain, holds_truncate, root_keys
from sync_pipeline.ops.metrics import observe_lag

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


@dataclass
class _Pending:
    """Entries read from the stream and not yet claimed, with their transactions."""

    entries: list[logical.Entry] = field(default_factory=list)
    xids: set[int] = field(default_factory=set)
    commit_times: list[int] = field(default_factory=list)  # each entry's, as pgoutput sends it

    def add(self, entry: logical.Entry, xid: int, commit_time_us: int) -> None:
        self.entries.append(entry)
        self.xids.add(xid)
        self.commit_times.append(commit_time_us)


@dataclass
class SlotClaim(Claim):
    position: int = 0  # the end of the last transaction all of whose entries are claimed by now
    commit_times: list[int] = field(default_factory=list)


class SlotSource:
    """The spec's slot: its stream is opened at the first claim (after what the buffer still
    held), and what was committed before then is what a drain that is not following waits for."""

    def __init__(self, drain: Drain):
        self.drain, self.engine, self.spec = drain, drain.engine, drain.spec
        self._stream: ChangeStream | None = None
        self._conn: Connection | None = None  # the session whose table holds related entries
        self._relations: _Relations | None = None
        self._target = 0
        self._pending = _Pending()
        self._next: Message | None = None  # read while waiting, taken by the next claim
        self._xid = self._committed = 0
        self._in_transaction = False
        self._confirmable = self._confirmed = 0
        self._last_confirm = time.monotonic()

    def claim(self, deadline: float) -> Claim | None:
        drain = self.drain
        drain.binding()
        stream = self._open(deadline)
        while (now := time.monotonic()) < deadline:
            message, self._next = self._next or stream.read(min(QUIET_SECONDS, deadline - now)), None
            if message is None:
                if self._in_transaction:
                    # the server sends a transaction only once it committed, so a pause inside
                    # one is the sender catching up after our last apply, not the end of a
                    # burst: no small batch and no refresh for it
                    continue
                break
            self._read(message)
            if len(self._pending.entries) >= drain.size:
                # entries of committed transactions: safe to claim before their commit is read
                return self._claim(drain, last=False)
        if self._pending.entries:
            return self._claim(drain, last=True)
        self._quiet()
        return None

    def confirm(self, claim: Claim) -> None:
        assert isinstance(claim, SlotClaim)
        # the claim's transaction first (it holds the batch's dead letters): once the slot moved
        # past the changes, nothing would bring them back if that commit were lost
        if claim.transaction.is_active:
            claim.transaction.commit()
        # acknowledged: each change's lag from its transaction's commit (the client's clock, as
        # ops/slots reads a slot's age: commit times come from the server's)
        now = time.time()
        observe_lag(now - unix_seconds(commit) for commit in claim.commit_times)
        self._confirm(claim.position)

    def wait(self, seconds: float) -> None:
        # caught up, sleep on the socket (a message wakes it at once); else a keepalive asked
        # for is on its way
        step = IDLE_WAIT_SECONDS if self.caught_up() else QUIET_SECONDS
        if self._next is None and self._stream is not None:
            self._next = self._stream.read(min(step, max(0.0, seconds)))

    def caught_up(self) -> bool:
        position = self._stream.server_position if self._stream is not None else 0
        return position >= self._target and not self._in_transaction

    def cover_partitions(self, conn: Connection, table: str, watched: list[Watched]) -> None:
        replication.set_identity(conn, table, watched)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        if self._conn is not None:
            self._conn.close()

    def _open(self, deadline: float) -> ChangeStream:
        if self._stream is None:
            by_relation = watched_by_relation(self.engine, self.spec)
            self._relations = _Relations(self.engine, by_relation)
            self._conn = repeatable_read(self.engine)
            with self._conn.begin():
                session_changes.create(self._conn)
            url = self.engine.url.render_as_string(hide_password=False)
            self._stream = _open_stream(url, self.spec, deadline, _columns_read(by_relation))
            # what was committed before the drain began: a drain that is not following ends
            # once the stream has passed it
            self._target = replication.insert_position(self.engine)
        return self._stream

    def _read(self, message: Message) -> None:
        if isinstance(message, Begin):
            self._xid, self._committed, self._in_transaction = message.xid, message.commit_time_us, True
        elif isinstance(message, Change | Truncate):
            assert self._relations is not None
            for entry in logical.entries_of(message, self._relations):
                self._pending.add(entry, self._xid, self._committed)
        elif isinstance(message, Commit):
            self._confirmable, self._in_transaction = message.end_lsn, False

    def _claim(self, drain: Drain, last: bool) -> SlotClaim:
        """The pending entries, in a transaction whose snapshot sees them."""
        pending, self._pending = self._pending, _Pending()
        conn, spec, keys = self._conn, self.spec, drain.binding().plan.keys
        assert conn is not None
        transaction = self._snapshot_seeing(conn, pending.xids)
        claim = SlotClaim(
            conn, transaction, len(pending.entries), changes=session_changes.CHANGES, last=last,
            truncate=holds_truncate(e.op for e in pending.entries),
            position=self._confirmable, commit_times=pending.commit_times,
        )  # fmt: skip
        if claim.truncate:
            # once every decoded transaction is visible, each range of the reconcile (its
            # snapshot taken later) sees them all: the other changes need no applying of their own
            return claim
        try:
            if all(e.source is None for e in pending.entries):
                # only the root table's rows changed: the entries name their documents. Their keys
                # are pgoutput's texts ('t', a timestamp in the sender's zone, char(n) padded):
                # PostgreSQL turns them into the canonical texts a claim returns (core/sql/keys.py),
                # or a delete would miss its document
                statement = canonical_keys_query(spec, keys, [e.pk for e in pending.entries])
                claim.roots = list(dict.fromkeys(tuple(row) for row in execute(conn, statement)))
            else:
                session_changes.add(conn, spec.name, pending.entries)
                claim.entries = buffer.claim(conn, spec, keys, len(pending.entries), session_changes.CHANGES)
                claim.roots = root_keys(claim.entries)
        except BaseException:
            transaction.rollback()
            raise
        return claim

    def _snapshot_seeing(self, conn: Connection, xids: set[int]) -> RootTransaction:
        """A transaction whose snapshot sees every transaction of `xids`; until one does, each
        try is a transaction of its own that reads nothing else, so the next try takes a new
        snapshot."""
        deadline = time.monotonic() + VISIBILITY_WAIT_SECONDS
        while True:
            transaction = conn.begin()
            try:
                if replication.snapshot_sees(conn, xids):
                    return transaction
            except BaseException:
                transaction.rollback()
                raise
            transaction.rollback()
            if time.monotonic() > deadline:
                raise DrainError(
                    f"transactions {sorted(xids)} decoded but not visible after {VISIBILITY_WAIT_SECONDS}s"
                )
            time.sleep(0.002)

    def _confirm(self, position: int) -> None:
        if position > self._confirmed:
            assert self._stream is not None
            self._stream.confirm(position)
            self._confirmed, self._last_confirm = position, time.monotonic()

    def _quiet(self) -> None:
        """Nothing pending: confirm what needed no writing; now and then let the server drop the
        WAL of other tables; ask how far the server has read while not caught up."""
        assert self._stream is not None
        self._confirm(self._confirmable)  # every entry up to the last commit seen is applied now
        if not self._in_transaction and time.monotonic() - self._last_confirm >= IDLE_CONFIRM_SECONDS:
            # nothing of ours is pending: let the server drop the WAL of other tables
            self._confirm(self._stream.server_position)
            self._last_confirm = time.monotonic()
        if not self.caught_up():
            self._stream.ping()  # a keepalive back says how far the server has read


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
