"""Install and uninstall a spec's change capture on every table its documents read: the
change-buffer triggers, or (`capture: logical`) a publication and a replication slot.

Every watched table is checked against the spec before anything is created:
a missing table or column is one error that lists them all, and nothing is
installed — a trigger that names a column its table lacks would otherwise make
every write of the user's application fail.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from sync_pipeline.core.fanout import Watched, watched_tables
from sync_pipeline.core.logical import slot_name
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.io import buffer, deadletters, replication
from sync_pipeline.io.postgres import describe_table
from sync_pipeline.ops.binding import bind

TABLE_SOURCE = "table:"


class CaptureError(ValueError):
    """The spec's tables do not carry what the triggers would record; nothing was installed."""


def _query_watched(conn: Connection, spec: SyncSpec) -> list[Watched]:
    watched = []
    for change in spec.source.change_tables:
        if change.roots is None:
            key = tuple(spec.source.primary_key)  # carries the document key under the same names
            watched.append(Watched(change.table, None, key, (), key))
            continue
        table = describe_table(conn, change.table)
        own = tuple(table.primary_key) if table else ()
        watched.append(Watched(change.table, TABLE_SOURCE + change.table, own, own, own, False))
    return watched


def watched_now(conn: Connection, spec: SyncSpec) -> list[Watched]:
    """The tables the spec's documents read today, unchecked (none for a query spec without
    change_tables): what `doctor` compares the installed triggers with, even when a column has
    gone and an install would be refused."""
    if spec.source.table is not None:
        bound = bind(conn, spec)  # a relation that does not match the database is a SourceError
        return watched_tables(spec, spec.source.primary_key, bound.relations)
    return _query_watched(conn, spec)


def watched_for(conn: Connection, spec: SyncSpec) -> list[Watched]:
    """The tables to watch, checked: CaptureError listing every problem found."""
    if spec.source.table is None and not spec.source.change_tables:
        raise CaptureError(
            f"spec '{spec.name}' reads a query: list the tables to watch in source.change_tables"
        )
    watched = watched_now(conn, spec)
    problems = []
    for table in watched:
        info = describe_table(conn, table.table)
        if info is None:
            problems.append(f"  {table.table}: table not found")
            continue
        absent = [c for c in table.required if c not in info.names]
        if absent:
            problems.append(
                f"  {table.table}: no column {', '.join(absent)} (it has {', '.join(info.names)})"
            )
        is_roots = table.source is not None and table.source.startswith(TABLE_SOURCE)
        if is_roots and len(info.primary_key) != 1:
            problems.append(f"  {table.table}: a `roots:` table needs a one-column PRIMARY KEY (its :keys)")
    if problems:
        raise CaptureError(
            f"spec '{spec.name}': cannot install change capture, nothing was installed:\n"
            + "\n".join(problems)
        )
    return watched


def install_triggers(conn: Connection, spec: SyncSpec) -> list[str]:
    """Triggers on every watched table, in the caller's transaction; returns the tables. The
    owner-only step (docs/grants.md): the dead-letter table is created here too, so a role that
    may not create tables can still keep what Elasticsearch refuses."""
    if spec.capture == "logical":
        raise CaptureError(f"spec '{spec.name}' uses capture: logical: install it with install_capture")
    watched = watched_for(conn, spec)
    deadletters.ensure_table(conn)
    return buffer.install_watched(conn, spec, watched)


def uninstall_triggers(conn: Connection, spec: SyncSpec) -> list[str]:
    """Exactly what installs of this spec created, on any table; idempotent."""
    return buffer.uninstall(conn, spec)


def install_capture(engine: Engine, spec: SyncSpec) -> list[str]:
    """Whichever capture the spec names, on every watched table; returns the tables. A spec that
    switched from triggers to logical loses its triggers only once the slot exists (and the
    other way round), so no change falls between the two."""
    if spec.capture == "triggers":
        with engine.begin() as conn:
            tables = install_triggers(conn, spec)
        replication.drop(engine, spec.name)
        return tables
    with engine.begin() as conn:
        level = replication.wal_level(conn)
        if level != "logical":
            raise CaptureError(
                f"spec '{spec.name}' uses capture: logical, but this PostgreSQL runs with wal_level = "
                f"{level}: set wal_level = logical and restart it (managed services: RDS/Aurora "
                "rds.logical_replication = 1, Cloud SQL cloudsql.logical_decoding = on, Azure "
                "wal_level = logical), or use capture: triggers; nothing was installed"
            )
        watched = watched_for(conn, spec)
        deadletters.ensure_table(conn)
        buffer.ensure_buffer(conn)  # `doctor` and the sensor read it for every spec
        replication.install_publication(conn, spec.name, watched)
    try:
        replication.create_slot(engine, spec.name)
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise CaptureError(
            f"spec '{spec.name}': cannot create replication slot {slot_name(spec.name)}: {reason} "
            "(the role needs the REPLICATION attribute, or rds_replication / cloudsqlsuperuser on "
            "managed services: docs/grants.md); its publication was created and is harmless alone"
        ) from None
    with engine.begin() as conn:
        buffer.uninstall(conn, spec)
    return sorted({w.table for w in watched})


def uninstall_capture(engine: Engine, spec: SyncSpec) -> list[str]:
    """Triggers, slot and publication of the spec, whatever its capture is now; idempotent. A
    REPLICA IDENTITY FULL set on install is left: other subscribers may rely on it."""
    with engine.begin() as conn:
        tables = buffer.uninstall(conn, spec)
    return tables + replication.drop(engine, spec.name)
