"""Logical capture (`capture: logical`): what a spec's slot and publication are called, what
installing them runs, and what a decoded change means for the spec's documents.

The slot replaces the triggers, not the drain: a decoded change is turned into
the same entry a trigger would have written to the buffer (source, key, op,
link — core/cdc/triggers.py), and the drain applies those entries exactly as it
applies buffered ones, re-reading the rows at one snapshot and writing them
with that snapshot's version (core/sql/versions.py). So the versions stay one
scheme whichever capture fed the drain, and the commit LSNs do what versions
cannot: they say how far the slot may be confirmed (only past transactions
whose every entry Elasticsearch acknowledged).

Consistency with the initial sync needs no exported snapshot: the slot is
created before the full sync reads anything, so every change the full sync may
have missed is in the slot, and applying one again only re-reads a row that
the full sync may have read already — at a newer snapshot, so with a version
at least as high.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sync_pipeline.core.cdc.fanout import Watched
from sync_pipeline.core.cdc.pgoutput import UNCHANGED, Change, Truncate, Values
from sync_pipeline.core.cdc.triggers import TRUNCATE_OP
from sync_pipeline.core.sql.quoting import qualified_table, quote_ident

SLOT_PREFIX = "sync_pipeline_"
PLUGIN = "pgoutput"


def slot_name(spec: str) -> str:
    """The spec's replication slot; slot names are `[a-z0-9_]`, at most 63 bytes (spec names
    fit the alphabet; a long one is cut and told apart by a hash of the whole)."""
    name = SLOT_PREFIX + spec
    if len(name) <= 63:
        return name
    return f"{name[:54]}_{hashlib.sha1(spec.encode()).hexdigest()[:8]}"


def publication_name(spec: str) -> str:
    return slot_name(spec)  # one of each per spec: the same name finds both


def publication_sql(spec: str, tables: Sequence[str], exists: bool) -> str:
    """Create the spec's publication for exactly `tables`, or set an existing one to them. A
    partitioned table is published with its partitions, present and future, and without
    `publish_via_partition_root`: its changes arrive under each partition's relation id, which
    the drain maps to the table (ops/drain/slot.py). With that option a `TRUNCATE` of one
    partition would not be sent at all (PostgreSQL documents it), and its rows would stay."""
    names = ", ".join(qualified_table(t) for t in sorted(set(tables)))
    publication = quote_ident(publication_name(spec))
    if exists:
        return f"ALTER PUBLICATION {publication} SET TABLE {names}"
    return f"CREATE PUBLICATION {publication} FOR TABLE {names}"


def replica_identity_sql(table: str) -> str:
    return f"ALTER TABLE {qualified_table(table)} REPLICA IDENTITY FULL"


def needs_full_identity(
    watched: Watched, identity: str, has_primary_key: bool, logged: frozenset[str] | None = None
) -> bool:
    """Must this table log its old rows whole? A related or join table: its old link values lead
    to the parent a delete or a move leaves (the key alone names no parent). Any table without a
    key to identify rows by: PostgreSQL refuses its UPDATEs and DELETEs once it is published —
    the user's application would fail. A root whose document key is not within the columns its
    identity logs (`logged`: a spec keyed by a unique `sku` on a table keyed by `id`): a DELETE
    would name no document, and a change of the key would leave the old one. FULL rather than
    USING INDEX on the spec's key: it only adds to what the table logs, so another subscriber
    relying on the present identity keeps what it reads."""
    if identity == "f":
        return False
    if watched.source is not None:
        return True
    if identity == "n" or (identity == "d" and not has_primary_key):
        return True
    return logged is not None and not set(watched.own_key) <= logged


@dataclass(frozen=True)
class Entry:
    """What the trigger would have written for one change (core/cdc/triggers.trigger_ddl)."""

    source: str | None
    pk: dict[str, object]
    op: str
    link: list[dict[str, object] | None] | None = None


def _pick(values: Values | None, columns: Sequence[str], fallback: Values | None = None) -> dict | None:
    if values is None:
        return None
    picked: dict[str, object] = {}
    for column in columns:
        value = values.get(column)
        if value is UNCHANGED:
            value = (fallback or {}).get(column)  # the same as before; the old row has it (FULL)
            value = None if value is UNCHANGED else value
        picked[column] = value
    return picked


def entries_for(change: Change, watched: Watched) -> list[Entry]:
    """The entries a trigger on this table would have recorded for this change."""
    new, old = change.new, change.old
    if watched.source is None:
        key = watched.own_key
        new_key, old_key = _pick(new, key, old), _pick(old, key)
        if change.op == "D":
            return [Entry(None, old_key or {}, "D")]
        entries = []
        if change.op == "U" and old_key is not None and old_key != new_key:
            entries.append(Entry(None, old_key, "D"))  # a key change deletes the old document
        entries.append(Entry(None, new_key or {}, change.op))
        return entries
    full_old = old is not None and not change.old_is_key
    unread = full_old and _pick(old, watched.required) == _pick(new, watched.required, old)
    if change.op == "U" and watched.skip_unread_updates and unread:
        return []  # nothing a document reads changed
    own = _pick(new, watched.own_key, old) if new is not None else _pick(old, watched.own_key)
    old_link = _pick(old, watched.link) if old is not None and not change.old_is_key else None
    new_link = _pick(new, watched.link, old)
    return [Entry(watched.source, own or {}, change.op, [old_link, new_link])]


def truncate_entry(watched: Watched) -> Entry:
    return Entry(watched.source, {}, TRUNCATE_OP)


def entries_of(message: object, watched_for: Callable[[int], Sequence[Watched]]) -> list[Entry]:
    """The entries a decoded Change or Truncate stands for (none for any other message);
    `watched_for(relation id)`: the watched tables a change under that id belongs to."""
    if isinstance(message, Change):
        return [e for w in watched_for(message.relid) for e in entries_for(message, w)]
    if isinstance(message, Truncate):
        return [truncate_entry(w) for relid in message.relids for w in watched_for(relid)]
    return []


def lsn_number(text: str) -> int:
    """A `pg_lsn` text (`16/B374D848`) as the number the replication protocol uses."""
    high, _, low = text.partition("/")
    return int(high, 16) << 32 | int(low, 16)


def parse_snapshot(text: str) -> tuple[int, int, frozenset[int]]:
    """xmin, xmax and the in-progress xids of a `pg_current_snapshot()` text."""
    xmin, xmax, xip = text.split(":")
    return int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x)


def visible_in(xid: int, snapshot: str) -> bool:
    """Does the snapshot see the (32-bit) transaction `xid` committed? A decoded transaction has
    committed, but a snapshot taken a moment earlier may not see it yet — re-reading its rows
    there would write the old state and confirm the change away. The full id is the one nearest
    the snapshot's xmax."""
    _, xmax, xip = parse_snapshot(snapshot)
    full = (xmax & ~0xFFFFFFFF) | (xid & 0xFFFFFFFF)
    if full >= xmax and full - xmax > 2**31:
        full -= 2**32  # from the previous epoch
    return full < xmax and full not in xip
