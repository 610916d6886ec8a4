"""How the replication slots of `capture: logical` specs are doing, for `doctor`, the drain's
asset metadata and the buffer sensor.

A slot the drain stops reading keeps every WAL segment written since its
confirmed position: the server's disk fills until `max_slot_wal_keep_size`
(if set) invalidates the slot — then its changes are lost, and a new slot
followed by `verify --fix` repairs the gap (a full sync would leave the
documents of rows deleted meanwhile). So lag is shown in bytes and in age, alerted on above a
threshold, and a slot whose spec left the file is a finding with its fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from sync_pipeline.core.cdc import logical
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.quoting import sql_literal
from sync_pipeline.io import replication
from sync_pipeline.io.buffer import BufferState, buffer_state
from sync_pipeline.io.replication import SlotState

MB = 1024 * 1024


@dataclass
class SlotStatus:
    spec: str
    slot: str
    lag_bytes: int | None
    age_seconds: float | None
    wal_status: str
    reader: str  # the PostgreSQL process reading it now, or "-"
    problem: str = ""
    fix: list[str] = field(default_factory=list)


def pending_age(conn: Connection, state: SlotState) -> float | None:
    """The oldest unconfirmed change's age; None when nothing is pending or a drain is reading
    the slot right now (it cannot be peeked then — and it is being drained)."""
    if state.active_pid is not None or state.lost:
        return None
    spec = state.slot.removeprefix(logical.SLOT_PREFIX)
    try:
        with conn.begin_nested():
            return replication.slot_lag_seconds(conn, spec)
    except DBAPIError:
        return None


def unpublished(conn: Connection, spec: SyncSpec, watched: Sequence[str]) -> list[str]:
    """Watched tables the publication does not carry (it must carry them all)."""
    published = replication.published_tables(conn, spec.name) or set()
    resolved = []
    for table in watched:
        name = replication.resolved_name(conn, table)
        if name is not None and name not in published:
            resolved.append(table)
    return resolved


def spec_slot_status(
    conn: Connection, spec: SyncSpec, watched: Sequence[str], limit_seconds: float
) -> SlotStatus:
    install = [f"sync-pipeline install-triggers --spec {spec.name}"]
    # after a gap in capture: every row compared with its document, deleted rows' included
    repair = f"sync-pipeline verify --spec {spec.name} --fix"
    name = logical.slot_name(spec.name)
    state = replication.slot_state(conn, spec.name)
    if state is None:
        resync = [*install, repair]
        return SlotStatus(spec.name, name, None, None, "-", "-", "no slot: changes are not captured", resync)
    status = SlotStatus(
        spec.name, name, state.lag_bytes, pending_age(conn, state), state.wal_status or "-",
        str(state.active_pid or "-"),
    )  # fmt: skip
    limit_bytes = spec.buffer_sensor.slot_lag_alert_mb * MB
    if state.lost:
        status.problem = "slot invalidated (max_slot_wal_keep_size): its changes are gone"
        status.fix = [f"sync-pipeline uninstall-triggers --spec {spec.name}", *install, repair]
    elif missing := unpublished(conn, spec, watched):
        status.problem = f"not published: {', '.join(missing)}"
        status.fix = install
    elif state.wal_status == "unreserved":
        status.problem = "unreserved: past max_slot_wal_keep_size, the next checkpoint invalidates it"
        status.fix = [f"sync-pipeline flush --spec {spec.name}"]
    elif state.lag_bytes > limit_bytes:
        status.problem = f"holds {state.lag_bytes / MB:.0f} MB of WAL (> {limit_bytes / MB:g})"
        status.fix = [f"sync-pipeline flush --spec {spec.name}"]
    elif status.age_seconds is not None and status.age_seconds > limit_seconds:
        status.problem = f"oldest change waited {status.age_seconds / 60:.0f} min: is the sensor running?"
        status.fix = [f"sync-pipeline flush --spec {spec.name}"]
    return status


def orphan_statuses(conn: Connection, specs: Sequence[SyncSpec]) -> list[SlotStatus]:
    """Our slots whose spec is not in the file (or no longer logical): they keep WAL forever."""
    mine = {logical.slot_name(s.name) for s in specs if s.capture == "logical"}
    found = []
    for state in replication.our_slots(conn):
        if state.slot in mine:
            continue
        drop = [f"SELECT pg_drop_replication_slot({sql_literal(state.slot)});"]
        problem = "no logical spec reads it: WAL piles up"
        spec = state.slot.removeprefix(logical.SLOT_PREFIX)
        if any(s.name == spec for s in specs):
            # the spec switched to triggers: installing them moves the slot's pending changes to
            # the buffer, then drops it (uninstalling first would drop them with it)
            problem = "left by capture: logical, its changes not moved to the buffer: WAL piles up"
            drop = [f"sync-pipeline install-triggers --spec {spec}"]
        found.append(
            SlotStatus(spec, state.slot, state.lag_bytes, None, state.wal_status or "-",
                       str(state.active_pid or "-"), problem, drop)
        )  # fmt: skip
    return found


def slot_metadata(conn: Connection, spec: SyncSpec) -> dict[str, float | int | str]:
    """What the drain's materialization shows about the slot after it ran."""
    state = replication.slot_state(conn, spec.name)
    if state is None:
        return {"slot": "missing"}
    return {"slot": state.slot, "slot_lag_bytes": state.lag_bytes, "slot_wal_status": state.wal_status or "-"}


def slot_backlog(conn: Connection, spec: SyncSpec) -> BufferState:
    """The buffer sensor's view of a logical spec: pending 1 when the slot holds a change of the
    spec's tables (counting them would mean decoding them all), its age, and the confirmed
    position standing in for the buffer's newest id — plus what the buffer still holds from the
    spec's triggers before it switched (its drain takes those first, ops/drain/sources.py)."""
    leftover = buffer_state(conn, spec)
    state = replication.slot_state(conn, spec.name)
    if state is None:
        return leftover
    age = pending_age(conn, state)
    position = logical.lsn_number(state.confirmed_lsn) if state.confirmed_lsn else 0
    ages = [a for a in (age, leftover.oldest_age_seconds) if a is not None]
    pending = (1 if age is not None else 0) + leftover.pending
    return BufferState(pending, max(ages) if ages else None, position + leftover.max_id)
