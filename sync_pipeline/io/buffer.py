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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from elasticsearch import Elasticsearch
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.documents import build_plan, document_id, index_mapping, index_settings
from sync_pipeline.core.specs import SyncSpec, split_table
from sync_pipeline.io import deadletters
from sync_pipeline.io.elasticsearch import BatchResult, LoadTotals, ensure_index
from sync_pipeline.io.postgres import describe_source
from sync_pipeline.ops.resync import resync_keys

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


class DrainError(RuntimeError):
    """Elasticsearch did not take every document; the claimed entries stay buffered."""


def ensure_buffer(conn: Connection) -> None:
    metadata.create_all(conn, tables=[BUFFER], checkfirst=True)


def _names(spec: SyncSpec, table: str) -> tuple[str, str]:
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
    function, trigger = _names(spec, table)
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
        function, trigger = _names(spec, table)
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


@dataclass
class DrainTotals(LoadTotals):
    claimed: int = 0
    first_rejections: list[dict[str, Any]] = field(default_factory=list)

    def absorb(self, other: LoadTotals) -> None:
        """Add another drain's totals (a following drain's later rounds)."""
        for name in ("batches", "indexed", "deleted", "stale_skipped", "failed", "dead_lettered", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.claimed += getattr(other, "claimed", 0)
        self.first_errors.extend(other.first_errors[: max(0, 5 - len(self.first_errors))])


def drain(
    engine: Engine,
    es: Elasticsearch,
    spec: SyncSpec,
    batch_size: int | None = None,
    run_id: str | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    max_batches: int | None = None,
) -> DrainTotals:
    """Drain the spec's buffered changes in claimed batches until the buffer is empty."""
    totals = DrainTotals()
    size = batch_size or spec.batch_size
    with engine.connect() as conn:
        ensure_buffer(conn)
        columns = describe_source(conn, spec)
        conn.commit()
    plan = build_plan(spec, columns)
    # an index op on a missing index would create it with dynamic mappings; create it from the spec
    ensure_index(es, spec.target.index, index_mapping(plan), index_settings(spec))
    number = 0
    while max_batches is None or number < max_batches:
        number += 1
        with engine.begin() as conn:
            claimed = conn.execute(
                sa.select(BUFFER.c.id, BUFFER.c.pk, BUFFER.c.changed_at)
                .where(BUFFER.c.spec == spec.name)
                .order_by(BUFFER.c.id)
                .limit(size)
                .with_for_update(skip_locked=True)
            ).all()
            if not claimed:
                break
            keys: dict[str, tuple[Any, ...]] = {}
            delete_versions: dict[str, int] = {}
            for row in claimed:
                key = tuple(row.pk[c] for c in spec.source.primary_key)
                doc_id = document_id(key)
                keys[doc_id] = key
                micros = int(row.changed_at.timestamp() * 1_000_000)
                delete_versions[doc_id] = max(delete_versions.get(doc_id, 0), micros)
            started = time.perf_counter()
            result = resync_keys(conn, es, spec, columns, plan, list(keys.values()), number, delete_versions)
            result.seconds = time.perf_counter() - started
            if result.failed:
                # raising rolls back the claim: every entry stays buffered for the next drain
                raise DrainError(
                    f"spec '{spec.name}': {result.failed} documents not acknowledged by Elasticsearch "
                    f"(first error: {result.errors[0] if result.errors else '?'}); changes stay buffered"
                )
            deadletters.record(conn, spec.name, result.rejected, "buffer", run_id)
            conn.execute(BUFFER.delete().where(BUFFER.c.id.in_([row.id for row in claimed])))
        totals.claimed += len(claimed)
        totals.add(result)
        if on_batch is not None:
            on_batch(result)
    if totals.batches:
        es.indices.refresh(index=spec.target.index)
    return totals


def has_pending(engine: Engine, spec: SyncSpec) -> bool:
    """One index probe: is anything buffered for the spec? (cheap enough to poll)"""
    with engine.connect() as conn:
        found = conn.execute(sa.select(BUFFER.c.id).where(BUFFER.c.spec == spec.name).limit(1)).first()
        conn.commit()
    return found is not None


def follow(
    engine: Engine,
    es: Elasticsearch,
    spec: SyncSpec,
    idle_seconds: float,
    max_seconds: float,
    run_id: str | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    poll_seconds: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DrainTotals:
    """Drain, then keep draining what arrives until the buffer stayed empty for `idle_seconds`
    (or `max_seconds` have passed since the start).

    A change committed while a drain follows is searchable within about
    `poll_seconds` plus its bulk request, instead of waiting for the sensor's
    next tick and a new run's start (several seconds each). `idle_seconds=0`
    is a single drain.
    """
    totals = drain(engine, es, spec, run_id=run_id, on_batch=on_batch)
    started = last_change = clock()
    while idle_seconds > 0:
        now = clock()
        if now - last_change >= idle_seconds or now - started >= max_seconds:
            break
        sleep(poll_seconds)
        if not has_pending(engine, spec):
            continue
        more = drain(engine, es, spec, run_id=run_id, on_batch=on_batch)
        if more.claimed:
            last_change = clock()
            totals.absorb(more)
    return totals
