"""Spec → SQL, as text: every statement sync_pipeline runs against a source.

Pure string building, so it is tested without a server. Identifiers from the
spec are always quoted (`quote_ident`), never formatted in raw; values travel
as psycopg `%(name)s` parameters, except in `literal` statements (the COPY
read cannot take parameters): there values are window bounds rendered from
`datetime`s and key-range bounds rendered by `text_literal`, and a query
source's text stays as written, so they run without parameter parsing
(`Statement.literal`: a '%' in them is not a placeholder).

Keyset pages order on (updated_at, primary key) and start strictly after the
last row of the previous page, so rows sharing one updated_at are never
skipped or repeated and no OFFSET makes later pages slower.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count
from typing import Any, Literal

from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql import poison
from sync_pipeline.core.sql.columns import ColumnInfo
from sync_pipeline.core.sql.keys import typed_sql
from sync_pipeline.core.sql.quoting import qualified_table, quote_ident, sql_literal, text_literal
from sync_pipeline.core.sql.relation_joins import Rows, joined
from sync_pipeline.core.sql.relations import RelationPlan, relation_sql
from sync_pipeline.core.sql.versions import VERSION_COLUMN, VERSION_SQL
from sync_pipeline.core.windows import Window

PageMode = Literal["window", "null_updated_at", "by_key"]

_SIMPLE_TYPE = re.compile(r"^[a-z_][a-z0-9_ ]*$")


class SourceError(ValueError):
    """The spec's source does not match the database (unknown table, column, bad query)."""


@dataclass(frozen=True)
class Statement:
    """SQL text and its parameters (psycopg's `%(name)s` style); `literal`: none, and its text
    is sent as it is (built with `source_sql(literal=True)`: a '%' in it is no placeholder)."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)
    literal: bool = False


def type_name(pg_type: str) -> str:
    """A type for CAST: built-in names as they are, anything else quoted."""
    return pg_type if _SIMPLE_TYPE.match(pg_type) else quote_ident(pg_type)


class Binds:
    """Collects parameters, or renders window bounds as literals for statements that cannot
    take parameters."""

    def __init__(self, literal: bool = False) -> None:
        self.literal = literal
        self.params: dict[str, Any] = {}

    def value(self, name: str, value: Any, cast: str | None = None) -> str:
        if self.literal:
            raise ValueError("a literal statement takes only timestamps")
        self.params[name] = value
        placeholder = f"%({name})s"
        return f"CAST({placeholder} AS {cast})" if cast else placeholder

    def instant(self, name: str, value: datetime) -> str:
        if self.literal:
            # isoformat of a datetime holds digits, '-', ':', '.', '+', 'T' only: nothing to escape
            return f"CAST('{value.isoformat()}' AS timestamptz)"
        return self.value(name, value, "timestamptz")


ROOT_ALIAS = "__sync_root"
JOINED_ROOT_ALIAS = "__sync_w"  # the root table again, inside a relation's pre-aggregated join


def source_sql(spec: SyncSpec, literal: bool = False) -> str:
    """The FROM item of the spec: its table (named for the relations' correlated subqueries), or
    its query as a subquery named `src`."""
    if spec.source.table is not None:
        return f"{qualified_table(spec.source.table)} AS {ROOT_ALIAS}"
    assert spec.source.query is not None
    # with parameters, psycopg reads '%' as a placeholder: a query's own % (LIKE 'a%') doubles
    query = spec.source.query if literal else spec.source.query.replace("%", "%%")
    return f"({query}) AS src"


def probe(spec: SyncSpec) -> Statement:
    """No rows, only the column names and types of the source."""
    return Statement(f"SELECT * FROM {source_sql(spec)} LIMIT 0")


def check_columns(spec: SyncSpec, columns: Sequence[ColumnInfo]) -> None:
    """Every column the spec names must exist in the source: a SourceError otherwise."""
    where = f"source of spec '{spec.name}'"
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise SourceError(f"{where}: the query returns duplicate column names {names}")
    required = [*spec.source.primary_key, spec.source.updated_at]
    required += [c for c in (spec.source.soft_delete,) if c]
    missing = [c for c in required if c not in names]
    # with a transform, a field may be one it computes: core/documents/transform_plan.py checks those
    unknown_fields = [c for c in spec.fields if c not in names and "." not in c and spec.transform is None]
    if missing or unknown_fields:
        parts = []
        if missing:
            parts.append(f"key/updated_at/soft_delete columns not found: {missing}")
        if unknown_fields:
            parts.append(f"'fields' names columns that do not exist: {unknown_fields}")
        raise SourceError(f"{where}: {'; '.join(parts)} (columns are {names})")


def staged_column(info: ColumnInfo) -> str:
    """A column as it is read for staging: native types as they are, arrays as JSON text,
    NUMERIC, JSON and everything else as text (JSON as jsonb prints it: one line)."""
    column = quote_ident(info.name)
    if info.staging == "native":
        safe = poison.safe_value(info, column)  # a date past year 9999 would fail the whole read
        return column if safe == column else f"{safe} AS {column}"
    if info.is_array:
        return f"CAST(to_jsonb({column}) AS TEXT) AS {column}"
    if info.pg_type == "json":
        # json keeps its input text, newlines included, which would split the bulk NDJSON line;
        # jsonb prints one line (it also normalises whitespace and keeps the last duplicate key)
        return f"{poison.safe_value(info, f'CAST(CAST({column} AS jsonb) AS TEXT)')} AS {column}"
    return f"CAST({column} AS TEXT) AS {column}"


def root_column(name: str, spec: SyncSpec) -> str:
    # qualified: in ORDER BY a bare name means the *output* column, which for a key staged as text
    # (numeric, enum) sorts as text while the keyset's WHERE compares the typed column, and pages
    # would skip rows
    alias = ROOT_ALIAS if spec.source.table is not None else "src"
    return f"{alias}.{quote_ident(name)}"


def key_column(info: ColumnInfo, spec: SyncSpec) -> str:
    # byte-order collation, so text keys sort as Elasticsearch keywords do
    column = root_column(info.name, spec)
    return f'{column} COLLATE "C"' if info.is_textual else column


def window_predicate(
    spec: SyncSpec, window: Window, binds: Binds, columns: Sequence[ColumnInfo]
) -> str | None:
    """The rows a window owns, on updated_at: its bounds, plus the NULL updated_at rows when
    the window owns them. None: every row. The one spelling of a window in SQL.

    A naive `timestamp` column holds wall-clock times of the spec's `naive_timezone`, and its
    documents carry those as UTC instants: each bound (a UTC instant) is compared as that
    zone's wall clock, so a window owns the rows of its instants on both sides, and is read
    only after it closed in the column's zone. (Compared as it is, the session's UTC would
    read a New York row stamped 10:10 in the window 10:00-11:00 UTC, closed hours before the
    row was written at 14:10 UTC.) The column itself stays bare: its index still serves."""
    updated = quote_ident(spec.source.updated_at)
    naive = any(c.name == spec.source.updated_at and c.pg_type == "timestamp" for c in columns)

    def bound(name: str, value: datetime) -> str:
        instant = binds.instant(name, value)
        return f"({instant} AT TIME ZONE {sql_literal(spec.naive_timezone)})" if naive else instant

    bounds = []
    if window.start is not None:
        bounds.append(f"{updated} >= {bound('window_start', window.start)}")
    if window.end is not None:
        bounds.append(f"{updated} < {bound('window_end', window.end)}")
    if bounds and window.include_null_updated_at:
        return f"(({' AND '.join(bounds)}) OR {updated} IS NULL)"
    if bounds:
        return " AND ".join(bounds)
    if window.include_null_updated_at:
        return None
    return f"{updated} IS NOT NULL"


def read_columns(columns: Sequence[ColumnInfo], relations: Sequence[RelationPlan] = ()) -> list[ColumnInfo]:
    """What every read returns: the source's columns, one JSON column per relation, and the
    version of the statement's snapshot (core/sql/versions.py)."""
    return [
        *columns,
        *(ColumnInfo(r.spec.name, "jsonb") for r in relations),
        ColumnInfo(VERSION_COLUMN, "int8"),
        ColumnInfo(poison.UNREPRESENTABLE_COLUMN, "text"),
    ]


def _select(
    columns: Sequence[ColumnInfo],
    spec: SyncSpec,
    relations: Sequence[RelationPlan] = (),
    literal: bool = False,
    joins: bool = False,
    predicate: str | None = None,
) -> str:
    """The read's SELECT … FROM. Relations as correlated subqueries (key lookups and pages: an
    index lookup each), or with `joins` as pre-aggregated related rows joined on
    (core/sql/relation_joins.py: a whole window in bulk), those of the root rows `predicate`
    reads (its WHERE; None: every row)."""
    joined_to: list[str] = []
    if not joins or not relations:
        values = [relation_sql(r, ROOT_ALIAS, spec.naive_timezone) for r in relations]
    else:
        assert spec.source.table is not None  # relations need a table source (core/spec/sources.py)
        parents = Rows(spec.source.table, JOINED_ROOT_ALIAS, predicate)
        numbers = count(1)
        found = [joined(r, ROOT_ALIAS, parents, spec.naive_timezone, numbers) for r in relations]
        values, joined_to = [j.value for j in found], [j.join for j in found]
    outputs = [staged_column(c) for c in columns]
    outputs += [
        f"CAST({value} AS TEXT) AS {quote_ident(r.spec.name)}"
        for r, value in zip(relations, values, strict=True)
    ]
    outputs.append(f"{VERSION_SQL} AS {quote_ident(VERSION_COLUMN)}")
    outputs.append(f"{poison.reason_sql(columns)} AS {quote_ident(poison.UNREPRESENTABLE_COLUMN)}")
    return f"SELECT {', '.join(outputs)} FROM {' '.join([source_sql(spec, literal), *joined_to])}"


def _all(conditions: Sequence[str | None]) -> str | None:
    present = [c for c in conditions if c]
    return " AND ".join(present) if present else None


def where_clause(conditions: Sequence[str | None]) -> str:
    condition = _all(conditions)
    return f" WHERE {condition}" if condition else ""


def page_query(
    spec: SyncSpec,
    columns: Sequence[ColumnInfo],
    window: Window | None,
    after: Sequence[Any] | None,
    limit: int,
    mode: PageMode = "window",
    relations: Sequence[RelationPlan] = (),
) -> Statement:
    """One keyset page: rows strictly after `after`, in key order.

    - "window": rows of the window (without its NULL updated_at rows), keyed by
      (updated_at, primary key);
    - "null_updated_at": rows whose updated_at IS NULL, keyed by the primary key
      (they belong to no window, so the first window owns them);
    - "by_key": every row, keyed by the primary key (what verify streams).
    """
    binds = Binds()
    info = {c.name: c for c in columns}
    key = [key_column(info[name], spec) for name in spec.source.primary_key]
    conditions: list[str | None] = []
    if mode == "window":
        alias = ROOT_ALIAS if spec.source.table is not None else "src"
        key = [f"{alias}.{quote_ident(spec.source.updated_at)}", *key]
        bounds = Window(window.start, window.end) if window is not None else Window(None, None)
        conditions.append(window_predicate(spec, bounds, binds, columns))
    elif mode == "null_updated_at":
        conditions.append(f"{quote_ident(spec.source.updated_at)} IS NULL")
    if after is not None:
        bound = [binds.value(f"after_{i}", value) for i, value in enumerate(after)]
        conditions.append(f"({', '.join(key)}) > ({', '.join(bound)})")
    select = _select(columns, spec, relations)
    sql = f"{select}{where_clause(conditions)} ORDER BY {', '.join(key)} LIMIT {int(limit)}"
    return Statement(sql, binds.params)


def window_select(
    spec: SyncSpec,
    columns: Sequence[ColumnInfo],
    window: Window,
    relations: Sequence[RelationPlan] = (),
    key_range: KeyRange | None = None,
) -> Statement:
    """Every row of the window (of one key range of it, `key_range`) as one statement, unordered
    and without parameters: what a full read streams with COPY (one statement, so one snapshot)."""
    binds = Binds(literal=True)
    predicate = window_predicate(spec, window, binds, columns)
    key_range = key_range or KeyRange()
    # the related rows joined are those of the rows this statement reads: the window's, of its range
    parents = _all([predicate, *key_range.conditions(spec, columns, JOINED_ROOT_ALIAS)])
    select = _select(columns, spec, relations, literal=True, joins=True, predicate=parents)
    return Statement(
        f"{select}{where_clause([predicate, *key_range.conditions(spec, columns)])}", literal=True
    )


@dataclass(frozen=True)
class KeyRange:
    """The rows whose primary key lies after `after` and up to `upto` (inclusive), both given as
    canonical key texts (core/sql/keys.py); None: unbounded on that side.

    Ordered as the key's own columns compare (their own collation), not byte-wise as the keyset
    pages order text keys: then the primary key's index serves both the bound probe and the
    range's read. Both sides use this one order, so consecutive ranges partition the keys."""

    after: tuple[str, ...] | None = None
    upto: tuple[str, ...] | None = None

    def conditions(
        self, spec: SyncSpec, columns: Sequence[ColumnInfo], alias: str | None = None
    ) -> list[str]:
        """Its bounds in SQL, on the root's columns (`alias`: on the root table read as that alias)."""
        return [
            _key_compared(spec, columns, operator, texts, alias)
            for operator, texts in ((">", self.after), ("<=", self.upto))
            if texts is not None
        ]


def _key_compared(
    spec: SyncSpec, columns: Sequence[ColumnInfo], operator: str, texts: Sequence[str], alias: str | None
) -> str:
    # literals, not parameters: a COPY cannot take parameters. The texts are key values read from
    # the source, rendered by `text_literal` (safe whatever standard_conforming_strings says)
    info = {c.name: c for c in columns}
    keys = spec.source.primary_key
    values = [
        typed_sql(info[name], text_literal(text), type_name(info[name].pg_type), spec.naive_timezone)
        for name, text in zip(keys, texts, strict=True)
    ]
    names = [f"{alias}.{quote_ident(name)}" if alias else root_column(name, spec) for name in keys]
    return f"({', '.join(names)}) {operator} ({', '.join(values)})"


def live_rows_predicate(spec: SyncSpec, columns: Sequence[ColumnInfo]) -> str | None:
    """Rows that are not soft-deleted: the flag is false/NULL (booleans) or NULL (anything else)."""
    if spec.source.soft_delete is None:
        return None
    flag = quote_ident(spec.source.soft_delete)
    is_bool = {c.name: c for c in columns}[spec.source.soft_delete].pg_type == "bool"
    return f"({flag} IS NULL OR {flag} = false)" if is_bool else f"{flag} IS NULL"


def window_count_query(spec: SyncSpec, columns: Sequence[ColumnInfo], window: Window) -> Statement:
    """How many live (not soft-deleted) rows the window holds: the PostgreSQL side of the
    `count` reconciliation, with the same bounds as the Elasticsearch window query."""
    binds = Binds()
    conditions = [window_predicate(spec, window, binds, columns), live_rows_predicate(spec, columns)]
    return Statement(f"SELECT count(*) FROM {source_sql(spec)}{where_clause(conditions)}", binds.params)


def keys_query(
    spec: SyncSpec,
    columns: Sequence[ColumnInfo],
    keys: Sequence[Sequence[str]],
    relations: Sequence[RelationPlan] = (),
) -> Statement:
    """Current rows for specific primary keys (drain, verify --fix, dead-letter replay), given as
    their canonical texts (core/sql/keys.py): one text array per key column, turned back into the
    column's type, so the primary-key index serves the lookup."""
    info = {c.name: c for c in columns}
    pk = spec.source.primary_key
    if not keys:
        return Statement(f"{_select(columns, spec, relations)} WHERE false")
    params = {f"k{j}": [key[j] for key in keys] for j in range(len(pk))}
    arrays = ", ".join(f"CAST(%(k{j})s AS text[])" for j in range(len(pk)))
    names = ", ".join(f"__sync_k{j}" for j in range(len(pk)))
    typed = ", ".join(
        typed_sql(info[name], f"__sync_u.__sync_k{j}", type_name(info[name].pg_type), spec.naive_timezone)
        for j, name in enumerate(pk)
    )
    target = "(" + ", ".join(quote_ident(c) for c in pk) + ")"
    condition = f"{target} IN (SELECT {typed} FROM unnest({arrays}) AS __sync_u({names}))"
    return Statement(f"{_select(columns, spec, relations)} WHERE {condition}", params)


def rows_where(
    spec: SyncSpec,
    columns: Sequence[ColumnInfo],
    relations: Sequence[RelationPlan],
    condition: Statement,
) -> Statement:
    """Current rows of a `table` spec whose root row (named by the relations' alias) meets
    `condition`: a drain's fan-out reads its documents in one statement, with no keys sent back."""
    return Statement(f"{_select(columns, spec, relations)} WHERE {condition.sql}", condition.params)


def milliseconds(seconds: float) -> int:
    """A duration setting as PostgreSQL's timeouts take it: whole milliseconds, at least 1 (0
    would mean no limit at all)."""
    return max(1, round(seconds * 1000))


def local_statement_timeout(seconds: float) -> Statement:
    """Bound every statement of the current transaction (it ends with the transaction)."""
    return Statement(f"SET LOCAL statement_timeout = {milliseconds(seconds)}", {})
