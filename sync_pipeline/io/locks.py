"""DDL in the user's database that can never stall the application behind it.

A statement that needs a table's lock waits for every transaction holding a
conflicting one, and while it waits every later writer of that table queues
behind it: one long transaction of the application plus one unbounded
`CREATE TRIGGER` stops all writes to the table. So every such statement here
runs with `lock_timeout`, one table per transaction (no lock on one table is
held while another is waited for), and is retried a few times with backoff;
a timeout is one line that names the table and the sessions holding it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from sync_pipeline.core.sql.statements import Statement
from sync_pipeline.io.postgres import execute
from sync_pipeline.settings import LockSettings

T = TypeVar("T")
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired (also NOWAIT)


class LockTimeout(RuntimeError):
    """A lock was not granted within the timeout, on every attempt; the step changed nothing."""


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def blockers(conn: Connection, table: str | None) -> str:
    """The sessions holding a lock on `table` (None: the sessions with an open transaction
    that has written, which a new replication slot waits for), as `pid N (user, application,
    state, in a transaction for S s)`. Another role's query text is not ours to show, and
    without pg_read_all_stats PostgreSQL hides its state too."""
    if table is None:
        where = "a.backend_xid IS NOT NULL"
        params: dict[str, str] = {}
    else:
        where = (
            "a.pid IN (SELECT l.pid FROM pg_locks l WHERE l.granted AND l.relation = to_regclass(%(table)s))"
        )
        params = {"table": table}
    rows = conn.exec_driver_sql(
        "SELECT a.pid, a.usename, a.application_name, a.state, "
        "extract(epoch FROM clock_timestamp() - a.xact_start)::int "
        f"FROM pg_stat_activity a WHERE {where} AND a.pid <> pg_backend_pid() ORDER BY a.xact_start",
        params,
    ).all()
    if not rows:
        return "a session that has ended since"
    described = []
    for pid, user, application, state, seconds in rows[:5]:
        details = [user or "?", repr(application or ""), state or "state hidden"]
        if seconds is not None:
            details.append(f"in a transaction for {seconds} s")
        described.append(f"pid {pid} ({', '.join(details)})")
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    return ", ".join(described) + more


def bounded(
    engine: Engine,
    what: str,
    table: str | None,
    work: Callable[[Connection], T],
    locks: LockSettings,
    autocommit: bool = False,
) -> T:
    """`work(conn)` in one transaction whose lock waits end after `locks.timeout_seconds`,
    tried `locks.attempts` times (the transaction rolls back in between, so nothing waits on
    us meanwhile). `what` and `table` name the step in the LockTimeout. `autocommit`: for a
    statement that cannot run in a transaction block (creating a replication slot)."""
    timeout_ms = max(1, int(locks.timeout_seconds * 1000))
    for attempt in range(1, locks.attempts + 1):
        try:
            if autocommit:
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql(f"SET lock_timeout = {timeout_ms}")
                    try:
                        return work(conn)
                    finally:
                        conn.exec_driver_sql("RESET lock_timeout")
            with engine.begin() as conn:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = {timeout_ms}")
                return work(conn)
        except DBAPIError as exc:
            if _sqlstate(exc) != LOCK_NOT_AVAILABLE:
                raise
            with engine.connect() as conn:
                holding = blockers(conn, table)
            if attempt == locks.attempts:
                where = f" on {table}" if table else ""
                raise LockTimeout(
                    f"{what}: no lock{where} within {locks.timeout_seconds:g} s, {locks.attempts} "
                    f"times; held by {holding}. Nothing of this step was changed; try again when "
                    "that transaction has ended (SYNC_PG_LOCK_TIMEOUT / SYNC_PG_LOCK_ATTEMPTS)"
                ) from None
            time.sleep(locks.backoff_seconds * 2 ** (attempt - 1))
    raise AssertionError("unreachable")  # the loop returns or raises


def _advisory(function: str, name: str) -> Statement:
    return Statement(f"SELECT {function}(hashtext(%(key)s))", {"key": name})


@contextmanager
def advisory_lock(engine: Engine, name: str) -> Iterator[bool]:
    """Try the session-level advisory lock keyed by `name` (one key per name, across processes);
    yields whether this session holds it, and releases it on the way out. No transaction stays
    open meanwhile: the work inside may take long (a rebuild)."""
    with engine.connect() as conn:
        held = bool(execute(conn, _advisory("pg_try_advisory_lock", name)).scalar_one())
        conn.commit()
        try:
            yield held
        finally:
            if held:
                execute(conn, _advisory("pg_advisory_unlock", name))
                conn.commit()
