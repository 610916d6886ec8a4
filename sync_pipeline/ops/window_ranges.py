"""A window too large to be one statement, read as ranges of its primary key.

One COPY over a window of 50M rows (a bulk import stamped with one updated_at) is one
statement for hours: one snapshot that holds vacuum back all that time, and a failure
that starts over from zero. A window holding more than `partitions.range_rows` rows is
read instead as consecutive key ranges of that many rows, in primary-key order, each
one COPY statement with a snapshot of its own (core/sql/statements.KeyRange): no
snapshot of ours outlives a range, and memory stays one batch. Each range's upper
bound is found just before it is read, by one probe that walks the primary key's
index `range_rows` entries (`key_range_bound`); a window of at most `range_rows` rows
costs that one probe and is read as one statement, as before, and a window the planner
expects to hold less than a quarter of `range_rows` (EXPLAIN, nothing read) is read as
one statement without a probe.

Versions stay correct without anything added: each range's rows carry the version of
their own statement's snapshot (core/sql/versions.py), so a drain that applied a change
before a range was read wrote a version that range's stale copy cannot beat, and a range
read after the change sees it.

Each range is confirmed once Elasticsearch acknowledged every document of it (its own
load, ended by a refresh): the confirmation is sync_pipeline's entry in the target
index's mapping `_meta`, under `window_ranges`, keyed by the window, with the last
confirmed key. A run of the same window that finds it (killed, failed, or its documents
refused) resumes with the range after it instead of from zero; the last range removes it.
Kept in the index rather than in a table of ours in PostgreSQL: the record lives and dies
with the documents it vouches for (a dropped, re-created or rebuilt index carries none, so
nothing is skipped that the index does not hold), and reading a table stays a read that
needs only SELECT (a legacy table synced without capture has no install step that could
create a table). A record whose window or document-shaping spec differs is ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.statements import KeyRange
from sync_pipeline.core.windows import Window
from sync_pipeline.io.ranges import estimated_window_rows, window_range_bound
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.io.search.indices import index_meta, update_index_meta, write_index
from sync_pipeline.ops.binding import Bound
from sync_pipeline.ops.target import TargetState

RANGES_KEY = "window_ranges"
# a window the planner expects to hold less than this share of `range_rows` is read as one
# statement without probing its size: the probe walks the key order, and without an index on
# updated_at it scans the table as the window's read does
PROBE_ABOVE = 0.25


@dataclass(frozen=True)
class Confirmed:
    """What the window's earlier runs confirmed: every key up to `after` is in the index."""

    after: tuple[str, ...] | None = None
    ranges: int = 0
    rows: int = 0


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def shape_digest(spec: SyncSpec) -> str:
    """What decides a window's documents (its source, fields, transform): a record written under
    another one vouches for documents of another shape."""
    shaping = spec.model_dump(mode="json", include={"source", "fields", "transform", "naive_timezone"})
    return hashlib.sha1(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def _identity(spec: SyncSpec, window: Window) -> dict[str, Any]:
    return {
        "start": _instant(window.start),
        "end": _instant(window.end),
        "nulls": window.include_null_updated_at,
        "shape": shape_digest(spec),
    }


@dataclass
class RangeSplit:
    """A window read by key ranges: where its confirmations go and where it starts."""

    engine: Engine
    es: SearchTarget
    bound: Bound
    window: Window
    key: str  # the window's staging key: its record's name
    index: str  # the concrete index whose `_meta` holds the record
    confirmed: Confirmed = Confirmed()
    first: tuple[str, ...] | None = None  # the first range's upper bound, once probed
    probed: bool = False

    def next_bound(self, after: tuple[str, ...] | None) -> tuple[str, ...] | None:
        spec = self.bound.spec
        return window_range_bound(
            self.engine, spec, self.bound.columns, self.window, after, spec.partitions.range_rows
        )

    def ranges(self) -> Iterator[KeyRange]:
        """The ranges still to read, in key order; each bound is probed only once the range
        before it was consumed (loaded and confirmed)."""
        after = self.confirmed.after
        upto = self.first if self.probed else self.next_bound(after)
        while True:
            yield KeyRange(after, upto)
            if upto is None:
                return
            after = upto
            upto = self.next_bound(after)

    def confirm(self, done: KeyRange, rows: int) -> None:
        """`done` was acknowledged by Elasticsearch in full: record it; the last range removes
        the record (the window is whole)."""
        self.confirmed = Confirmed(done.upto, self.confirmed.ranges + 1, self.confirmed.rows + rows)
        record = None
        if done.upto is not None:
            record = {
                **_identity(self.bound.spec, self.window),
                "after": list(done.upto),
                "ranges": self.confirmed.ranges,
                "rows": self.confirmed.rows,
                "confirmed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }

        def change(records: dict[str, Any] | None) -> dict[str, Any] | None:
            others = {k: v for k, v in (records or {}).items() if k != self.key}
            return {**others, self.key: record} if record else others or None

        update_index_meta(self.es, self.index, RANGES_KEY, change)


def meta_index(es: SearchTarget, alias: str, state: TargetState) -> str:
    """The concrete index writes through the spec's target reach: its `_meta` is the record's."""
    return state.index or write_index(es, alias) or alias


def recorded(meta: dict[str, Any], spec: SyncSpec, window: Window, key: str) -> Confirmed | None:
    """The window's confirmed ranges, when the index's `meta` holds a record of them for this
    window and this shape of documents."""
    record = (meta.get(RANGES_KEY) or {}).get(key)
    if not record or any(record.get(k) != v for k, v in _identity(spec, window).items()):
        return None
    return Confirmed(tuple(record["after"]), int(record["ranges"]), int(record["rows"]))


def split_window(
    engine: Engine,
    es: SearchTarget,
    bound: Bound,
    window: Window,
    key: str,
    state: TargetState,
    log: Callable[[str], None] = print,
) -> RangeSplit | None:
    """How the window is read: None for one statement (at most `range_rows` rows and nothing
    confirmed by an earlier run), or the key ranges left to read."""
    spec = bound.spec
    index = meta_index(es, spec.target.index, state)
    # the index's `_meta` as readying it just read it (none on an index it created)
    meta = state.meta if state.index or state.created else index_meta(es, index)
    confirmed = recorded(meta, spec, window, key)
    split = RangeSplit(engine, es, bound, window, key, index, confirmed or Confirmed())
    if confirmed is not None:
        log(
            f"{spec.name} {key}: resuming after {confirmed.ranges} confirmed key range(s) "
            f"({confirmed.rows} rows, keys up to {list(confirmed.after or ())})"
        )
        return split
    if estimated_window_rows(engine, spec, bound.columns, window) < spec.partitions.range_rows * PROBE_ABOVE:
        return None  # far below the size by the planner's statistics: not worth a probe
    split.first, split.probed = split.next_bound(None), True
    return None if split.first is None else split
