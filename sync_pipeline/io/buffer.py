"""The change buffer: a trigger-fed outbox that carries inserts, updates and
hard deletes to Elasticsearch, including the ones time windows cannot see.

Triggers append (spec, primary key, operation, changed_at, transaction id) in
the writer's own transaction, so a change is buffered if and only if it
commits. A drain claims entries with FOR UPDATE SKIP LOCKED (two drains never
take the same entry), re-reads the current rows, indexes or deletes them, and
deletes the entries only after Elasticsearch acknowledged every document —
in the same transaction as the claim, so a crash anywhere leaves them queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.specs import SyncSpec, split_table

metadata = sa.MetaData()

BUFFER = sa.Table(
    "sync_pipeline_buffer",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("pk", JSONB, nullable=False),
    sa.Column("op", sa.CHAR(1), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()")),
    sa.Column("txid", sa.BigInteger, server_default=sa.text("txid_current()")),
    sa.Index("sync_pipeline_buffer_spec_id", "spec", "id"),
    schema="public",  # the trigger functions name it schema-qualified, whatever a writer's search_path
)


def ensure_buffer(conn: Connection) -> None:
    metadata.create_all(conn, tables=[BUFFER], checkfirst=True)


def _names(spec: SyncSpec) -> tuple[str, str]:
    # spec names are [a-z0-9_] (validated), so these are safe, stable identifiers
    return f"sync_pipeline_capture_{spec.name}", f"sync_pipeline_{spec.name}"


def _literal(text: str) -> str:
    """A SQL string literal (PL/pgSQL bodies cannot take bind parameters)."""
    return "'" + text.replace("'", "''") + "'"


def trigger_ddl(conn: Connection, spec: SyncSpec, table: str) -> list[str]:
    """DDL for one table's capture trigger; every identifier goes through the dialect's quoting."""
    quote = conn.dialect.identifier_preparer.quote
    schema, name = split_table(table)
    qualified = ".".join(quote(p) for p in (schema, name) if p)
    function, trigger = _names(spec)
    function_qualified = ".".join(quote(p) for p in (schema, function) if p)

    def key_json(row: str) -> str:
        parts = ", ".join(f"{_literal(c)}, {row}.{quote(c)}" for c in spec.source.primary_key)
        return f"jsonb_build_object({parts})"

    old_key, new_key = key_json("OLD"), key_json("NEW")
    spec_literal = _literal(spec.name)
    buffer_table = quote(BUFFER.name)
    function_sql = f"""
CREATE OR REPLACE FUNCTION {function_qualified}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND {old_key} IS DISTINCT FROM {new_key}) THEN
    INSERT INTO public.{buffer_table} (spec, pk, op) VALUES ({spec_literal}, {old_key}, 'D');
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO public.{buffer_table} (spec, pk, op) VALUES ({spec_literal}, {new_key}, left(TG_OP, 1));
  END IF;
  RETURN NULL;
END
$body$"""
    return [
        function_sql,
        f"DROP TRIGGER IF EXISTS {quote(trigger)} ON {qualified}",
        f"CREATE TRIGGER {quote(trigger)} AFTER INSERT OR UPDATE OR DELETE ON {qualified} "
        f"FOR EACH ROW EXECUTE FUNCTION {function_qualified}()",
    ]


def install_triggers(conn: Connection, spec: SyncSpec) -> list[str]:
    """Create the buffer table and the spec's triggers; idempotent. Returns the tables covered."""
    tables = spec.source.trigger_tables
    if not tables:
        raise ValueError(
            f"spec '{spec.name}' reads a query: name the tables to watch in source.change_tables"
        )
    ensure_buffer(conn)
    for table in tables:
        for statement in trigger_ddl(conn, spec, table):
            conn.exec_driver_sql(statement)
    return tables


def uninstall_triggers(conn: Connection, spec: SyncSpec) -> list[str]:
    quote = conn.dialect.identifier_preparer.quote
    tables = spec.source.trigger_tables
    for table in tables:
        schema, name = split_table(table)
        qualified = ".".join(quote(p) for p in (schema, name) if p)
        function, trigger = _names(spec)
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {quote(trigger)} ON {qualified}")
        function_qualified = ".".join(quote(p) for p in (schema, function) if p)
        conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {function_qualified}()")
    return tables


@dataclass
class BufferState:
    pending: int
    oldest_age_seconds: float | None
    max_id: int = 0  # newest entry: identifies "this much work" for run keys


def buffer_state(conn: Connection, spec: SyncSpec) -> BufferState:
    ensure_buffer(conn)
    row = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.extract("epoch", sa.func.clock_timestamp() - sa.func.min(BUFFER.c.changed_at)),
            sa.func.coalesce(sa.func.max(BUFFER.c.id), 0),
        ).where(BUFFER.c.spec == spec.name)
    ).one()
    age = float(row[1]) if row[1] is not None else None
    return BufferState(pending=int(row[0]), oldest_age_seconds=age, max_id=int(row[2]))


def claim(conn: Connection, spec: SyncSpec, limit: int) -> list[Any]:
    """The spec's oldest entries (id, pk, changed_at), locked: two drains never take the same entry,
    and the lock lasts until the caller's transaction ends."""
    return conn.execute(
        sa.select(BUFFER.c.id, BUFFER.c.pk, BUFFER.c.changed_at)
        .where(BUFFER.c.spec == spec.name)
        .order_by(BUFFER.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def remove(conn: Connection, ids: list[int]) -> None:
    conn.execute(BUFFER.delete().where(BUFFER.c.id.in_(ids)))


def has_pending(engine: Engine, spec: SyncSpec) -> bool:
    """One index probe: is anything buffered for the spec? (cheap enough to poll)"""
    with engine.connect() as conn:
        found = conn.execute(sa.select(BUFFER.c.id).where(BUFFER.c.spec == spec.name).limit(1)).first()
        conn.commit()
    return found is not None
