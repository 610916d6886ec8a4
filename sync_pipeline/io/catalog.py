"""What PostgreSQL's catalog says about a table: its columns, primary key and foreign keys.

`sync-pipeline init --from-database` writes a starter spec from it. Read-only: pg_catalog
queries, nothing is created or locked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipeline.core.sql.quoting import qualified_table, quote_ident


class UnknownTable(LookupError):
    """A table name PostgreSQL does not resolve (on the connection's search_path)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(): "timestamp with time zone", "bigint", "character varying(80)", …
    not_null: bool

    @property
    def is_timestamp(self) -> bool:
        return self.type.startswith(("timestamp", "date"))


@dataclass(frozen=True)
class ForeignKey:
    """`columns` of the table referencing `references` (schema.table) on `referenced`, in order."""

    name: str
    columns: tuple[str, ...]
    references: str
    referenced: tuple[str, ...]
    references_oid: int = 0


@dataclass(frozen=True)
class TableInfo:
    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...] = field(default=())

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


_TABLE = sa.text(
    "SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.oid = to_regclass(:name) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
)
_COLUMNS = sa.text(
    "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
    "WHERE attrelid = :oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
)
_PRIMARY_KEY = sa.text(
    "SELECT a.attname FROM pg_index i "
    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
    "WHERE i.indrelid = :oid AND i.indisprimary "
    "ORDER BY array_position(i.indkey::int2[], a.attnum)"
)
_FOREIGN_KEYS = sa.text(
    "SELECT con.conname, fc.oid, fn.nspname, fc.relname, a.attname, fa.attname "
    "FROM pg_constraint con "
    "JOIN pg_class fc ON fc.oid = con.confrelid JOIN pg_namespace fn ON fn.oid = fc.relnamespace "
    "CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY AS k(attnum, fattnum, ord) "
    "JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum "
    "JOIN pg_attribute fa ON fa.attrelid = con.confrelid AND fa.attnum = k.fattnum "
    "WHERE con.conrelid = :oid AND con.contype = 'f' ORDER BY con.conname, k.ord"
)


def primary_key(conn: Connection, oid: int) -> tuple[str, ...]:
    """The primary key's columns of the relation `oid`, in key order (empty: none)."""
    return tuple(row[0] for row in conn.execute(_PRIMARY_KEY, {"oid": oid}))


def describe_table(conn: Connection, name: str) -> TableInfo:
    """`name` as PostgreSQL resolves it (schema-qualified or on the search_path); UnknownTable if
    there is no such table, view or foreign table."""
    found = conn.execute(_TABLE, {"name": name}).first()
    if found is None:
        raise UnknownTable(name)
    return _describe(conn, *found)


def referenced_tables(conn: Connection, tables: list[TableInfo]) -> dict[str, TableInfo]:
    """The tables the foreign keys of `tables` point at, by schema.table."""
    wanted = {fk.references: fk.references_oid for t in tables for fk in t.foreign_keys}
    found = {}
    for name, oid in sorted(wanted.items()):
        schema, _, relname = name.partition(".")
        found[name] = _describe(conn, oid, schema, relname)
    return found


def _describe(conn: Connection, oid: int, schema: str, relname: str) -> TableInfo:
    columns = tuple(Column(n, t, bool(nn)) for n, t, nn in conn.execute(_COLUMNS, {"oid": oid}))
    key = primary_key(conn, oid)
    grouped: dict[str, tuple[str, int, list[str], list[str]]] = {}
    for con, ref_oid, ref_schema, ref_table, column, referenced in conn.execute(_FOREIGN_KEYS, {"oid": oid}):
        entry = grouped.setdefault(con, (f"{ref_schema}.{ref_table}", ref_oid, [], []))
        entry[2].append(column)
        entry[3].append(referenced)
    foreign = tuple(
        ForeignKey(con, tuple(c), ref, tuple(r), ref_oid) for con, (ref, ref_oid, c, r) in grouped.items()
    )
    return TableInfo(schema, relname, columns, key, foreign)


def column_holds_values(conn: Connection, table: str, column: str) -> bool:
    """Whether any row of the table has a non-null value in the column (stops at the first)."""
    sql = f"SELECT EXISTS (SELECT 1 FROM {qualified_table(table)} WHERE {quote_ident(column)} IS NOT NULL)"
    return bool(conn.exec_driver_sql(sql).scalar_one())


def index_columns(conn: Connection, table: str) -> list[tuple[str, ...]]:
    """The key columns of each valid index of `table` (as the spec names it), leading first; an
    expression is '' (an index on lower(x) serves no lookup on x)."""
    rows = conn.execute(
        sa.text(
            "SELECT array_agg(COALESCE(a.attname, '') ORDER BY k.ord) "
            "FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
            "LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0 "
            "WHERE i.indrelid = to_regclass(:t) AND i.indisvalid AND k.ord <= i.indnkeyatts "
            "GROUP BY i.indexrelid"
        ),
        {"t": qualified_table(table)},
    ).scalars()
    return [tuple(columns) for columns in rows]
