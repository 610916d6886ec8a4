"""The logical drain's session table of decoded changes: where the entries of related and change
tables a slot delivered are written, to be claimed and resolved to their documents exactly as the
buffer's are (io/buffer.claim, core/cdc/fanout.py both read a table of the buffer's columns).

A temporary table of the drain's own session, emptied at each commit: nothing of it outlives the
transaction that resolved it, and no other session ever sees it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from sync_pipeline.core.cdc.logical import Entry
from sync_pipeline.io import buffer

CHANGES = "pg_temp.sync_pipeline_changes"
_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS sync_pipeline_changes (id bigserial PRIMARY KEY, "
    "spec text NOT NULL, source text, pk jsonb NOT NULL, op char(1) NOT NULL, link jsonb) "
    "ON COMMIT DELETE ROWS"
)


def create(conn: Connection) -> None:
    """The session's table, once per session (not in every apply), in the caller's transaction."""
    conn.exec_driver_sql(_DDL)


def add(conn: Connection, spec: str, entries: Sequence[Entry]) -> None:
    """The entries, in their order, until the caller's transaction ends."""
    buffer.add_entries(conn, spec, entries, CHANGES)
