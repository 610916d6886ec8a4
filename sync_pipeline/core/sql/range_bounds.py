"""Where a window's key ranges end (core/sql/statements.KeyRange): the bound probe and the
planner's estimate that spares small windows the probe (ops/window_ranges.py)."""

from __future__ import annotations

from collections.abc import Sequence

from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.columns import ColumnInfo
from sync_pipeline.core.sql.keys import canonical_sql
from sync_pipeline.core.sql.statements import (
    Binds,
    KeyRange,
    Statement,
    root_column,
    source_sql,
    where_clause,
    window_predicate,
)
from sync_pipeline.core.windows import Window


def key_range_bound(
    spec: SyncSpec, columns: Sequence[ColumnInfo], window: Window, after: Sequence[str] | None, rows: int
) -> Statement:
    """The canonical texts of the key `rows` keys after `after` among the window's rows, in
    `KeyRange` order (the inclusive upper bound of the next range), and of the key after it. Fewer
    than two rows: no more than `rows` keys are left, and the next range is the last. On a table
    whose rows all share the window, the primary key's index walks `rows` entries and stops."""
    binds = Binds(literal=True)
    info = {c.name: c for c in columns}
    keys = spec.source.primary_key
    conditions = [window_predicate(spec, window, binds, columns)]
    if after is not None:
        conditions += KeyRange(after=tuple(after)).conditions(spec, columns)
    zone = spec.naive_timezone
    texts = ", ".join(canonical_sql(info[name], root_column(name, spec), zone) for name in keys)
    order = ", ".join(root_column(name, spec) for name in keys)
    return Statement(
        f"SELECT {texts} FROM {source_sql(spec, literal=True)}{where_clause(conditions)} "
        f"ORDER BY {order} OFFSET {int(rows) - 1} LIMIT 2",
        literal=True,
    )


def window_estimate(spec: SyncSpec, columns: Sequence[ColumnInfo], window: Window) -> Statement:
    """The planner's estimate of the window's rows (EXPLAIN: nothing is read), so that a window far
    below `range_rows` costs no bound probe, which without an index on updated_at scans the table."""
    binds = Binds(literal=True)
    where = where_clause([window_predicate(spec, window, binds, columns)])
    return Statement(
        f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {source_sql(spec, literal=True)}{where}", literal=True
    )
