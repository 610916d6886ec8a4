"""PostgreSQL logical replication for `capture: logical`: the spec's publication and slot, and
their state. The slot's stream of decoded changes is io/change_stream.py.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.cdc import logical
from sync_pipeline.core.cdc.fanout import Watched
from sync_pipeline.core.cdc.pgoutput import Begin, Decoder, unix_seconds
from sync_pipeline.core.sql.quoting import qualified_table, quote_ident


class SlotMissing(RuntimeError):
    """The spec's replication slot does not exist (never installed, or dropped behind our back)."""


class SlotBusy(RuntimeError):
    """Another session reads the spec's slot (a drain of another run)."""


def snapshot_sees(conn: Connection, xids: set[int]) -> bool:
    """Does the snapshot of the caller's transaction see every transaction of `xids`? (Its first
    statement: in REPEATABLE READ, it takes the snapshot every later statement reads.)"""
    snapshot = conn.exec_driver_sql("SELECT CAST(pg_current_snapshot() AS text)").scalar_one()
    return all(logical.visible_in(xid, snapshot) for xid in xids)


def insert_position(engine: Engine) -> int:
    """The WAL's insert position now, as the replication protocol numbers positions."""
    with engine.connect() as conn:
        # the insert position, not the written or flushed one: an asynchronous commit
        # (synchronous_commit = off) may still sit in the WAL buffers, and reaches the slot only
        # once the WAL writer flushed it — moments later; it is still waited for
        lsn = conn.exec_driver_sql("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')").scalar_one()
        conn.commit()
    return int(lsn)


def insert_lsn(conn: Connection) -> str:
    """The WAL's insert position now, as PostgreSQL writes an LSN (`0/16B3748`)."""
    return conn.exec_driver_sql("SELECT CAST(pg_current_wal_insert_lsn() AS text)").scalar_one()


def resolved_name(conn: Connection, table: str) -> str | None:
    """`schema.table` as the catalog names the table (search_path applied), as a publication
    lists it; None when there is no such table."""
    return conn.exec_driver_sql(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%(t)s)",
        {"t": qualified_table(table)},
    ).scalar()


def _identity(conn: Connection, table: str) -> tuple[str, bool, frozenset[str]]:
    """The table's replica identity, whether it has a primary key, and the columns an UPDATE or
    DELETE logs of the old row under that identity (the primary key's, or the identity index's)."""
    row = conn.exec_driver_sql(
        "SELECT c.relreplident, "
        "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), "
        "ARRAY(SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = c.oid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = c.oid AND CASE c.relreplident "
        "WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END) "
        "FROM pg_class c WHERE c.oid = CAST(%(t)s AS regclass)",
        {"t": qualified_table(table)},
    ).one()
    return str(row[0]), bool(row[1]), frozenset(row[2])


def _publication_exists(conn: Connection, spec: str) -> bool:
    publication = logical.publication_name(spec)
    found = conn.exec_driver_sql("SELECT 1 FROM pg_publication WHERE pubname = %(p)s", {"p": publication})
    return found.first() is not None


def _tree(conn: Connection, table: str) -> list[tuple[int, str]]:
    """`table` and every partition of it at any level: (oid, schema.name), the table first."""
    rows = conn.exec_driver_sql(
        "SELECT c.oid, n.nspname || '.' || c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = to_regclass(%(t)s) "
        "OR c.oid IN (SELECT relid FROM pg_partition_tree(to_regclass(%(t)s))) "
        "ORDER BY c.oid <> to_regclass(%(t)s), 2",
        {"t": qualified_table(table)},
    ).all()
    return [(int(oid), str(name)) for oid, name in rows]


def relation_ids(conn: Connection, table: str) -> list[int]:
    """The ids pgoutput may report the table's changes under: its own, and (a partitioned table
    published without publish_via_partition_root) each of its partitions'."""
    return [oid for oid, _ in _tree(conn, table)]


def by_relation(conn: Connection, watched: Sequence[Watched]) -> dict[int, list[Watched]]:
    """Per relation id a change may arrive under, the watched tables it belongs to: a partitioned
    table's changes arrive under its partitions' ids (see core/cdc/logical.publication_sql)."""
    found: dict[int, list[Watched]] = {}
    for table in watched:
        for oid in relation_ids(conn, table.table):
            found.setdefault(oid, []).append(table)
    return found


def ancestor_ids(conn: Connection, relid: int) -> list[int]:
    """The partitioned tables `relid` is a partition of now (none when it is not one, or gone)."""
    rows = conn.exec_driver_sql(
        "SELECT a.relid FROM pg_class c, pg_partition_ancestors(c.oid) a "
        "WHERE c.oid = CAST(%(r)s AS oid) AND a.relid <> c.oid",
        {"r": relid},
    ).scalars()
    return [int(r) for r in rows]


def set_identity(conn: Connection, table: str, watched: list[Watched]) -> None:
    """REPLICA IDENTITY FULL on `table` where a change would otherwise not carry what the drain
    needs (core/cdc/logical.needs_full_identity). A partitioned table's setting does not reach its
    partitions, whose own identity is what their changes log: each is set too. ALTER TABLEs:
    the caller bounds their locks."""
    mine = [w for w in watched if w.table == table]
    for _, name in _tree(conn, table):
        identity, has_key, logged = _identity(conn, name)
        if any(logical.needs_full_identity(w, identity, has_key, logged) for w in mine):
            conn.exec_driver_sql(logical.replica_identity_sql(name))


def install_publication(conn: Connection, spec: str, watched: list[Watched]) -> None:
    """The publication for exactly the watched tables, in the caller's transaction, which must
    commit before the slot is created."""
    exists = _publication_exists(conn, spec)
    conn.exec_driver_sql(logical.publication_sql(spec, [w.table for w in watched], exists))


def create_slot(conn: Connection, spec: str) -> bool:
    """The spec's slot, unless it exists; True when created. `conn` in autocommit: PostgreSQL
    waits here for the transactions running now to end (a slot starts at a consistent point)."""
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
    # WAL the server keeps for the slot: from restart_lsn, which an open transaction (or a
    # running-xacts record not yet decoded) holds behind the confirmed position
    lag_bytes: int
    wal_status: str | None  # reserved / extended / unreserved / lost
    safe_wal_size: int | None  # bytes left before max_slot_wal_keep_size invalidates the slot
    confirmed_lsn: str | None

    @property
    def lost(self) -> bool:
        return self.wal_status == "lost"


_SLOTS = (
    "SELECT slot_name, active_pid, "
    "COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint, "
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


def peek(conn: Connection, spec: str, upto_lsn: str, changes: int) -> list[bytes]:
    """The slot's pgoutput messages of whole transactions committed before `upto_lsn`, from its
    confirmed position, about `changes` of them (the last transaction is read to its end);
    nothing is consumed. The caller makes sure no drain reads the slot."""
    rows = conn.exec_driver_sql(
        "SELECT data FROM pg_logical_slot_peek_binary_changes(%(s)s, CAST(%(u)s AS pg_lsn), %(n)s, "
        "'proto_version', '1', 'publication_names', %(p)s)",
        {"s": logical.slot_name(spec), "u": upto_lsn, "n": changes, "p": logical.publication_name(spec)},
    ).scalars()
    return [bytes(data) for data in rows]


def advance(engine: Engine, spec: str, position: int) -> None:
    """Confirm the slot up to `position` (an LSN as a number): what lies before is not sent again."""
    lsn = f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(
            "SELECT pg_replication_slot_advance(%(s)s, CAST(%(l)s AS pg_lsn))",
            {"s": logical.slot_name(spec), "l": lsn},
        )
