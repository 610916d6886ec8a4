"""The change buffer: a trigger-fed outbox that carries inserts, updates and
hard deletes to Elasticsearch, including the ones time windows cannot see.

Triggers append (spec, source, key, operation, link) in the writer's own
transaction, so a change is buffered if and only if it commits; what each
table's trigger records is core/cdc/triggers.py; a TRUNCATE records one entry with op 'T' and no
key, which the drain answers by reconciling the whole spec. A drain (ops/drain/) claims
entries with FOR UPDATE SKIP LOCKED, re-reads the documents they affect, and
deletes the entries only after Elasticsearch acknowledged every document — in
the same transaction as the claim, so a crash anywhere leaves them queued.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.cdc import triggers as capture
from sync_pipeline.core.cdc.fanout import BUFFER_TABLE, Watched
from sync_pipeline.core.cdc.logical import Entry
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.columns import ColumnInfo
from sync_pipeline.core.sql.quoting import qualified_table, quote_ident
from sync_pipeline.io import ownership
from sync_pipeline.io.postgres import execute, libpq_url

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
    # which table of the document changed (NULL: the root) and the old/new values joining it up
    sa.Column("source", sa.Text),
    sa.Column("link", JSONB),
    sa.Index("sync_pipeline_buffer_spec_id", "spec", "id"),
    schema="public",  # the trigger functions name it schema-qualified, whatever a writer's search_path
)


def buffer_exists(conn: Connection) -> bool:
    return conn.exec_driver_sql(f"SELECT to_regclass('{BUFFER_TABLE}')").scalar() is not None


def ensure_buffer(conn: Connection) -> None:
    """Create the buffer, or add what an older layout lacks: install only (the caller bounds the
    lock, io/locks.py); a drain never creates it, since nothing can be buffered without it."""
    metadata.create_all(conn, tables=[BUFFER], checkfirst=True)
    # a buffer created before relations were captured lacks the two columns they need. Look
    # first: ALTER TABLE takes an exclusive lock even when there is nothing to add, and the
    # application's writes (their triggers insert here) would queue behind it
    present = set(
        conn.exec_driver_sql(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = 'sync_pipeline_buffer'"
        ).scalars()
    )
    for column, kind in (("source", "text"), ("link", "jsonb")):
        if column not in present:
            conn.exec_driver_sql(
                f"ALTER TABLE public.sync_pipeline_buffer ADD COLUMN IF NOT EXISTS {column} {kind}"
            )


def captured_table(conn: Connection, name: str) -> capture.CapturedTable:
    """The table `name` resolves to now (schema, name, partitioned?): what its function checks."""
    row = conn.exec_driver_sql(
        "SELECT n.nspname, c.relname, c.relkind = 'p' FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%(t)s)",
        {"t": qualified_table(name)},
    ).one()
    return capture.CapturedTable(row[0], row[1], bool(row[2]))


def _trigger_states(conn: Connection, spec: SyncSpec, watched: Watched) -> tuple[int, bool]:
    """How many of the table's two triggers are there, on its capture function, and whether they
    and their copies on the table's partitions are all ENABLE ALWAYS. Both there and ALWAYS: a
    re-install only replaces the function, and takes no lock on the table at all."""
    names = [
        capture.function_name(spec.name, watched.table),
        capture.truncate_trigger_name(spec.name, watched.table),
    ]
    row = conn.exec_driver_sql(
        "SELECT count(*) FILTER (WHERE t.tgrelid = to_regclass(%(t)s)), "
        "COALESCE(bool_and(t.tgenabled = 'A'), false) FROM pg_trigger t "
        "WHERE t.tgname = ANY(%(n)s) AND t.tgfoid = to_regprocedure(%(f)s) "
        # a plain table has no partition tree (no rows), a partitioned one lists itself and each partition
        "AND (t.tgrelid = to_regclass(%(t)s) "
        "OR t.tgrelid IN (SELECT relid FROM pg_partition_tree(to_regclass(%(t)s))))",
        {"t": qualified_table(watched.table), "n": names, "f": capture.function_ref(spec, watched) + "()"},
    ).one()
    return int(row[0]), bool(row[1])


def partitions(conn: Connection, table: str) -> list[str]:
    """Every partition of `table` (at any level, schema-qualified); none for a plain table."""
    rows = conn.exec_driver_sql(
        "SELECT n.nspname || '.' || c.relname FROM pg_partition_tree(to_regclass(%(t)s)) p "
        "JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE p.level > 0 ORDER BY 1",
        {"t": qualified_table(table)},
    ).scalars()
    return list(rows)


def partitions_without_truncate_trigger(conn: Connection, spec: SyncSpec, watched: Watched) -> list[str]:
    """The table's partitions a `TRUNCATE` of which the spec would not hear (attached after the
    install, or its trigger dropped): what install adds and `doctor` reports."""
    found = partitions(conn, watched.table)
    if not found:
        return []
    having = set(
        conn.exec_driver_sql(
            "SELECT n.nspname || '.' || c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE t.tgname = %(n)s AND t.tgfoid = to_regprocedure(%(f)s)",
            {
                "n": capture.truncate_trigger_name(spec.name, watched.table),
                "f": capture.function_ref(spec, watched) + "()",
            },
        ).scalars()
    )
    return [p for p in found if p not in having]


def install_table(conn: Connection, spec: SyncSpec, watched: Watched, notify: bool) -> bool:
    """The table's capture function (replaced), its privileges, and its triggers when missing
    (on its partitions too), or `ENABLE ALWAYS` again (the partitions' triggers too) when one was
    disabled or enabled otherwise, in the caller's transaction; True when triggers were created."""
    table = captured_table(conn, watched.table)
    conn.exec_driver_sql(capture.trigger_function_sql(spec, watched, table, notify))
    grantees = ownership.function_grantees(conn, capture.function_ref(spec, watched) + "()")
    for statement in capture.function_privileges_sql(spec, watched, grantees):
        conn.exec_driver_sql(statement)
    present, always = _trigger_states(conn, spec, watched)
    if present == 2:  # no trigger of the table is re-created
        if not always:
            for statement in capture.enable_always_sql(spec, watched):
                conn.exec_driver_sql(statement)
            bare = set(partitions_without_truncate_trigger(conn, spec, watched))
            for partition in partitions(conn, watched.table):
                if partition not in bare:  # its own TRUNCATE trigger: no parent's ALTER reaches it
                    conn.exec_driver_sql(capture.partition_enable_always_sql(spec, watched, partition))
        return bool(add_partition_truncate_triggers(conn, spec, watched))
    for statement in capture.trigger_sql(spec, watched, _or_replace(conn)):
        conn.exec_driver_sql(statement)
    add_partition_truncate_triggers(conn, spec, watched)
    return True


def _or_replace(conn: Connection) -> bool:
    return int(conn.exec_driver_sql("SHOW server_version_num").scalar_one()) >= 140000


def add_partition_truncate_triggers(conn: Connection, spec: SyncSpec, watched: Watched) -> list[str]:
    """The TRUNCATE trigger on each partition of the table lacking it, in the caller's transaction
    (each locks its partition: the caller bounds it); the partitions it was added to."""
    bare = partitions_without_truncate_trigger(conn, spec, watched)
    for partition in bare:
        for statement in capture.partition_truncate_sql(spec, watched, partition, _or_replace(conn)):
            conn.exec_driver_sql(statement)
    return bare


@dataclass(frozen=True)
class Installed:
    """One capture function of a spec found in the catalog, and a trigger using it (if any)."""

    function: str  # regprocedure text
    trigger: str | None
    relation: str | None  # regclass text


def installed(conn: Connection, spec: SyncSpec) -> list[Installed]:
    """Every trigger and trigger function the spec's installs created (found in the catalog, so
    tables since removed from the spec are covered too), with the earlier layout's triggers."""
    found = [
        Installed(r.function, r.trigger, r.relation) for r in execute(conn, capture.installed_query(spec))
    ]
    legacy = capture.LEGACY_TRIGGER.format(spec=spec.name)
    for relation in conn.exec_driver_sql(
        "SELECT CAST(tgrelid AS regclass)::text FROM pg_trigger WHERE tgname = %(name)s", {"name": legacy}
    ).scalars():
        found.append(Installed("", legacy, relation))
    return found


def drop_triggers(conn: Connection, relation: str, triggers: Sequence[str]) -> None:
    """DROP TRIGGER takes the table's ACCESS EXCLUSIVE lock: the caller bounds it (io/locks.py)."""
    for trigger in triggers:
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {quote_ident(trigger)} ON {relation}")


def drop_functions(conn: Connection, functions: Sequence[str]) -> None:
    for function in dict.fromkeys(f for f in functions if f):
        conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {function}")


def uninstall(conn: Connection, spec: SyncSpec) -> list[str]:
    """Everything of `installed`, in the caller's transaction; idempotent. Returns the tables.
    (ops/capture.uninstall_capture does the same one table per bounded transaction.)"""
    found = installed(conn, spec)
    tables: dict[str, list[str]] = {}
    for item in found:
        if item.trigger is not None and item.relation is not None:
            tables.setdefault(item.relation, []).append(item.trigger)
    for relation, triggers in tables.items():
        drop_triggers(conn, relation, triggers)
    drop_functions(conn, [item.function for item in found])
    return sorted(tables)


@dataclass
class BufferState:
    """A spec's backlog in the buffer: what the sensor, `doctor` and the exporter all read."""

    pending: int
    oldest_age_seconds: float | None
    max_id: int = 0  # newest entry: identifies "this much work" for run keys
    truncates: int = 0


def backlogs(conn: Connection, spec: str | None = None) -> dict[str, BufferState]:
    """What is buffered, per spec (only `spec`'s when given): every spec with entries, whether a
    spec file names it or not. Read only: a buffer that does not exist yet holds nothing (and is
    not created by looking)."""
    if not buffer_exists(conn):
        return {}
    query = sa.select(
        BUFFER.c.spec,
        sa.func.count(),
        sa.func.extract("epoch", sa.func.clock_timestamp() - sa.func.min(BUFFER.c.changed_at)),
        sa.func.max(BUFFER.c.id),
        sa.func.count().filter(BUFFER.c.op == capture.TRUNCATE_OP),
    ).group_by(BUFFER.c.spec)
    if spec is not None:
        query = query.where(BUFFER.c.spec == spec)
    return {
        r[0]: BufferState(int(r[1]), float(r[2]) if r[2] is not None else None, int(r[3]), int(r[4]))
        for r in conn.execute(query)
    }


def buffer_state(conn: Connection, spec: SyncSpec) -> BufferState:
    return backlogs(conn, spec.name).get(spec.name) or BufferState(pending=0, oldest_age_seconds=None)


@dataclass
class CaptureFunction:
    """A capture function found in the catalog, of whichever spec, and the triggers using it."""

    schema: str
    name: str
    spec: str
    table: str | None  # as its marker names it (the earlier layout's carry none)
    legacy: bool
    # (trigger, table schema, table, fires on TRUNCATE)
    triggers: list[tuple[str, str, str, bool]] = field(default_factory=list)


def capture_functions(conn: Connection) -> list[CaptureFunction]:
    """Every capture function in the database (core/cdc/triggers.catalog_query), one per function."""
    found: dict[tuple[str, str], CaptureFunction] = {}
    for row in execute(conn, capture.catalog_query()):
        marked = capture.parse_marker(row.comment)
        spec = marked[0] if marked else capture.legacy_spec(row.function_name)
        if spec is None:  # a marker-like comment we did not write
            continue
        key = (row.function_schema, row.function_name)
        if key not in found:
            table = marked[1] if marked else None
            found[key] = CaptureFunction(row.function_schema, row.function_name, spec, table, not marked)
        if row.trigger is not None:
            found[key].triggers.append((row.trigger, row.table_schema, row.table_name, row.on_truncate))
    return list(found.values())


@dataclass(frozen=True)
class ClaimedEntry:
    """One claimed entry. `key`: the canonical texts of the document key (core/sql/keys.py), for the
    root table's entries only; `capture_error`: why a trigger could not read its row (a
    TRUNCATE's entry carries it, core/cdc/triggers.CAPTURE_ERROR)."""

    id: int
    source: str | None  # None: the root table
    op: str
    key: tuple[str, ...]
    capture_error: str | None


def claim(
    conn: Connection, spec: SyncSpec, root_key: Sequence[ColumnInfo], limit: int, changes: str = BUFFER_TABLE
) -> list[ClaimedEntry]:
    """The spec's oldest entries, locked until the caller's transaction ends
    (core/cdc/triggers.claim_query): of the buffer, or of the logical drain's session table."""
    width = len(root_key)
    return [
        # the query's columns: id, source, op, one text per key column, capture_error
        ClaimedEntry(row.id, row.source, row.op, tuple(row[3 : 3 + width]), row.capture_error)
        for row in execute(conn, capture.claim_query(spec, root_key, limit, changes))
    ]


def add_entries(conn: Connection, spec: str, entries: Sequence[Entry], changes: str = BUFFER_TABLE) -> None:
    """Entries as a trigger writes them (core/cdc/logical.Entry), in their order, in one statement:
    into the buffer (a slot handed over to triggers), or the logical drain's session table."""
    rows = [{"source": e.source, "pk": e.pk, "op": e.op, "link": e.link} for e in entries]
    conn.exec_driver_sql(
        f"INSERT INTO {changes} (spec, source, pk, op, link) "
        "SELECT %(spec)s, e.v ->> 'source', e.v -> 'pk', e.v ->> 'op', e.v -> 'link' "
        "FROM jsonb_array_elements(CAST(%(entries)s AS jsonb)) WITH ORDINALITY AS e(v, n) ORDER BY e.n",
        {"spec": spec, "entries": json.dumps(rows, default=str)},
    )


def remove(conn: Connection, ids: list[int]) -> list[float]:
    """Delete the entries from the buffer; how long each waited since its trigger recorded it
    (the server's clock both times): the drain's lag, measured on the entries themselves."""
    # one array parameter (an expanded IN list of a whole claim costs more to build than to
    # run), typed: psycopg sends a list of ints as smallint[]/integer[], and comparing bigint ids
    # with those took 5x as long here (70 vs 14 ms for 5,000 entries); one row back, not one per entry
    ages = conn.exec_driver_sql(
        f"WITH gone AS (DELETE FROM {BUFFER_TABLE} WHERE id = ANY(CAST(%(ids)s AS bigint[])) "
        "RETURNING changed_at) "
        "SELECT array_agg(CAST(extract(epoch FROM clock_timestamp() - changed_at) AS float8)) FROM gone",
        {"ids": ids},
    ).scalar()
    return [age for age in ages or () if age is not None]


def has_capture(conn: Connection, spec: SyncSpec) -> bool:
    """Are any of the spec's triggers installed? (a following drain is worth a run only then)"""
    return execute(conn, capture.installed_query(spec)).first() is not None


def has_pending(engine: Engine, spec: SyncSpec) -> bool:
    """One index probe: is anything buffered for the spec? (cheap enough to poll)"""
    with engine.connect() as conn:
        found = conn.execute(sa.select(BUFFER.c.id).where(BUFFER.c.spec == spec.name).limit(1)).first()
        conn.commit()
    return found is not None


class ChangeListener:
    """LISTENs for the triggers' NOTIFY: a following drain sleeps here instead of polling, and
    wakes within moments of a commit that buffered a change of its spec."""

    def __init__(self, url: str):
        self._conn = psycopg.connect(libpq_url(url, "sync_pipeline_listen"), autocommit=True)
        self._conn.execute(f"LISTEN {quote_ident(capture.NOTIFY_CHANNEL)}")

    def wait(self, spec: str, timeout: float) -> bool:
        """True as soon as a change of `spec` was committed (since the last call), False when
        none was within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            for notice in self._conn.notifies(timeout=left, stop_after=1):
                if notice.payload == spec:
                    return True
        return False

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ChangeListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
