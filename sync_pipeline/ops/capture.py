"""Install and uninstall a spec's change capture on every table its documents read: the
change-buffer triggers, or (`capture: logical`) a publication and a replication slot.

Every watched table is checked against the spec before anything is created:
a missing table or column is one error that lists them all, and nothing is
installed — a trigger that names a column its table lacks would otherwise make
every write of the user's application fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from sync_pipeline.core.cdc.fanout import BUFFER_TABLE, Watched, watched_tables
from sync_pipeline.core.cdc.grants import DEAD_LETTER_TABLE, PARTITION_SETS_TABLE
from sync_pipeline.core.cdc.logical import slot_name
from sync_pipeline.core.cdc.triggers import function_name, function_ref, truncate_trigger_name
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.quoting import qualified_table
from sync_pipeline.io import buffer, deadletters, ownership, partition_sets, replication
from sync_pipeline.io.locks import LockTimeout, bounded
from sync_pipeline.io.postgres import describe_table
from sync_pipeline.ops.binding import bind
from sync_pipeline.ops.handover import hand_over
from sync_pipeline.settings import LockSettings

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


@dataclass
class InstallReport:
    """What an install did: the watched tables, and what the installer should hear (a superuser)."""

    tables: list[str]
    warnings: list[str] = field(default_factory=list)


def _refuse_foreign_objects(conn: Connection, spec: SyncSpec, watched: list[Watched]) -> None:
    functions = [function_ref(spec, w) + "()" for w in watched]
    foreign = ownership.foreign_objects(
        conn, [BUFFER_TABLE, DEAD_LETTER_TABLE, PARTITION_SETS_TABLE], functions
    )
    if foreign:
        listed = "; ".join(f"{o.kind} {o.name} is owned by {o.owner}" for o in foreign)
        raise CaptureError(
            f"spec '{spec.name}': cannot install change capture, nothing was installed: {listed}, "
            "not by the role installing now. sync_pipeline never adopts an object it did not "
            "create: if it is from an earlier install, its owner can hand it over (ALTER … OWNER "
            "TO current role); otherwise drop or rename it"
        )


def _checked(engine: Engine, spec: SyncSpec) -> tuple[list[Watched], list[str]]:
    """The watched tables, checked against the spec and the catalog (CaptureError), and the
    warnings an install should print."""
    with engine.connect() as conn:
        watched = watched_for(conn, spec)
        _refuse_foreign_objects(conn, spec, watched)
        warning = ownership.superuser_warning(conn, [w.table for w in watched])
    return watched, [warning] if warning else []


def _create_tables(engine: Engine, locks: LockSettings) -> None:
    """The buffer (or its missing columns) and the dead-letter table: the buffer's ALTER is
    bounded too, since every captured write inserts into it."""

    def create(conn: Connection) -> None:
        buffer.ensure_buffer(conn)
        deadletters.ensure_table(conn)
        partition_sets.ensure_table(conn)

    bounded(engine, "creating the change buffer", BUFFER_TABLE, create, locks)


def install_capture(engine: Engine, spec: SyncSpec, locks: LockSettings | None = None) -> InstallReport:
    """Whichever capture the spec names, on every watched table, one table per bounded
    transaction (io/locks.py). A spec that switched from triggers to logical loses its triggers
    only once the slot exists (and the other way round: its slot's pending changes are moved to
    the buffer before it is dropped), so no change falls between the two."""
    locks = locks or LockSettings()
    if spec.capture == "triggers":
        report = _install_triggers(engine, spec, locks)
        _hand_over_slot(engine, spec)
        replication.drop(engine, spec.name)
        _record_partitions(engine, spec, report.tables)
        return report
    with engine.connect() as conn:
        level = replication.wal_level(conn)
    if level != "logical":
        raise CaptureError(
            f"spec '{spec.name}' uses capture: logical, but this PostgreSQL runs with wal_level = "
            f"{level}: set wal_level = logical and restart it (managed services: RDS/Aurora "
            "rds.logical_replication = 1, Cloud SQL cloudsql.logical_decoding = on, Azure "
            "wal_level = logical), or use capture: triggers; nothing was installed"
        )
    watched, warnings = _checked(engine, spec)
    _create_tables(engine, locks)  # `doctor` and the sensor read the buffer for every spec
    try:
        for table in dict.fromkeys(w.table for w in watched):
            bounded(
                engine, f"spec '{spec.name}': REPLICA IDENTITY FULL", table,
                lambda conn, t=table: replication.set_identity(conn, t, watched), locks,
            )  # fmt: skip
        bounded(
            engine, f"spec '{spec.name}': publishing its tables", None,
            lambda conn: replication.install_publication(conn, spec.name, watched), locks,
        )  # fmt: skip
        _create_slot(engine, spec, locks)
    except LockTimeout as exc:
        raise CaptureError(str(exc)) from None
    _uninstall_triggers(engine, spec, locks)
    _record_partitions(engine, spec, [w.table for w in watched])
    return InstallReport(sorted({w.table for w in watched}), warnings)


def _hand_over_slot(engine: Engine, spec: SyncSpec) -> None:
    """A slot left by `capture: logical`: its unconfirmed changes go to the buffer before it is
    dropped (ops/handover.py); the triggers capture everything after."""
    with engine.connect() as conn:
        watched = watched_now(conn, spec)
    try:
        hand_over(engine, spec, watched)
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise CaptureError(
            f"spec '{spec.name}': the triggers are installed, but the changes left in replication "
            f"slot {slot_name(spec.name)} could not be moved to the buffer: {reason}. The slot is "
            "kept; run install-triggers again once no drain reads it (a slot `doctor` shows as "
            f"lost holds nothing to move: drop it, then `sync-pipeline verify --spec {spec.name} --fix`)"
        ) from None


def _record_partitions(engine: Engine, spec: SyncSpec, tables: list[str]) -> None:
    """Each partitioned table's partitions as the install found them, for the drains to compare
    with (ops/drain/partitions.py); a set recorded already is kept, so a re-install cannot hide a
    change no drain has answered yet."""
    with engine.begin() as conn:
        for table in dict.fromkeys(tables):
            found = partition_sets.current(conn, table)
            if found is not None:
                partition_sets.record(conn, spec.name, table, found, replace=False)


def _create_slot(engine: Engine, spec: SyncSpec, locks: LockSettings) -> None:
    """The slot, after the publication committed (a slot decodes with the catalog of each
    change's time, where the publication must exist already). Creating it waits for every
    transaction that has written to end: bounded like a lock, since it is one."""
    try:
        bounded(
            engine, f"spec '{spec.name}': creating replication slot {slot_name(spec.name)}", None,
            lambda conn: replication.create_slot(conn, spec.name), locks, autocommit=True,
        )  # fmt: skip
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise CaptureError(
            f"spec '{spec.name}': cannot create replication slot {slot_name(spec.name)}: {reason} "
            "(the role needs the REPLICATION attribute, or rds_replication / cloudsqlsuperuser on "
            "managed services: docs/grants.md); its publication was created and is harmless alone"
        ) from None


def _install_triggers(engine: Engine, spec: SyncSpec, locks: LockSettings) -> InstallReport:
    """Each table's function and triggers in a bounded transaction of its own. When one table's
    lock is not granted, the triggers this install created on the others are removed again:
    the spec is captured on all of its tables or on none that it was not before."""
    watched, warnings = _checked(engine, spec)
    _create_tables(engine, locks)
    created: list[Watched] = []
    for table in watched:
        try:
            made = bounded(
                engine, f"spec '{spec.name}': installing capture", table.table,
                lambda conn, t=table: buffer.install_table(conn, spec, t, spec.buffer_sensor.notify), locks,
            )  # fmt: skip
        except LockTimeout as exc:
            undone = _undo(engine, spec, created, locks)
            raise CaptureError(f"{exc}{undone}") from None
        if made:
            created.append(table)
    return InstallReport([w.table for w in watched], warnings)


def _undo(engine: Engine, spec: SyncSpec, created: list[Watched], locks: LockSettings) -> str:
    """Remove what this install created on other tables; what could not be removed, said."""
    left = []
    for table in created:
        names = [function_name(spec.name, table.table), truncate_trigger_name(spec.name, table.table)]
        try:
            bounded(
                engine, "undoing the install", table.table,
                lambda conn, t=table, n=names: _drop_table_capture(conn, spec, t, n), locks,
            )  # fmt: skip
        except LockTimeout:
            left.append(table.table)
    if left:
        return f". Left installed on {', '.join(left)}: remove it with uninstall-triggers --spec {spec.name}"
    return ". No table's capture was changed" if not created else ". What it had installed was removed"


def _drop_table_capture(conn: Connection, spec: SyncSpec, watched: Watched, triggers: list[str]) -> None:
    buffer.drop_triggers(conn, qualified_table(watched.table), triggers)
    buffer.drop_functions(conn, [function_ref(spec, watched) + "()"])


def _uninstall_triggers(engine: Engine, spec: SyncSpec, locks: LockSettings) -> list[str]:
    """Every trigger of the spec's installs, one table per bounded transaction, then the
    functions (which lock no table)."""
    with engine.connect() as conn:
        found = buffer.installed(conn, spec)
    by_table: dict[str, list[str]] = {}
    for item in found:
        if item.trigger is not None and item.relation is not None:
            by_table.setdefault(item.relation, []).append(item.trigger)
    for relation, triggers in by_table.items():
        try:
            bounded(
                engine, f"spec '{spec.name}': removing capture", relation,
                lambda conn, r=relation, t=triggers: buffer.drop_triggers(conn, r, t), locks,
            )  # fmt: skip
        except LockTimeout as exc:
            raise CaptureError(str(exc)) from None
    with engine.begin() as conn:
        buffer.drop_functions(conn, [item.function for item in found])
    return sorted(by_table)


def uninstall_capture(engine: Engine, spec: SyncSpec, locks: LockSettings | None = None) -> list[str]:
    """Triggers, slot and publication of the spec, whatever its capture is now; idempotent. A
    REPLICA IDENTITY FULL set on install is left: other subscribers may rely on it."""
    tables = _uninstall_triggers(engine, spec, locks or LockSettings())
    with engine.begin() as conn:
        partition_sets.forget(conn, spec.name)
    return tables + replication.drop(engine, spec.name)
