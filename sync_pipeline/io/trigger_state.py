"""Are a spec's capture triggers there, on the table they were installed for, and firing?

A trigger can stop capturing without anything failing: `ALTER TABLE … DISABLE
TRIGGER` (pg_restore --disable-triggers leaves them `ENABLE`d as plain origin
triggers afterwards), a migration that drops and re-creates the table (its
triggers go with the old one; a rename moves them onto the renamed table), or a
trigger that is not `ENABLE ALWAYS` in a session with `session_replication_role
= replica`. The capture function survives all of these, so "capture installed"
still reads true: `doctor` and the buffer sensor look here instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from sync_pipeline.core.cdc import triggers as capture
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.quoting import qualified_table

ALWAYS = "A"
# pg_trigger.tgenabled: what each state other than ALWAYS leaves uncaptured
_NOT_ALWAYS = {
    "D": "disabled (ALTER TABLE … DISABLE TRIGGER): no change is captured",
    "O": "not ENABLE ALWAYS: writes of session_replication_role = replica sessions are not captured",
    "R": "ENABLE REPLICA: only session_replication_role = replica sessions are captured",
}
MISSING = "missing (the table was dropped and re-created, or the trigger dropped): no change is captured"


@dataclass(frozen=True)
class TriggerGap:
    """One capture trigger that does not fire on every write of its table."""

    table: str  # as the spec's install named it
    trigger: str  # "-" when the table itself is gone
    kind: str  # "row" | "TRUNCATE" | "table"
    state: str  # pg_trigger.tgenabled, "" when missing
    problem: str
    partition: str | None = None  # a partition's own copy of the trigger (ALTER TABLE on it alone)

    @property
    def lost_changes(self) -> bool:
        """Writes of every session went uncaptured (not only replica-role ones): the index may
        lack them, and only a verify --fix finds them now."""
        return self.state in ("", "D")

    def describe(self) -> str:
        where = f" on partition {self.partition}" if self.partition else ""
        return f"{self.kind} trigger {self.trigger}{where} {self.problem}"

    def line(self) -> str:
        return f"{self.table}: {self.describe()}"


def _functions(conn: Connection, spec: SyncSpec) -> list[tuple[int, str]]:
    """(function oid, table its marker names) of each capture function of the spec."""
    rows = conn.exec_driver_sql(
        "SELECT p.oid, obj_description(p.oid, 'pg_proc') FROM pg_proc p "
        "WHERE obj_description(p.oid, 'pg_proc') LIKE %(m)s ORDER BY 2",
        {"m": f"{capture.MARKER} {spec.name}: %"},
    ).all()
    found = []
    for oid, comment in rows:
        marked = capture.parse_marker(comment)
        if marked is not None and marked[0] == spec.name:  # `_` in a spec name is a LIKE wildcard
            found.append((int(oid), marked[1]))
    return found


def trigger_gaps(conn: Connection, spec: SyncSpec) -> list[TriggerGap]:
    """Every capture trigger of the spec's installs that is missing from the table its function
    was installed for, or is there but not `ENABLE ALWAYS`. Tables the spec watches but never
    had capture installed on are `doctor`'s "watched but not captured", not this."""
    gaps = []
    for oid, table in _functions(conn, spec):
        names = {
            capture.function_name(spec.name, table): "row",
            capture.truncate_trigger_name(spec.name, table): "TRUNCATE",
        }
        rows = conn.exec_driver_sql(
            "SELECT n.name, to_regclass(%(t)s) IS NOT NULL, t.tgenabled "
            "FROM unnest(CAST(%(n)s AS text[])) AS n(name) LEFT JOIN pg_trigger t "
            "ON t.tgrelid = to_regclass(%(t)s) AND t.tgname = n.name AND t.tgfoid = %(f)s",
            {"t": qualified_table(table), "n": list(names), "f": oid},
        ).all()
        if not rows[0][1]:
            gaps.append(TriggerGap(table, "-", "table", "", "table not found: nothing is captured"))
            continue
        for name, _, state in rows:
            if state is None:
                gaps.append(TriggerGap(table, name, names[name], "", MISSING))
            elif state != ALWAYS:
                problem = _NOT_ALWAYS.get(state, f"in state {state!r}")
                gaps.append(TriggerGap(table, name, names[name], state, problem))
        gaps += _partition_gaps(conn, table, names, oid)
    return gaps


def _partition_gaps(conn: Connection, table: str, names: dict[str, str], oid: int) -> list[TriggerGap]:
    """The copies of a partitioned table's triggers on its partitions (PostgreSQL keeps one per
    partition, and a DISABLE TRIGGER on the partition reaches that copy alone)."""
    rows = conn.exec_driver_sql(
        "SELECT CAST(p.relid AS regclass)::text, t.tgname, t.tgenabled "
        "FROM pg_partition_tree(to_regclass(%(t)s)) p JOIN pg_trigger t ON t.tgrelid = p.relid "
        "WHERE p.level > 0 AND t.tgname = ANY(%(n)s) AND t.tgfoid = %(f)s AND t.tgenabled <> 'A' "
        "ORDER BY 1, 2",
        {"t": qualified_table(table), "n": list(names), "f": oid},
    ).all()
    gaps = [
        TriggerGap(table, name, names[name], state, _NOT_ALWAYS.get(state, f"in state {state!r}"), partition)
        for partition, name, state in rows
    ]
    # a partition's own TRUNCATE trigger (no parent trigger fires for `TRUNCATE one_partition`):
    # one attached since the last install or drain has none yet — the next drain adds it and
    # reconciles the spec (ops/drain/partitions.py)
    truncate = next(name for name, kind in names.items() if kind == "TRUNCATE")
    bare = conn.exec_driver_sql(
        "SELECT CAST(p.relid AS regclass)::text FROM pg_partition_tree(to_regclass(%(t)s)) p "
        "WHERE p.level > 0 AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = p.relid "
        "AND t.tgname = %(n)s AND t.tgfoid = %(f)s) ORDER BY 1",
        {"t": qualified_table(table), "n": truncate, "f": oid},
    ).scalars()
    problem = "missing: a TRUNCATE of this partition is not captured until the next drain adds it"
    return gaps + [TriggerGap(table, truncate, "TRUNCATE", "", problem, partition) for partition in bare]
