"""Spec → SQL, and streaming a time window out of PostgreSQL into Parquet.

Reads use keyset pagination on (updated_at, primary key): every page is an
index range scan that starts strictly after the last row of the previous page,
so rows sharing one updated_at are never skipped or repeated, and no OFFSET
makes later pages slower. Memory is one page, whatever the window holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
from psycopg.postgres import types as pg_types
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.core.windows import Window

Staging = Literal["native", "text", "json"]

_NATIVE: dict[str, pa.DataType] = {
    "int2": pa.int64(),
    "int4": pa.int64(),
    "int8": pa.int64(),
    "float4": pa.float64(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "name": pa.string(),
    "citext": pa.string(),
}
_TEXTUAL = {"text", "varchar", "bpchar", "name", "citext"}


class SourceError(ValueError):
    """The spec's source does not match the database (unknown table, column, bad query)."""


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    pg_type: str
    is_array: bool = False

    @property
    def staging(self) -> Staging:
        """How the column travels through Parquet.

        NUMERIC goes as text so no digit is lost before the transform decides;
        JSON and arrays go as JSON text because their shapes vary row to row and
        would otherwise force a per-page Arrow schema.
        """
        if self.is_array or self.pg_type in ("json", "jsonb"):
            return "json"
        if self.pg_type in _NATIVE:
            return "native"
        return "text"

    @property
    def arrow_type(self) -> pa.DataType:
        return _NATIVE[self.pg_type] if self.staging == "native" else pa.string()


def source_clause(spec: SyncSpec, column_names: Sequence[str] = ()) -> sa.FromClause:
    cols = [sa.column(c) for c in column_names]
    if spec.source.table is not None:
        schema, table = spec.source.schema_and_table
        return sa.table(table, *cols, schema=schema)
    assert spec.source.query is not None
    return sa.text(spec.source.query).columns(*cols).subquery("src")


def describe_source(conn: Connection, spec: SyncSpec) -> list[ColumnInfo]:
    """Column names and PostgreSQL types of the spec's source, checked against the spec."""
    probe = sa.select(sa.literal_column("*")).select_from(source_clause(spec)).limit(0)
    where = f"source of spec '{spec.name}'"
    try:
        result = conn.execute(probe)
    except DBAPIError as exc:
        conn.rollback()
        message = str((getattr(exc.orig, "diag", None) and exc.orig.diag.message_primary) or exc.orig)
        raise SourceError(f"{where}: PostgreSQL rejected it: {message}") from None
    columns = []
    for desc in result.cursor.description:
        info = pg_types.get(desc.type_code)
        is_array = bool(info and info.array_oid == desc.type_code)
        columns.append(ColumnInfo(desc.name, info.name if info else "unknown", is_array))
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise SourceError(f"{where}: the query returns duplicate column names {names}")
    required = [*spec.source.primary_key, spec.source.updated_at]
    required += [c for c in (spec.source.soft_delete, spec.source.version) if c]
    missing = [c for c in required if c not in names]
    unknown_fields = [c for c in spec.fields if c not in names]
    if missing or unknown_fields:
        parts = []
        if missing:
            parts.append(f"key/updated_at/soft_delete columns not found: {missing}")
        if unknown_fields:
            parts.append(f"'fields' names columns that do not exist: {unknown_fields}")
        raise SourceError(f"{where}: {'; '.join(parts)} (columns are {names})")
    return columns


def _staged(col: sa.ColumnClause, info: ColumnInfo) -> sa.ColumnElement[Any]:
    if info.staging == "native":
        return col
    if info.is_array:
        return sa.cast(sa.func.to_jsonb(col), sa.Text).label(info.name)
    return sa.cast(col, sa.Text).label(info.name)


PageMode = Literal["window", "null_updated_at", "by_key"]


def _key_column(col: sa.ColumnClause, info: ColumnInfo) -> sa.ColumnElement[Any]:
    # byte-order collation, so text keys sort as Elasticsearch keywords do (verify merges the two)
    return sa.collate(col, "C") if info.pg_type in _TEXTUAL else col


def page_query(
    spec: SyncSpec,
    columns: Sequence[ColumnInfo],
    window: Window | None,
    after: Sequence[Any] | None,
    limit: int,
    mode: PageMode = "window",
) -> sa.Select[Any]:
    """One keyset page: rows strictly after `after`, in key order.

    - "window": rows of the window, keyed by (updated_at, primary key);
    - "null_updated_at": rows whose updated_at IS NULL, keyed by the primary key
      (they belong to no window, so the first window owns them);
    - "by_key": every row, keyed by the primary key (what verify streams).
    """
    src = source_clause(spec, [c.name for c in columns])
    info = {c.name: c for c in columns}
    updated = src.c[spec.source.updated_at]
    pk = [_key_column(src.c[name], info[name]) for name in spec.source.primary_key]
    conditions: list[sa.ColumnElement[bool]] = []
    if mode == "window":
        key = [updated, *pk]
        if window is not None and window.start is not None:
            conditions.append(updated >= sa.bindparam("window_start", window.start))
        if window is not None and window.end is not None:
            conditions.append(updated < sa.bindparam("window_end", window.end))
    else:
        key = pk
        if mode == "null_updated_at":
            conditions.append(updated.is_(None))
    if after is not None:
        bound = [sa.bindparam(f"after_{i}", value) for i, value in enumerate(after)]
        conditions.append(sa.tuple_(*key) > sa.tuple_(*bound))
    return (
        sa.select(*(_staged(src.c[c.name], c) for c in columns))
        .where(*conditions)
        .order_by(*key)
        .limit(limit)
    )


def window_count_query(spec: SyncSpec, columns: Sequence[ColumnInfo], window: Window) -> sa.Select[Any]:
    """How many live (not soft-deleted) rows the window holds: the PostgreSQL side of the
    `count` reconciliation, with the same bounds as verify.window_query on the ES side."""
    src = source_clause(spec, [c.name for c in columns])
    updated = src.c[spec.source.updated_at]
    bounds: list[sa.ColumnElement[bool]] = []
    if window.start is not None:
        bounds.append(updated >= sa.bindparam("window_start", window.start))
    if window.end is not None:
        bounds.append(updated < sa.bindparam("window_end", window.end))
    in_window = sa.and_(*bounds) if bounds else updated.is_not(None)
    if window.include_null_updated_at:
        in_window = sa.or_(in_window, updated.is_(None))
    conditions = [in_window]
    if spec.source.soft_delete is not None:
        flag = src.c[spec.source.soft_delete]
        is_bool = {c.name: c for c in columns}[spec.source.soft_delete].pg_type == "bool"
        conditions.append(sa.or_(flag.is_(None), flag.is_(False)) if is_bool else flag.is_(None))
    return sa.select(sa.func.count()).select_from(src).where(*conditions)


COLUMNS_METADATA_KEY = b"sync_pipeline.columns"


def arrow_schema(columns: Sequence[ColumnInfo]) -> pa.Schema:
    """Arrow schema of a staged extract; the PostgreSQL types ride along as metadata
    so the transform can cleanse by source type without talking to PostgreSQL."""
    described = json.dumps([[c.name, c.pg_type, c.is_array] for c in columns])
    return pa.schema(
        [pa.field(c.name, c.arrow_type) for c in columns],
        metadata={COLUMNS_METADATA_KEY: described.encode()},
    )


def staged_columns(path: Path) -> list[ColumnInfo]:
    metadata = pq.read_schema(path).metadata or {}
    return [
        ColumnInfo(name, pg_type, is_array)
        for name, pg_type, is_array in json.loads(metadata[COLUMNS_METADATA_KEY])
    ]


def iter_pages(
    conn: Connection,
    spec: SyncSpec,
    columns: Sequence[ColumnInfo],
    window: Window | None,
    page_size: int,
    modes: Sequence[PageMode] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield rows as Arrow record batches of at most `page_size` rows.

    By default: the window's rows (and first the NULL-updated_at rows when the
    window owns them).
    """
    if modes is None:
        with_nulls = window is not None and window.include_null_updated_at
        modes = ["null_updated_at", "window"] if with_nulls else ["window"]
    schema = arrow_schema(columns)
    names = [c.name for c in columns]
    key_positions = [names.index(c) for c in spec.source.primary_key]
    updated_position = names.index(spec.source.updated_at)
    for mode in modes:
        after: list[Any] | None = None
        while True:
            rows = conn.execute(page_query(spec, columns, window, after, page_size, mode)).fetchall()
            if not rows:
                break
            yield rows_to_batch(rows, schema)
            last = rows[-1]
            keys = [last[i] for i in key_positions]
            after = [last[updated_position], *keys] if mode == "window" else keys
            if len(rows) < page_size:
                break


def window_select(spec: SyncSpec, columns: Sequence[ColumnInfo], window: Window) -> sa.Select[Any]:
    """Every row of the window as one statement, unordered: what a full read streams with COPY.

    The same rows as iter_pages' default modes (the window, plus the NULL
    updated_at rows when the window owns them), as a single statement, so it
    reads one snapshot without a transaction around several pages.
    """
    src = source_clause(spec, [c.name for c in columns])
    updated = src.c[spec.source.updated_at]
    bounds: list[sa.ColumnElement[bool]] = []
    if window.start is not None:
        bounds.append(updated >= sa.bindparam("window_start", window.start, type_=sa.DateTime(timezone=True)))
    if window.end is not None:
        bounds.append(updated < sa.bindparam("window_end", window.end, type_=sa.DateTime(timezone=True)))
    query = sa.select(*(_staged(src.c[c.name], c) for c in columns))
    if bounds and window.include_null_updated_at:
        return query.where(sa.or_(sa.and_(*bounds), updated.is_(None)))
    if bounds:
        return query.where(*bounds)
    if not window.include_null_updated_at:
        return query.where(updated.is_not(None))
    return query


# the driver's batches, by bytes; re-sliced below to at most page_size rows
_COPY_BATCH_BYTES = 4 * 1024 * 1024


def stream_window(
    url: str, spec: SyncSpec, columns: Sequence[ColumnInfo], window: Window, page_size: int
) -> Iterator[pa.RecordBatch]:
    """The window's rows as Arrow batches of at most `page_size` rows, read with COPY.

    The ADBC PostgreSQL driver runs the statement as `COPY … TO STDOUT (FORMAT
    binary)` and decodes it into Arrow in C++, so rows never become Python
    objects; one statement means one snapshot. Memory: a few MB of driver
    buffer and one batch. `url` is a libpq URL (resources.libpq_url).
    """
    # the driver's low-level API: its DB-API layer would import pandas when it is installed
    import adbc_driver_manager
    import adbc_driver_postgresql
    from sqlalchemy.dialects import postgresql

    statement = window_select(spec, columns, window)
    # literal values (window bounds only; identifiers stay quoted by SQLAlchemy): with bound
    # parameters the driver would not use COPY and would buffer the whole result
    sql = str(statement.compile(dialect=postgresql.psycopg.dialect(), compile_kwargs={"literal_binds": True}))
    schema = arrow_schema(columns)
    with (
        adbc_driver_postgresql.connect(url) as database,
        adbc_driver_manager.AdbcConnection(database) as conn,
        adbc_driver_manager.AdbcStatement(conn) as query,
    ):
        query.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(_COPY_BATCH_BYTES)})
        query.set_sql_query(sql)
        stream, _ = query.execute_query()
        for batch in pa.RecordBatchReader._import_from_c(stream.address):
            typed = pa.RecordBatch.from_arrays(
                [_as_staged(batch.column(i), schema.field(i).type) for i in range(len(schema))], schema=schema
            )
            for offset in range(0, typed.num_rows, page_size):
                yield typed.slice(offset, page_size)


def _as_staged(array: pa.Array, staged: pa.DataType) -> pa.Array:
    if pa.types.is_float32(array.type):
        # via the shortest text form, as psycopg reads real: 0.33333334, not 0.3333333432674408
        # (so documents, and verify's comparison with them, do not depend on the read path)
        return pc.cast(pc.cast(array, pa.string()), staged)
    return array.cast(staged)


def staged_pages(pages: Iterator[pa.RecordBatch], schema: pa.Schema, path: Path) -> Iterator[pa.RecordBatch]:
    """Pages passed through, each also written to a Parquet file.

    The file is written under a temporary name and renamed once the last page
    is in, so a crash (or a consumer that stops early) never leaves a partial
    file that a later step could mistake for a complete extract.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    # no column statistics: nothing reads them, and the writer keeps every row group's in memory
    with pq.ParquetWriter(tmp, schema, compression="zstd", write_statistics=False) as writer:
        for batch in pages:
            writer.write_batch(batch)
            yield batch
    tmp.replace(path)


def extract_window_to_parquet(
    url: str, spec: SyncSpec, columns: Sequence[ColumnInfo], window: Window, path: Path
) -> int:
    """Stream one window into a Parquet file; returns the number of rows written."""
    pages = stream_window(url, spec, columns, window, spec.batch_size)
    return sum(batch.num_rows for batch in staged_pages(pages, arrow_schema(columns), path))


class _PgType(sa.types.UserDefinedType):
    """A PostgreSQL type by name, so key values can be cast to their column's type."""

    cache_ok = True

    def __init__(self, name: str) -> None:
        self.name = name

    def get_col_spec(self, **_: Any) -> str:
        return self.name


def keys_query(
    spec: SyncSpec, columns: Sequence[ColumnInfo], keys: Sequence[Sequence[Any]]
) -> sa.Select[Any]:
    """Current rows for specific primary keys (drain, verify --fix, dead-letter replay).

    Key values arrive from JSON, so each is cast to its column's type, which
    keeps the primary-key index usable.
    """
    src = source_clause(spec, [c.name for c in columns])
    info = {c.name: c for c in columns}
    pk = [src.c[name] for name in spec.source.primary_key]
    casts = [_PgType(info[name].pg_type) for name in spec.source.primary_key]
    tuples = [sa.tuple_(*(sa.cast(v, t) for v, t in zip(key, casts, strict=True))) for key in keys]
    return sa.select(*(_staged(src.c[c.name], c) for c in columns)).where(sa.tuple_(*pk).in_(tuples))


def fetch_keys(
    conn: Connection, spec: SyncSpec, columns: Sequence[ColumnInfo], keys: Sequence[Sequence[Any]]
) -> pa.RecordBatch:
    schema = arrow_schema(columns)
    rows = conn.execute(keys_query(spec, columns, keys)).fetchall() if keys else []
    if not rows:
        return pa.RecordBatch.from_pylist([], schema=schema)
    return rows_to_batch(rows, schema)


def rows_to_batch(rows: Sequence[Sequence[Any]], schema: pa.Schema) -> pa.RecordBatch:
    by_column = list(zip(*rows, strict=True))
    return pa.RecordBatch.from_arrays(
        [pa.array(by_column[i], type=schema.field(i).type) for i in range(len(schema))], schema=schema
    )
