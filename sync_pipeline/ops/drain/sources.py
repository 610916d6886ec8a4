"""Where a drain's changes come from, decided once: `change_sources` is the one place the capture
mode picks a source.

`BufferSource`, the trigger buffer: a claim takes the spec's oldest entries with FOR UPDATE SKIP
LOCKED (two drains never take the same entry) in its REPEATABLE READ transaction, and confirming
it deletes them in that same transaction (a claim holding a TRUNCATE: after its reconcile, in one
of their own). A following drain finds new entries by a look every `buffer_sensor.poll_seconds`,
or woken by the triggers' NOTIFY when `buffer_sensor.notify`.

`SlotSource`, the replication slot of a `capture: logical` spec: ops/drain/slot.py.
"""

from __future__ import annotations

import time

from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from sync_pipeline.core.cdc.fanout import BUFFER_TABLE, Watched
from sync_pipeline.io import buffer
from sync_pipeline.io.buffer import ChangeListener
from sync_pipeline.io.postgres import is_serialization_failure, repeatable_read
from sync_pipeline.ops.drain.loop import ChangeSource, Claim, Drain, holds_truncate, root_keys
from sync_pipeline.ops.drain.slot import SlotSource
from sync_pipeline.ops.metrics import observe_lag


def change_sources(drain: Drain, following: bool) -> list[ChangeSource]:
    """The spec's change sources, in the order a drain takes them: the buffer for `capture:
    triggers`; for `capture: logical`, first what the buffer still holds of the spec (entries its
    triggers recorded before it switched to logical — no other drain would ever take them), then
    its slot. `following`: the drain keeps taking what arrives (a trigger buffer then listens)."""
    if drain.spec.capture == "logical":
        return [BufferSource(drain, listen=False), SlotSource(drain)]
    return [BufferSource(drain, listen=following)]


class BufferSource:
    """The trigger buffer's entries of one spec (io/buffer.py)."""

    def __init__(self, drain: Drain, listen: bool):
        self.drain, self.engine, self.spec = drain, drain.engine, drain.spec
        self._installed = False
        self._listener: ChangeListener | None = None
        if listen and self.spec.buffer_sensor.notify:  # listening before the first claim: no change slips by
            self._listener = ChangeListener(self.engine.url.render_as_string(hide_password=False))

    def claim(self, deadline: float) -> Claim | None:
        drain = self.drain
        if not self._buffer_installed():  # nothing was ever installed: nothing to drain
            return None
        keys = drain.binding().plan.keys
        # a connection per claim, from the pool (which checks it is alive): a following drain
        # outlives a PostgreSQL restart
        conn = repeatable_read(self.engine)
        while True:
            transaction = conn.begin()
            try:
                entries = buffer.claim(conn, self.spec, keys, drain.size)
            except OperationalError as exc:
                if is_serialization_failure(exc) and "SKIP LOCKED" in str(exc.statement or ""):
                    # the claim met entries a concurrent drain deleted after our snapshot began:
                    # nothing was written yet, so claim again in a new transaction, whose
                    # snapshot lacks them
                    transaction.rollback()
                    continue
                conn.close()  # rolls its transaction back
                raise
            except BaseException:
                conn.close()
                raise
            if not entries:
                conn.close()
                return None
            return Claim(
                conn, transaction, len(entries), root_keys(entries), entries, BUFFER_TABLE,
                truncate=holds_truncate(e.op for e in entries), last=len(entries) < drain.size,
                own_connection=True,
            )  # fmt: skip

    def confirm(self, claim: Claim) -> None:
        """The entries deleted, and their lag measured (ops/metrics.py): in the claim's
        transaction, or after a TRUNCATE's reconcile in one of their own (READ COMMITTED: a
        concurrent drain that reconciled the same claim may have deleted them already)."""
        ids = [entry.id for entry in claim.entries]
        if claim.transaction.is_active:
            observe_lag(buffer.remove(claim.conn, ids))
            return
        with self.engine.begin() as conn:
            observe_lag(buffer.remove(conn, ids))

    def wait(self, seconds: float) -> None:
        timeout = min(self.spec.buffer_sensor.poll_seconds, seconds)
        if self._listener is not None:
            self._listener.wait(self.spec.name, timeout)
        else:
            time.sleep(timeout)

    def caught_up(self) -> bool:
        return True  # a claim that found nothing saw every committed entry

    def cover_partitions(self, conn: Connection, table: str, watched: list[Watched]) -> None:
        for w in watched:
            buffer.add_partition_truncate_triggers(conn, self.spec, w)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()

    def _buffer_installed(self) -> bool:
        if not self._installed:
            with self.engine.connect() as conn:
                self._installed = buffer.buffer_exists(conn)
                conn.commit()
        return self._installed
