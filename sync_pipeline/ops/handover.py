"""A spec switching from `capture: logical` to `capture: triggers` hands its slot's pending
changes over to the buffer before the slot is dropped.

A decoded change becomes the entry its trigger would have written
(core/logical.entries_for), so the trigger drain applies them as its own. The
install calls this once the triggers are in place, so every change is in the
slot, in the buffer, or in both (an entry applied twice only re-reads its row).
The slot is read with peek, a page of transactions at a time, each page's
entries committed to the buffer before the slot is advanced past it: a crash
in between leaves them in the slot, and the next install hands them over again.

The other direction needs no handover: a logical drain drains what the buffer
still holds for its spec (ops/drain.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from sqlalchemy.engine import Engine

from sync_pipeline.core import logical
from sync_pipeline.core.fanout import BUFFER_TABLE, Watched
from sync_pipeline.core.pgoutput import Change, Commit, Decoder, Truncate
from sync_pipeline.core.quoting import qualified_table
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.io import replication

RELEASE_SECONDS = 5.0
PAGE_CHANGES = 5000  # messages per peek: whole transactions are read, so a page may run over

_INSERT = (
    f"INSERT INTO {BUFFER_TABLE} (spec, source, pk, op, link) "
    "SELECT %(spec)s, e.v ->> 'source', e.v -> 'pk', e.v ->> 'op', e.v -> 'link' "
    "FROM jsonb_array_elements(CAST(%(entries)s AS jsonb)) WITH ORDINALITY AS e(v, n) ORDER BY e.n"
)


def _by_relation(engine: Engine, watched: Sequence[Watched]) -> dict[int, list[Watched]]:
    found: dict[int, list[Watched]] = {}
    with engine.connect() as conn:
        for table in watched:
            oid = conn.exec_driver_sql(
                "SELECT CAST(to_regclass(%(t)s) AS oid)", {"t": qualified_table(table.table)}
            ).scalar()
            if oid is not None:
                found.setdefault(int(oid), []).append(table)
        conn.commit()
    return found


def _entries(rows: Sequence[bytes], by_relation: dict[int, list[Watched]]) -> tuple[list[dict], int | None]:
    """The buffer entries of a page's whole transactions, and the end of its last commit."""
    decoder, entries, pending = Decoder(), [], []
    end: int | None = None
    for data in rows:
        message = decoder.decode(data)
        if isinstance(message, Change):
            for watched in by_relation.get(message.relid, []):
                pending += logical.entries_for(message, watched)
        elif isinstance(message, Truncate):
            for relid in message.relids:
                pending += [logical.truncate_entry(w) for w in by_relation.get(relid, [])]
        elif isinstance(message, Commit):
            entries += [{"source": e.source, "pk": e.pk, "op": e.op, "link": e.link} for e in pending]
            pending, end = [], message.end_lsn
    return entries, end


def hand_over(engine: Engine, spec: SyncSpec, watched: Sequence[Watched]) -> int:
    """Move the spec's slot's committed changes into the buffer, as entries; how many. The slot
    (if any) stays: the caller drops it once this returned."""
    deadline = time.monotonic() + RELEASE_SECONDS
    while True:
        with engine.connect() as conn:
            state = replication.slot_state(conn, spec.name)
            upto = conn.exec_driver_sql("SELECT CAST(pg_current_wal_insert_lsn() AS text)").scalar_one()
            conn.commit()
        if state is None:
            return 0
        # a drain that just ended: its walsender lets go of the slot moments after; one still
        # reading it makes the peek below fail (the caller says so)
        if state.active_pid is None or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    by_relation = _by_relation(engine, watched)
    moved = 0
    while True:
        with engine.begin() as conn:
            rows = replication.peek(conn, spec.name, upto, PAGE_CHANGES)
            entries, end = _entries(rows, by_relation)
            if end is None:
                return moved
            if entries:
                conn.exec_driver_sql(
                    _INSERT, {"spec": spec.name, "entries": json.dumps(entries, default=str)}
                )
        moved += len(entries)
        # committed to the buffer: past them, the slot need not send them again
        replication.advance(engine, spec.name, end)
