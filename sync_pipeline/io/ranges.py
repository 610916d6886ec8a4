"""Whole-table reads by key ranges, each in a snapshot of its own.

A read of every row in one transaction holds its snapshot for as long as the
read takes — hours on a large table, during which vacuum can remove no row
version any other transaction deleted since (bloat on hot tables and on the
change buffer). Here every range of `page_size` keys is one statement in a
transaction of its own, bounded by the statement timeout: no snapshot of ours
outlives a range, and memory is one range.

Each row still carries the version of the snapshot that read it (core/sql/versions.py:
the version is computed in the same statement, from its snapshot), so a range's
documents order against a drain's exactly as a whole-table snapshot's did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql import range_bounds
from sync_pipeline.core.sql import statements as sql
from sync_pipeline.core.sql.columns import ColumnInfo
from sync_pipeline.core.sql.keys import null_key_error
from sync_pipeline.core.sql.relations import RelationPlan
from sync_pipeline.core.sql.statements import Statement
from sync_pipeline.core.windows import Window
from sync_pipeline.io.postgres import execute, keyset_pages, repeatable_read
from sync_pipeline.settings import session_limits


@contextmanager
def range_transaction(engine: Engine) -> Iterator[Connection]:
    """A REPEATABLE READ transaction for one key range or one batch of keys: its statements
    share one snapshot, each bounded by the statement timeout (SYNC_PG_STATEMENT_TIMEOUT)."""
    with repeatable_read(engine) as conn, conn.begin():
        execute(conn, sql.local_statement_timeout(session_limits().statement_seconds))
        yield conn


def iter_key_ranges(
    engine: Engine,
    spec: SyncSpec,
    columns: Sequence[ColumnInfo],
    page_size: int,
    relations: Sequence[RelationPlan] = (),
) -> Iterator[pa.RecordBatch]:
    """Every row of the source in key order, as batches of at most `page_size` rows; each batch
    read in a transaction of its own that has ended before the batch is yielded. A row
    committed meanwhile is read if its key lies ahead of the ranges already read."""

    def fetch(statement: Statement) -> Sequence[Any]:
        with range_transaction(engine) as conn:
            return execute(conn, statement).fetchall()

    return keyset_pages(fetch, spec, columns, None, page_size, ["by_key"], relations)


def window_range_bound(
    engine: Engine,
    spec: SyncSpec,
    columns: Sequence[ColumnInfo],
    window: Window,
    after: Sequence[str] | None,
    rows: int,
) -> tuple[str, ...] | None:
    """The upper bound (canonical key texts) of the window's key range of `rows` rows after
    `after`; None when no more than `rows` rows are left (core/sql/range_bounds.key_range_bound).
    One statement of its own, bounded by the statement timeout."""
    with range_transaction(engine) as conn:
        found = execute(conn, range_bounds.key_range_bound(spec, columns, window, after, rows)).fetchall()
    if len(found) < 2:
        return None
    if any(text is None for text in found[0]):
        # a NULL key part compares as unknown: no range would hold the row, nor could bound one
        raise null_key_error(spec.name, "a row of the window has")
    return tuple(str(text) for text in found[0])


def estimated_window_rows(
    engine: Engine, spec: SyncSpec, columns: Sequence[ColumnInfo], window: Window
) -> float:
    """How many rows the planner expects in the window (core/sql/range_bounds.window_estimate)."""
    with engine.connect() as conn:
        plan = execute(conn, range_bounds.window_estimate(spec, columns, window)).scalar_one()
        conn.rollback()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])
