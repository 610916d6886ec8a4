"""Rows read through a server-side cursor in the caller's open transaction: a drain's fan-out
(core/cdc/fanout.fanned_out_rows) reads every document a change reaches in the claim's snapshot,
one evaluation of its statement, batch by batch, while the claim's other statements run between
two batches on the same connection."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import psycopg
import pyarrow as pa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from sync_pipeline.core.sql import statements as sql
from sync_pipeline.core.sql.columns import ColumnInfo, arrow_schema
from sync_pipeline.core.sql.relations import RelationPlan
from sync_pipeline.core.sql.statements import Statement
from sync_pipeline.io.postgres import rows_to_batch


def stream_rows(
    conn: Connection,
    statement: Statement,
    columns: Sequence[ColumnInfo],
    relations: Sequence[RelationPlan],
    size: int,
) -> Iterator[pa.RecordBatch]:
    """A read statement's rows (`sql.rows_where`) as batches of at most `size`, through a
    server-side cursor in the connection's open transaction, so in its snapshot: one evaluation of
    the statement however many batches it yields, and memory one batch however many rows match.
    Other statements may run on the connection between two batches."""
    schema = arrow_schema(sql.read_columns(columns, relations))
    cursor = conn.connection.driver_connection.cursor(name="sync_pipeline_rows")
    try:
        cursor.execute(statement.sql, statement.params)
        while rows := cursor.fetchmany(size):
            yield rows_to_batch(rows, schema)
    except psycopg.Error as exc:  # as SQLAlchemy raises any other statement's (is_serialization_failure …)
        raise DBAPIError.instance(statement.sql, statement.params, exc, psycopg.Error) from exc
    finally:
        with contextlib.suppress(Exception):  # a failed transaction: the cursor ends with it
            cursor.close()
