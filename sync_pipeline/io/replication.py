"""PostgreSQL logical replication for `capture: logical`: the spec's publication and slot, their
state, and a stream of decoded changes read over the replication protocol.

The stream (psycopg2's replication connection: psycopg 3 has no replication
protocol) is pushed by the server as transactions commit, so waiting on its
socket is the wake-up — no polling, and every WAL record is decoded once
(the SQL functions would decode again from the slot's restart point on every
call). The position the server may discard WAL up to is only ever moved by
`confirm`, which the drain calls after Elasticsearch acknowledged.
"""

from __future__ import annotations

import contextlib
import select
import time
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras
from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core import logical
from sync_pipeline.core.fanout import Watched
from sync_pipeline.core.pgoutput import Begin, Decoder, Message, unix_seconds
from sync_pipeline.core.quoting import qualified_table, quote_ident
from sync_pipeline.io.postgres import libpq_url


class SlotMissing(RuntimeError):
    """The spec's replication slot does not exist (never installed, or dropped behind our back)."""


class SlotBusy(RuntimeError):
    """Another session reads the spec's slot (a drain of another run)."""


def _identity(conn: Connection, table: str) -> tuple[str, bool]:
    row = conn.exec_driver_sql(
        "SELECT c.relreplident, "
        "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) "
        "FROM pg_class c WHERE c.oid = CAST(%(t)s AS regclass)",
        {"t": qualified_table(table)},
    ).one()
    return str(row[0]), bool(row[1])


def _publication_exists(conn: Connection, spec: str) -> bool:
    publication = logical.publication_name(spec)
    found = conn.exec_driver_sql("SELECT 1 FROM pg_publication WHERE pubname = %(p)s", {"p": publication})
    return found.first() is not None


def install_publication(conn: Connection, spec: str, watched: list[Watched]) -> None:
    """The publication for exactly the watched tables, and REPLICA IDENTITY FULL where a change
    would otherwise not carry what the drain needs (core/logical.needs_full_identity); in the
    caller's transaction, which must commit before the slot is created (the slot decodes with
    the catalog of each change's time, where the publication must exist already)."""
    for table in dict.fromkeys(w.table for w in watched):
        identity, has_key = _identity(conn, table)
        if any(logical.needs_full_identity(w, identity, has_key) for w in watched if w.table == table):
            conn.exec_driver_sql(logical.replica_identity_sql(table))
    exists = _publication_exists(conn, spec)
    conn.exec_driver_sql(logical.publication_sql(spec, [w.table for w in watched], exists))


def create_slot(engine: Engine, spec: str) -> bool:
    """The spec's slot, unless it exists; True when created. Outside any transaction: PostgreSQL
    waits here for the transactions running now to end (a slot starts at a consistent point)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if slot_state(conn, spec) is not None:
            return False
        conn.exec_driver_sql(
            "SELECT pg_create_logical_replication_slot(%(s)s, %(p)s)",
            {"s": logical.slot_name(spec), "p": logical.PLUGIN},
        )
    return True


def drop(engine: Engine, spec: str) -> list[str]:
    """Drop the spec's slot and publication (what exists of them); what was dropped."""
    dropped = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        state = slot_state(conn, spec)
        if state is not None:
            if state.active_pid is not None:
                raise SlotBusy(
                    f"replication slot {state.slot} is read by PostgreSQL process {state.active_pid} "
                    "(a drain running now): stop it first, then uninstall"
                )
            conn.exec_driver_sql("SELECT pg_drop_replication_slot(%(s)s)", {"s": state.slot})
            dropped.append(f"slot {state.slot}")
        publication = logical.publication_name(spec)
        if _publication_exists(conn, spec):
            conn.exec_driver_sql(f"DROP PUBLICATION {quote_ident(publication)}")
            dropped.append(f"publication {publication}")
    return dropped


@dataclass(frozen=True)
class SlotState:
    slot: str
    active_pid: int | None
    lag_bytes: int  # WAL written since the confirmed position: what the server keeps for us
    wal_status: str | None  # reserved / extended / unreserved / lost
    safe_wal_size: int | None  # bytes left before max_slot_wal_keep_size invalidates the slot
    confirmed_lsn: str | None

    @property
    def lost(self) -> bool:
        return self.wal_status == "lost"


_SLOTS = (
    "SELECT slot_name, active_pid, "
    "COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint, "
    "wal_status, safe_wal_size, confirmed_flush_lsn::text "
    "FROM pg_replication_slots WHERE database = current_database() AND slot_type = 'logical' "
)


def slot_state(conn: Connection, spec: str) -> SlotState | None:
    row = conn.exec_driver_sql(_SLOTS + "AND slot_name = %(s)s", {"s": logical.slot_name(spec)}).first()
    return None if row is None else SlotState(*row)


def our_slots(conn: Connection) -> list[SlotState]:
    """Every slot of this database named like ours, whichever spec (or none) it belongs to."""
    rows = conn.exec_driver_sql(
        _SLOTS + "AND slot_name LIKE %(p)s ORDER BY slot_name",
        {"p": logical.SLOT_PREFIX.replace("_", r"\_") + "%"},
    ).all()
    return [SlotState(*row) for row in rows]


def published_tables(conn: Connection, spec: str) -> set[str] | None:
    """The tables the spec's publication carries (schema.table); None when it does not exist."""
    if not _publication_exists(conn, spec):
        return None
    rows = conn.exec_driver_sql(
        "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %(p)s",
        {"p": logical.publication_name(spec)},
    ).scalars()
    return set(rows)


def wal_level(conn: Connection) -> str:
    return str(conn.exec_driver_sql("SHOW wal_level").scalar_one())


def slot_lag_seconds(conn: Connection, spec: str) -> float | None:
    """How long the oldest unconfirmed change of the spec's tables has waited (the commit time of
    the first transaction the slot would send); None when nothing of theirs is pending. Decodes
    from the slot's restart point: for `doctor` and the sensor, not for a loop. The caller makes
    sure no drain reads the slot (an active slot cannot be peeked)."""
    rows = conn.exec_driver_sql(
        "SELECT data FROM pg_logical_slot_peek_binary_changes(%(s)s, NULL, 1, "
        "'proto_version', '1', 'publication_names', %(p)s)",
        {"s": logical.slot_name(spec), "p": logical.publication_name(spec)},
    ).all()
    for (data,) in rows:
        message = Decoder().decode(bytes(data)) if bytes(data)[:1] == b"B" else None
        if isinstance(message, Begin):
            return max(0.0, time.time() - unix_seconds(message.commit_time_us))
    return None


class ChangeStream:
    """The spec's slot read over the replication protocol, one decoded message at a time."""

    def __init__(self, url: str, spec: str):
        self.spec = spec
        self.slot = logical.slot_name(spec)
        self.decoder = Decoder()
        try:
            self._conn = psycopg2.connect(
                libpq_url(url, "sync_pipeline_logical"),
                connection_factory=psycopg2.extras.LogicalReplicationConnection,
            )
        except psycopg2.OperationalError as exc:
            raise ConnectionError(f"replication connection for slot {self.slot}: {exc}".strip()) from exc
        self._cursor = self._conn.cursor()
        options = {"proto_version": "1", "publication_names": logical.publication_name(spec)}
        try:
            self._cursor.start_replication(slot_name=self.slot, decode=False, options=options)
        except psycopg2.errors.UndefinedObject:
            self.close()
            raise SlotMissing(
                f"spec '{spec}': replication slot {self.slot} does not exist — it was never installed "
                f"or was dropped outside sync_pipeline, so changes since are unknown. Run "
                f"`sync-pipeline install-triggers --spec {spec}` (a new slot), then "
                f"`sync-pipeline sync --spec {spec} --full` (a full sync after it covers the gap)"
            ) from None
        except psycopg2.errors.ObjectInUse as exc:
            self.close()
            raise SlotBusy(f"spec '{spec}': replication slot {self.slot} is in use: {exc}".strip()) from None
        except psycopg2.Error as exc:
            self.close()
            raise ConnectionError(
                f"spec '{spec}': reading replication slot {self.slot}: {exc}".strip()
            ) from exc

    def read(self, timeout: float) -> Message | None:
        """The next message; None when none came within `timeout` (a message arriving in several
        packets is waited for whole)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._cursor.read_message()
            if message is not None:
                return self.decoder.decode(message.payload)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            select.select([self._cursor], [], [], left)

    @property
    def server_position(self) -> int:
        """The furthest WAL position the server said it has sent (keepalives carry it)."""
        return int(self._cursor.wal_end or 0)

    def confirm(self, lsn: int) -> None:
        """Tell the server everything up to `lsn` is applied: it may discard that WAL."""
        self._cursor.send_feedback(write_lsn=lsn, flush_lsn=lsn, apply_lsn=lsn, force=True)

    def ping(self) -> None:
        """Ask the server for a keepalive now: it carries how far the server has read."""
        self._cursor.send_feedback(reply=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken connection must not mask the cause
            self._conn.close()

    def __enter__(self) -> ChangeStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
