"""The stream of a spec's replication slot, read over the replication protocol on a thread of
its own.

The stream (psycopg2's replication connection: psycopg 3 has no replication
protocol) is pushed by the server as transactions commit, so waiting on it is
the wake-up — no polling, and every WAL record is decoded once (the SQL
functions would decode again from the slot's restart point on every call).
The position the server may discard WAL up to is only ever moved by
`confirm`, which the drain calls after Elasticsearch acknowledged.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import threading
import time
from collections import deque
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras

from sync_pipeline.core.cdc import logical
from sync_pipeline.core.cdc.pgoutput import Decoder, Message
from sync_pipeline.io.postgres import libpq_url
from sync_pipeline.io.replication import SlotBusy, SlotMissing

CHUNK = 200  # messages handed to the drain at once, at most
STATUS_SECONDS = 10.0  # psycopg2's own status interval


class ChangeStream:
    """The spec's slot read over the replication protocol, one decoded message at a time.

    A reader thread owns the replication cursor (psycopg2 cursors are not thread-safe): it reads
    and decodes while the drain applies, so the server never waits on a full socket for an apply
    to end, and it sends the confirmations the drain asks for. At most `queued` decoded messages
    wait for the drain: memory stays bounded however far behind the drain is."""

    def __init__(
        self, url: str, spec: str, wanted: dict[int, frozenset[str]] | None = None, queued: int = 10_000
    ):
        """`wanted`: per relation id, the columns the drain reads (others are not decoded)."""
        self.spec = spec
        self.slot = logical.slot_name(spec)
        self.decoder = Decoder(wanted=dict(wanted or {}))
        self._cursor = self._start(libpq_url(url, "sync_pipeline_logical"))
        # chunks of (message, server position after it), a keepalive's position as (None, position):
        # a chunk per socket read, not an item per row, keeps the hand-over cheap
        self._messages: queue.Queue[list[tuple[Message | None, int]] | BaseException] = queue.Queue(
            max(1, queued // CHUNK)
        )
        self._ready: deque[tuple[Message | None, int]] = deque()
        self._position = 0
        self._feedback: dict[str, Any] = {}  # what the drain asked for, sent by the reader
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_read, self._wake_write = socket.socketpair()
        self._reader = threading.Thread(target=self._read_all, name=f"slot-{self.slot}", daemon=True)
        self._reader.start()

    def _start(self, dsn: str) -> Any:
        spec = self.spec
        try:
            self._conn = psycopg2.connect(
                dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection
            )
        except psycopg2.OperationalError as exc:
            raise ConnectionError(f"replication connection for slot {self.slot}: {exc}".strip()) from exc
        cursor = self._conn.cursor()
        options = {"proto_version": "1", "publication_names": logical.publication_name(spec)}
        try:
            cursor.start_replication(slot_name=self.slot, decode=False, options=options)
        except psycopg2.errors.UndefinedObject:
            self._conn.close()
            raise SlotMissing(
                f"spec '{spec}': replication slot {self.slot} does not exist — it was never installed "
                f"or was dropped outside sync_pipeline, so changes since are unknown. Run "
                f"`sync-pipeline install-triggers --spec {spec}` (a new slot), then "
                f"`sync-pipeline verify --spec {spec} --fix` (compares every row with its document: "
                "rows deleted during the gap lose their documents too, which a full sync never does)"
            ) from None
        except psycopg2.errors.ObjectInUse as exc:
            self._conn.close()
            raise SlotBusy(f"spec '{spec}': replication slot {self.slot} is in use: {exc}".strip()) from None
        except psycopg2.Error as exc:
            self._conn.close()
            raise ConnectionError(
                f"spec '{spec}': reading replication slot {self.slot}: {exc}".strip()
            ) from exc
        return cursor

    def read(self, timeout: float) -> Message | None:
        """The next message; None when none came within `timeout`. An error of the stream (the
        server gone, the slot dropped) is raised here, in the drain's thread."""
        deadline = time.monotonic() + timeout
        while True:
            if not self._ready:
                left = deadline - time.monotonic()
                try:
                    chunk = self._messages.get(timeout=left) if left > 0 else self._messages.get_nowait()
                except queue.Empty:
                    return None
                if isinstance(chunk, BaseException):
                    self._stop.set()
                    raise chunk
                self._ready.extend(chunk)
            message, position = self._ready.popleft()
            self._position = max(self._position, position)
            if message is not None:
                return message

    @property
    def backlog(self) -> int:
        """Decoded messages waiting for the drain, at most (whole chunks counted)."""
        return self._messages.qsize() * CHUNK + len(self._ready)

    @property
    def server_position(self) -> int:
        """How far the server said it has sent (keepalives carry it), as of the last message
        read: a position the reader saw but the drain has not reached does not count yet."""
        return self._position

    def confirm(self, lsn: int) -> None:
        """Tell the server everything up to `lsn` is applied: it may discard that WAL (sent by
        the reader at once; `close` sends what is still asked for before it closes)."""
        self._ask(confirm=lsn)

    def ping(self) -> None:
        """Ask the server for a keepalive now: it carries how far the server has read."""
        self._ask(ping=True)

    def _ask(self, **feedback: Any) -> None:
        with self._lock:
            self._feedback.update(feedback)
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")

    def _send_feedback(self) -> None:
        if not self._feedback:  # the common case, per message: no lock taken
            return
        with self._lock:
            feedback, self._feedback = self._feedback, {}
        if "confirm" in feedback:
            lsn = feedback["confirm"]
            self._cursor.send_feedback(write_lsn=lsn, flush_lsn=lsn, apply_lsn=lsn, force=True)
        if feedback.get("ping"):
            self._cursor.send_feedback(reply=True)

    def _read_all(self) -> None:
        queued_position = 0
        chunk: list[tuple[Message | None, int]] = []
        try:
            while not self._stop.is_set():
                self._send_feedback()
                message = self._cursor.read_message()
                position = int(self._cursor.wal_end or 0)
                if message is not None:
                    chunk.append((self.decoder.decode(message.payload), position))
                    if len(chunk) < CHUNK:
                        continue
                elif position > queued_position:
                    chunk.append((None, position))
                if chunk:
                    self._queue(chunk)
                    chunk, queued_position = [], position
                if message is not None:
                    continue
                ready, _, _ = select.select([self._cursor, self._wake_read], [], [], 1.0)
                if self._wake_read in ready:
                    self._wake_read.recv(4096)
            self._send_feedback()  # what the drain confirmed last, before the connection closes
        except BaseException as exc:  # the drain raises it on its next read
            if not self._stop.is_set():
                with contextlib.suppress(queue.Full):
                    self._drop_queued()
                    self._messages.put_nowait(exc)

    def _queue(self, item: list[tuple[Message | None, int]]) -> None:
        last_status = time.monotonic()
        while not self._stop.is_set():
            try:
                self._messages.put(item, timeout=0.05)
                return
            except queue.Full:  # the drain is applying: its confirmations still go out
                self._send_feedback()
                if time.monotonic() - last_status >= STATUS_SECONDS:
                    # psycopg2 sends its periodic status only while reading: without one the
                    # server ends the connection after wal_sender_timeout (60 s by default)
                    self._cursor.send_feedback(force=True)
                    last_status = time.monotonic()

    def _drop_queued(self) -> None:
        """Room for the error: messages after a broken stream are never applied (none confirmed
        past them, so the next drain receives them again)."""
        while True:
            try:
                self._messages.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")
        self._reader.join(timeout=10)
        with contextlib.suppress(Exception):  # closing a broken connection must not mask the cause
            self._conn.close()
        for end in (self._wake_read, self._wake_write):
            end.close()

    def __enter__(self) -> ChangeStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
