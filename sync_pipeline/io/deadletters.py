"""Documents Elasticsearch refused for good, kept in PostgreSQL instead of lost.

A mapping or parse error on one document must neither sink its batch nor
vanish: the rest of the batch lands, the refused document is stored here with
its error, the run's asset check fails, and `dead-letters replay` retries it
after the data or the mapping is fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from sync_pipeline.core.load.bulk import Rejected

metadata = sa.MetaData()

DEAD_LETTERS = sa.Table(
    "sync_pipeline_dead_letters",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("spec", sa.Text, nullable=False, index=True),
    sa.Column("partition", sa.Text),
    sa.Column("run_id", sa.Text),
    sa.Column("doc_id", sa.Text, nullable=False),
    sa.Column("document", JSONB),
    sa.Column("error", JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)


def ensure_table(conn: Connection) -> None:
    metadata.create_all(conn, tables=[DEAD_LETTERS], checkfirst=True)


def record(
    conn: Connection, spec: str, rejected: Sequence[Rejected], partition: str | None, run_id: str | None
) -> int:
    """Keep `rejected` as the spec's dead letters: one per document, the latest refusal (a row
    still refused when it changes again replaces its letter; replay retries it once)."""
    if not rejected:
        return 0
    ensure_table(conn)
    latest = {r.doc_id: r for r in rejected}
    doc_id = DEAD_LETTERS.c.doc_id
    conn.execute(DEAD_LETTERS.delete().where(DEAD_LETTERS.c.spec == spec, doc_id.in_(list(latest))))
    conn.execute(
        DEAD_LETTERS.insert(),
        [
            {
                "spec": spec,
                "partition": partition,
                "run_id": run_id,
                "doc_id": r.doc_id,
                "document": r.action.get("_source"),
                "error": r.error,
            }
            for r in latest.values()
        ],
    )
    return len(rejected)


def doc_ids(conn: Connection, spec: str) -> set[str]:
    """The document ids the spec's dead letters hold (none before the table exists: a read,
    so verify creates nothing in the user's database). A role that may not read the table (a
    verify needs SELECT on the spec's tables only) gets none: its dead letters are drift to it."""
    readable = sa.text(
        "SELECT to_regclass(:t) IS NOT NULL AND has_table_privilege(to_regclass(:t), 'SELECT')"
    )
    if not conn.execute(readable, {"t": DEAD_LETTERS.name}).scalar():
        return set()
    return set(conn.execute(sa.select(DEAD_LETTERS.c.doc_id).where(DEAD_LETTERS.c.spec == spec)).scalars())


def list_dead_letters(conn: Connection, spec: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    ensure_table(conn)
    query = sa.select(DEAD_LETTERS).order_by(DEAD_LETTERS.c.id).limit(limit)
    if spec:
        query = query.where(DEAD_LETTERS.c.spec == spec)
    return [dict(row._mapping) for row in conn.execute(query)]


def count(conn: Connection, spec: str | None = None) -> int:
    ensure_table(conn)
    query = sa.select(sa.func.count()).select_from(DEAD_LETTERS)
    if spec:
        query = query.where(DEAD_LETTERS.c.spec == spec)
    return int(conn.execute(query).scalar_one())


def counts(conn: Connection) -> dict[str, int]:
    """Dead letters per spec; read only (no table yet: none)."""
    if conn.exec_driver_sql(f"SELECT to_regclass('{DEAD_LETTERS.name}')").scalar() is None:
        return {}
    query = sa.select(DEAD_LETTERS.c.spec, sa.func.count()).group_by(DEAD_LETTERS.c.spec)
    return {spec: int(n) for spec, n in conn.execute(query)}


def purge(conn: Connection, spec: str | None = None, older_than: float | None = None) -> int:
    """Delete dead letters (of one spec or all; only those stored more than `older_than` seconds
    ago when given); the number deleted."""
    ensure_table(conn)
    statement = DEAD_LETTERS.delete()
    if spec:
        statement = statement.where(DEAD_LETTERS.c.spec == spec)
    if older_than is not None:
        cutoff = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, older_than)
        statement = statement.where(DEAD_LETTERS.c.created_at < cutoff)
    return conn.execute(statement).rowcount


def claim(conn: Connection, spec: str, limit: int, after_id: int = 0) -> list[tuple[int, str]]:
    """(id, doc_id) of dead letters to replay, locked so two replays never overlap."""
    ensure_table(conn)
    query = (
        sa.select(DEAD_LETTERS.c.id, DEAD_LETTERS.c.doc_id)
        .where(DEAD_LETTERS.c.spec == spec, DEAD_LETTERS.c.id > after_id)
        .order_by(DEAD_LETTERS.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [(row.id, row.doc_id) for row in conn.execute(query)]


def record_error(conn: Connection, entry_id: int, error: dict[str, Any]) -> None:
    """A dead letter refused again: keep it, with its newest error."""
    conn.execute(DEAD_LETTERS.update().where(DEAD_LETTERS.c.id == entry_id).values(error=error))


def remove(conn: Connection, ids: Sequence[int]) -> None:
    if ids:
        conn.execute(DEAD_LETTERS.delete().where(DEAD_LETTERS.c.id.in_(list(ids))))
