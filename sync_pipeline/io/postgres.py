"""PostgreSQL: connections, describing a source, and reading its rows into Arrow.

Statements come from `core.sql.statements` as text; this module only runs them. Reads
stream: keyset pages of at most `page_size` rows, or one COPY statement read
by the ADBC driver in batches, so memory is one batch whatever the table holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from psycopg.postgres import types as pg_types
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from sync_pipeline.core.report.redact import redact_url
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql import poison
from sync_pipeline.core.sql import statements as sql
from sync_pipeline.core.sql.columns import ColumnInfo, arrow_schema
from sync_pipeline.core.sql.relations import RelationPlan, TableInfo
from sync_pipeline.core.sql.statements import PageMode, SourceError, Statement
from sync_pipeline.core.sql.versions import VERSION_SQL
from sync_pipeline.core.windows import Window
from sync_pipeline.io import catalog
from sync_pipeline.settings import session_limits

# the driver's batches, by bytes; re-sliced below to at most page_size rows
_COPY_BATCH_BYTES = 4 * 1024 * 1024


APPLICATION = "sync_pipeline"  # how our sessions show in pg_stat_activity


def sqlalchemy_url(url: str) -> str:
    """Accept libpq-style URLs and pick the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def libpq_url(url: str, application_name: str = "sync_pipeline") -> str:
    """The URL as libpq (and so the ADBC driver) reads it, with the session settings of `engine_for`."""
    parsed = make_url(sqlalchemy_url(url)).set(drivername="postgresql")
    query = {"application_name": application_name, "connect_timeout": "10", "options": "-c timezone=UTC"}
    query |= {k: v if isinstance(v, str) else v[-1] for k, v in parsed.query.items()}
    base = parsed.set(query={}).render_as_string(hide_password=False)
    # percent-encoding only: libpq does not read "+" as a space
    return f"{base}?{urlencode(query, quote_via=quote)}"


def search_path_url(url: str, schema: str) -> str:
    """A libpq URL (what dagster-postgres takes) whose sessions use `schema` (search_path)."""
    parsed = make_url(url.replace("postgresql+psycopg://", "postgresql://", 1))
    parsed = parsed.set(drivername="postgresql", query={**parsed.query, "options": f"-csearch_path={schema}"})
    rendered = parsed.render_as_string(hide_password=False)
    return rendered.replace(f"-csearch_path={schema}", quote(f"-csearch_path={schema}", safe=""))


def engine_for(url: str) -> Engine:
    """A new engine (a connection pool) for `url`: built once per run by whoever starts the run
    (defs/resources.py, the CLI, the Flask extension), handed down to the ops, and disposed of by
    it when the run ends; nothing caches it behind its owner's back."""
    # UTC sessions make timestamptz values and window bounds compare without surprises; a
    # transaction of ours left idle (a stuck process) is ended before it holds vacuum back for long
    idle = sql.milliseconds(session_limits().idle_in_transaction_seconds)
    return sa.create_engine(
        sqlalchemy_url(url),
        pool_pre_ping=True,
        # a failed statement's message never carries its bound values (keys, rows' content) into
        # logs, run metadata or alerts
        hide_parameters=True,
        connect_args={
            "options": f"-c timezone=UTC -c idle_in_transaction_session_timeout={idle}",
            "connect_timeout": 10,
            "application_name": APPLICATION,
        },
    )


# the isolation of every read that must see one snapshot across its statements (a key range, a
# claim and the rows it re-reads, a window counted on both sides)
REPEATABLE_READ = {"isolation_level": "REPEATABLE READ"}


def repeatable_read(engine: Engine) -> Connection:
    """A connection whose transactions each read one snapshot (`REPEATABLE_READ`)."""
    return engine.connect().execution_options(**REPEATABLE_READ)


def execute(conn: Connection, statement: Statement):
    """Run a `core.sql.statements` statement (psycopg parameters, so no SQLAlchemy parsing of its
    text); a literal one without any parameter parsing, so its '%' reach PostgreSQL as written."""
    if statement.literal:
        return conn.execution_options(no_parameters=True).exec_driver_sql(statement.sql)
    return conn.exec_driver_sql(statement.sql, statement.params)


def _database_message(exc: DBAPIError) -> str:
    diag = getattr(exc.orig, "diag", None)
    return str((diag and diag.message_primary) or exc.orig)


def _custom_types(conn: Connection, oids: set[int]) -> dict[int, tuple[str, bool, bool]]:
    """Types psycopg does not know (enums, extension types such as citext, arrays of them) by the
    catalog: oid → (name, is an array, is an enum)."""
    if not oids:
        return {}
    rows = execute(
        conn,
        Statement(
            "SELECT t.oid, coalesce(e.typname, t.typname), e.oid IS NOT NULL, "
            "coalesce(e.typtype, t.typtype) = 'e' FROM pg_type t "
            "LEFT JOIN pg_type e ON t.typcategory = 'A' AND e.oid = t.typelem "
            "WHERE t.oid = ANY(CAST(%(oids)s AS oid[]))",
            {"oids": sorted(oids)},
        ),
    ).fetchall()
    return {int(oid): (name, bool(is_array), bool(is_enum)) for oid, name, is_array, is_enum in rows}


def _described(conn: Connection, result) -> list[ColumnInfo]:
    """The columns of a (LIMIT 0) result, typed by PostgreSQL's own type names; a numeric with the
    precision and scale its typmod declares (None for an unconstrained one)."""
    description = list(result.cursor.description)
    result.close()
    custom = _custom_types(conn, {d.type_code for d in description if pg_types.get(d.type_code) is None})
    columns = []
    for desc in description:
        info = pg_types.get(desc.type_code)
        if info is not None:
            name, is_array, is_enum = info.name, info.array_oid == desc.type_code, False
        else:
            name, is_array, is_enum = custom.get(desc.type_code, ("unknown", False, False))
        typmod = (desc.precision, desc.scale) if name == "numeric" and not is_array else (None, None)
        columns.append(ColumnInfo(desc.name, name, is_array, *typmod, is_enum=is_enum))
    return columns


def describe_source(conn: Connection, spec: SyncSpec) -> list[ColumnInfo]:
    """Column names and PostgreSQL types of the spec's source, checked against the spec."""
    refuse_standby(conn, spec)
    try:
        result = execute(conn, sql.probe(spec))
    except DBAPIError as exc:
        conn.rollback()
        raise SourceError(
            f"source of spec '{spec.name}': PostgreSQL rejected it: {_database_message(exc)}"
        ) from None
    columns = _described(conn, result)
    sql.check_columns(spec, columns)
    return columns


def refuse_standby(conn: Connection, spec: SyncSpec) -> None:
    """A SourceError, naming the server, when it is a hot standby. During recovery
    pg_current_snapshot() lists no transaction in progress, so two reads of different content
    can carry the same version (core/sql/versions.py) and the later write be refused as stale."""
    if execute(conn, Statement("SELECT pg_is_in_recovery()")).scalar_one():
        server = redact_url(conn.engine.url.render_as_string(hide_password=False))
        raise SourceError(
            f"source of spec '{spec.name}': PostgreSQL at {server} is a hot standby (in recovery); "
            "versions read on a standby do not order concurrent writes, so sync_pipeline reads "
            "only from the primary: point SYNC_PG_URL at it"
        )


def describe_table(conn: Connection, name: str) -> TableInfo | None:
    """A table's columns and primary key; None when it does not exist (or we may not read it)."""
    quoted = sql.qualified_table(name)
    oid = execute(conn, Statement("SELECT CAST(to_regclass(%(t)s) AS oid)", {"t": quoted})).scalar_one()
    if oid is None:
        return None
    result = execute(conn, Statement(f"SELECT * FROM {quoted} LIMIT 0"))
    columns = _described(conn, result)
    return TableInfo(name, tuple(columns), catalog.primary_key(conn, oid))


# a sample reads at most this many rows (NULLs included) and keeps the first non-null values
_SAMPLE_ROWS, _SAMPLE_VALUES = 100_000, 1_000


def json_value_kinds(conn: Connection, spec: SyncSpec, columns: Sequence[ColumnInfo]) -> dict[str, set[str]]:
    """For JSON columns: the `jsonb_typeof` of a sample of their values, and of the elements of
    the arrays among them (core/sql/columns.json_es_type maps them), in one statement. Bounded, so
    binding a large or sparse table stays cheap; values beyond the sample are not seen."""
    parts, params = [], {}
    for number, info in enumerate(columns):
        column = sql.quote_ident(info.name)
        # a json value holding \u0000 has no jsonb form: left out of the sample, not failing it
        value = (
            f"to_jsonb({column})" if info.is_array else poison.safe_value(info, f"CAST({column} AS jsonb)")
        )
        params[f"c{number}"] = info.name
        parts.append(
            f"SELECT DISTINCT CAST(%(c{number})s AS text), jsonb_typeof(__sync_item) FROM "
            f"(SELECT __sync_v FROM (SELECT {value} AS __sync_v FROM {sql.source_sql(spec)} "
            f"LIMIT {_SAMPLE_ROWS}) AS __sync_rows WHERE __sync_v IS NOT NULL LIMIT {_SAMPLE_VALUES}) "
            "AS __sync_sample, jsonb_path_query(__sync_v, 'lax $[*]') AS __sync_item"
        )
    if not parts:
        return {}
    kinds: dict[str, set[str]] = {info.name: set() for info in columns}
    for name, kind in execute(conn, Statement(" UNION ALL ".join(f"({p})" for p in parts), params)):
        if kind != "null":
            kinds[name].add(kind)
    return kinds


def describe_relations(conn: Connection, spec: SyncSpec) -> dict[str, TableInfo | None]:
    """Every related and join table of the spec, described (None: missing)."""
    names: list[str] = []
    for _, relation in spec.source.all_relations():
        names.append(relation.table)
        if relation.through is not None:
            names.append(relation.through.table)
    return {name: describe_table(conn, name) for name in dict.fromkeys(names)}


def rows_to_batch(rows: Sequence[Sequence[Any]], schema: pa.Schema) -> pa.RecordBatch:
    by_column = list(zip(*rows, strict=True))
    return pa.RecordBatch.from_arrays(
        [pa.array(by_column[i], type=schema.field(i).type) for i in range(len(schema))], schema=schema
    )


def iter_pages(
    conn: Connection,
    spec: SyncSpec,
    columns: Sequence[ColumnInfo],
    window: Window | None,
    page_size: int,
    modes: Sequence[PageMode] | None = None,
    relations: Sequence[RelationPlan] = (),
) -> Iterator[pa.RecordBatch]:
    """Yield rows as Arrow record batches of at most `page_size` rows, by keyset pages, every
    page read on `conn` (in its transaction, if it has one).

    By default: the window's rows (and first the NULL-updated_at rows when the
    window owns them).
    """
    return keyset_pages(
        lambda statement: execute(conn, statement).fetchall(),
        spec,
        columns,
        window,
        page_size,
        modes,
        relations,
    )


def keyset_pages(
    fetch: Callable[[Statement], Sequence[Any]],
    spec: SyncSpec,
    columns: Sequence[ColumnInfo],
    window: Window | None,
    page_size: int,
    modes: Sequence[PageMode] | None = None,
    relations: Sequence[RelationPlan] = (),
) -> Iterator[pa.RecordBatch]:
    """iter_pages with each page's statement run by `fetch` (io/ranges: each in a transaction of
    its own)."""
    if modes is None:
        with_nulls = window is not None and window.include_null_updated_at
        modes = ["null_updated_at", "window"] if with_nulls else ["window"]
    schema = arrow_schema(sql.read_columns(columns, relations))
    names = [c.name for c in columns]
    key_positions = [names.index(c) for c in spec.source.primary_key]
    updated_position = names.index(spec.source.updated_at)
    for mode in modes:
        after: list[Any] | None = None
        while True:
            rows = fetch(sql.page_query(spec, columns, window, after, page_size, mode, relations))
            if not rows:
                break
            yield rows_to_batch(rows, schema)
            last = rows[-1]
            keys = [last[i] for i in key_positions]
            after = [last[updated_position], *keys] if mode == "window" else keys
            if len(rows) < page_size:
                break


def stream_window(
    url: str,
    spec: SyncSpec,
    columns: Sequence[ColumnInfo],
    window: Window,
    page_size: int,
    relations: Sequence[RelationPlan] = (),
    key_range: sql.KeyRange | None = None,
) -> Iterator[pa.RecordBatch]:
    """The window's rows (those of `key_range`, when given) as Arrow batches of at most
    `page_size` rows, read with COPY.

    The ADBC PostgreSQL driver runs the statement as `COPY … TO STDOUT (FORMAT
    binary)` and decodes it into Arrow in C++, so rows never become Python
    objects; one statement means one snapshot. Memory: a few MB of driver
    buffer and one batch. `url` is a libpq URL (`libpq_url`).
    """
    # the driver's low-level API: its DB-API layer would import pandas when it is installed
    import adbc_driver_manager
    import adbc_driver_postgresql

    # no parameters (with them the driver would not use COPY and would buffer the whole result)
    statement = sql.window_select(spec, columns, window, relations, key_range)
    schema = arrow_schema(sql.read_columns(columns, relations))
    with (
        adbc_driver_postgresql.connect(url) as database,
        adbc_driver_manager.AdbcConnection(database) as conn,
        adbc_driver_manager.AdbcStatement(conn) as query,
    ):
        query.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(_COPY_BATCH_BYTES)})
        query.set_sql_query(statement.sql)
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


def fetch_keys(
    conn: Connection,
    spec: SyncSpec,
    columns: Sequence[ColumnInfo],
    keys: Sequence[Sequence[str]],
    relations: Sequence[RelationPlan] = (),
) -> pa.RecordBatch:
    """The current rows of `keys` (canonical texts; those that still exist) as one batch."""
    schema = arrow_schema(sql.read_columns(columns, relations))
    rows = execute(conn, sql.keys_query(spec, columns, keys, relations)).fetchall() if keys else []
    if not rows:
        return pa.RecordBatch.from_pylist([], schema=schema)
    return rows_to_batch(rows, schema)


def snapshot_version(conn: Connection) -> int:
    """The version of the connection's current snapshot (core/sql/versions.py): in a REPEATABLE READ
    transaction, the snapshot every statement of it reads."""
    return int(execute(conn, Statement(f"SELECT {VERSION_SQL}")).scalar_one())


def open_writers_before(conn: Connection, instant: datetime) -> tuple[int, datetime | None]:
    """Transactions of other sessions (not ours) that began before `instant`, have written, and are
    still open: they may commit rows stamped before `instant` (updated_at = now() is a transaction's
    start). Sessions of other roles are visible only with pg_read_all_stats."""
    row = execute(
        conn,
        Statement(
            "SELECT count(*), min(xact_start) FROM pg_stat_activity "
            "WHERE backend_xid IS NOT NULL AND xact_start < %(instant)s AND pid <> pg_backend_pid() "
            "AND datname = current_database() AND application_name NOT LIKE 'sync_pipeline%%'",
            {"instant": instant},
        ),
    ).one()
    return int(row[0]), row[1]


def is_serialization_failure(exc: BaseException) -> bool:
    """SQLSTATE 40001: a REPEATABLE READ transaction met a row a concurrent one changed."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == "40001"


def burn_transaction_id(engine: Engine) -> None:
    """Commit a transaction that takes an id: every snapshot taken after it has a greater xmax,
    so a greater version than anything read before (core/sql/versions.py)."""
    with engine.begin() as conn:
        execute(conn, Statement("SELECT pg_current_xact_id()"))


def count_window_rows(conn: Connection, spec: SyncSpec, columns: Sequence[ColumnInfo], window: Window) -> int:
    return int(execute(conn, sql.window_count_query(spec, columns, window)).scalar_one())
