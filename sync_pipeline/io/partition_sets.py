"""The partitions each watched partitioned table had when a spec last looked: what tells a drain
that a partition was detached, attached or dropped — none of which fires a trigger or writes a
row change to the WAL, yet each removes or adds rows of the table."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from sync_pipeline.core.cdc.grants import PARTITION_SETS_TABLE as TABLE
from sync_pipeline.core.sql.quoting import qualified_table

_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (spec text NOT NULL, source_table text NOT NULL, "
    "partitions oid[] NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(), "
    "PRIMARY KEY (spec, source_table))"
)


def ensure_table(conn: Connection) -> None:
    """Install only (the caller bounds it with the buffer's creation): a new table of our own."""
    conn.exec_driver_sql(_DDL)


def table_exists(conn: Connection) -> bool:
    return conn.exec_driver_sql(f"SELECT to_regclass('{TABLE}')").scalar() is not None


def current(conn: Connection, table: str) -> list[int] | None:
    """The ids of every partition of `table` now (any level, sorted); None for a table that is
    not partitioned (or not there)."""
    row = conn.exec_driver_sql(
        "SELECT c.relkind = 'p', ARRAY(SELECT p.relid::oid FROM pg_partition_tree(c.oid) p "
        "WHERE p.level > 0 ORDER BY 1) FROM pg_class c WHERE c.oid = to_regclass(%(t)s)",
        {"t": qualified_table(table)},
    ).first()
    if row is None or not row[0]:
        return None
    return [int(oid) for oid in row[1]]


def recorded(conn: Connection, spec: str, table: str) -> list[int] | None:
    found = conn.exec_driver_sql(
        f"SELECT partitions FROM {TABLE} WHERE spec = %(s)s AND source_table = %(t)s",
        {"s": spec, "t": table},
    ).first()
    return None if found is None else sorted(int(oid) for oid in found[0])


def record(conn: Connection, spec: str, table: str, partitions: list[int], replace: bool = True) -> None:
    """Store the set; `replace` False keeps one stored already (a re-install must not hide a
    change no drain has answered yet)."""
    conflict = "UPDATE SET partitions = EXCLUDED.partitions, recorded_at = now()" if replace else "NOTHING"
    conn.exec_driver_sql(
        f"INSERT INTO {TABLE} (spec, source_table, partitions) "
        f"VALUES (%(s)s, %(t)s, CAST(%(p)s AS oid[])) ON CONFLICT (spec, source_table) DO {conflict}",
        {"s": spec, "t": table, "p": partitions},
    )


def forget(conn: Connection, spec: str) -> None:
    """Uninstall: the spec's sets go with its capture."""
    if table_exists(conn):
        conn.exec_driver_sql(f"DELETE FROM {TABLE} WHERE spec = %(s)s", {"s": spec})
