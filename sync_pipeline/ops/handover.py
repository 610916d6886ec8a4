"""A spec switching from `capture: logical` to `capture: triggers` hands its slot's pending
changes over to the buffer before the slot is dropped.

A decoded change becomes the entry its trigger would have written
(core/cdc/logical.entries_for), so the trigger drain applies them as its own. The
install calls this once the triggers are in place, so every change is in the
slot, in the buffer, or in both (an entry applied twice only re-reads its row).
The slot is read with peek, a page of transactions at a time, each page's
entries committed to the buffer before the slot is advanced past it: a crash
in between leaves them in the slot, and the next install hands them over again.

The other direction needs no handover: a logical drain drains what the buffer
still holds for its spec (ops/drain/sources.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy.engine import Engine

from sync_pipeline.core.cdc import logical
from sync_pipeline.core.cdc.fanout import Watched
from sync_pipeline.core.cdc.logical import Entry
from sync_pipeline.core.cdc.pgoutput import Commit, Decoder
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.io import buffer, replication

RELEASE_SECONDS = 5.0
PAGE_CHANGES = 5000  # messages per peek: whole transactions are read, so a page may run over


def _entries(rows: Sequence[bytes], by_relation: dict[int, list[Watched]]) -> tuple[list[Entry], int | None]:
    """The buffer entries of a page's whole transactions, and the end of its last commit."""
    decoder, entries, pending = Decoder(), [], []
    end: int | None = None
    for data in rows:
        message = decoder.decode(data)
        if isinstance(message, Commit):
            entries += pending
            pending, end = [], message.end_lsn
        else:
            pending += logical.entries_of(message, lambda relid: by_relation.get(relid, []))
    return entries, end


def hand_over(engine: Engine, spec: SyncSpec, watched: Sequence[Watched]) -> int:
    """Move the spec's slot's committed changes into the buffer, as entries; how many. The slot
    (if any) stays: the caller drops it once this returned."""
    deadline = time.monotonic() + RELEASE_SECONDS
    while True:
        with engine.connect() as conn:
            state = replication.slot_state(conn, spec.name)
            upto = replication.insert_lsn(conn)
            conn.commit()
        if state is None:
            return 0
        # a drain that just ended: its walsender lets go of the slot moments after; one still
        # reading it makes the peek below fail (the caller says so)
        if state.active_pid is None or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    with engine.connect() as conn:
        by_relation = replication.by_relation(conn, watched)  # partitions' ids too
        conn.commit()
    moved = 0
    while True:
        with engine.begin() as conn:
            rows = replication.peek(conn, spec.name, upto, PAGE_CHANGES)
            entries, end = _entries(rows, by_relation)
            if end is None:
                return moved
            if entries:
                buffer.add_entries(conn, spec.name, entries)
        moved += len(entries)
        # committed to the buffer: past them, the slot need not send them again
        replication.advance(engine, spec.name, end)
