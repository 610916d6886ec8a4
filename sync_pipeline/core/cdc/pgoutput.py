"""The messages of PostgreSQL's built-in `pgoutput` plugin (protocol version 1), decoded.

Logical capture (`capture: logical`) reads a replication slot with pgoutput:
it ships with PostgreSQL and is the plugin managed services allow. Only what
the drain needs is decoded — transaction bounds, relation layouts, row
changes and TRUNCATE; other messages (type, origin, logical messages) are
skipped. Column values stay the text PostgreSQL sends (the drain re-reads rows
for their content; what it needs from a change is which keys and links it
touched, and those are cast back from text in SQL).

https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# a column whose TOASTed value did not change: pgoutput sends no value for it
UNCHANGED = object()


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    commit_time_us: int  # microseconds since 2000-01-01 (PostgreSQL's epoch)
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    commit_time_us: int


@dataclass(frozen=True)
class Relation:
    relid: int
    schema: str
    name: str
    replica_identity: str  # d(efault) n(othing) f(ull) i(ndex)
    columns: tuple[str, ...]
    key_columns: tuple[str, ...]  # the columns of the replica identity

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


Values = dict[str, object]  # column → text, None (NULL) or UNCHANGED


@dataclass(frozen=True)
class Change:
    op: str  # I, U or D
    relid: int
    new: Values | None
    old: Values | None  # D and U: the replica identity ('K') or the whole row ('O'); else None
    old_is_key: bool = False


@dataclass(frozen=True)
class Truncate:
    relids: tuple[int, ...]


@dataclass(frozen=True)
class Other:
    kind: str


Message = Begin | Commit | Relation | Change | Truncate | Other

_PG_EPOCH_OFFSET_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds


def unix_seconds(pg_time_us: int) -> float:
    return (pg_time_us + _PG_EPOCH_OFFSET_US) / 1e6


_U16, _I32 = struct.Struct("!H"), struct.Struct("!i")
_NULL, _UNCHANGED, _TEXT, _BINARY = b"nutb"
_LAYOUTS: dict[str, struct.Struct] = {}  # compiled once: a stream decodes a message per row


@dataclass
class _Reader:
    data: bytes
    at: int = 0

    def take(self, fmt: str) -> tuple:
        layout = _LAYOUTS.get(fmt) or _LAYOUTS.setdefault(fmt, struct.Struct(fmt))
        values = layout.unpack_from(self.data, self.at)
        self.at += layout.size
        return values

    def string(self) -> str:
        end = self.data.index(b"\0", self.at)
        text = self.data[self.at : end].decode()
        self.at = end + 1
        return text

    def tuple_data(self, columns: tuple[str, ...], wanted: frozenset[str] | None) -> Values:
        """A row's values; with `wanted`, only those columns (the others are stepped over, not
        decoded: a drain needs a row's keys and links, not its every value)."""
        data, at = self.data, self.at
        (count,) = _U16.unpack_from(data, at)
        at += 2
        values: Values = {}
        for i in range(count):
            kind = data[at]
            at += 1
            name = columns[i] if i < len(columns) else f"#{i}"
            value: object
            if kind in (_TEXT, _BINARY):
                (length,) = _I32.unpack_from(data, at)
                at += 4
                if wanted is not None and name not in wanted:
                    at += length
                    continue
                raw = data[at : at + length]
                at += length
                value = raw.decode() if kind == _TEXT else raw
            elif kind == _NULL:
                value = None
            elif kind == _UNCHANGED:
                value = UNCHANGED
            else:
                raise ValueError(f"pgoutput: unknown tuple value kind {bytes([kind])!r}")
            if wanted is None or name in wanted:
                values[name] = value
        self.at = at
        return values


@dataclass
class Decoder:
    """Decodes one stream's messages; remembers relation layouts (pgoutput sends a Relation
    message before a relation's first change in each stream, and again after its layout
    changed)."""

    relations: dict[int, Relation] = field(default_factory=dict)
    # per relation id, the columns to decode (a relation not named here: all of them)
    wanted: dict[int, frozenset[str]] = field(default_factory=dict)

    def decode(self, payload: bytes) -> Message:
        kind = payload[:1]
        reader = _Reader(payload, 1)
        if kind == b"B":
            final_lsn, time_us, xid = reader.take("!QqI")
            return Begin(final_lsn, time_us, xid)
        if kind == b"C":
            _flags, commit_lsn, end_lsn, time_us = reader.take("!BQQq")
            return Commit(commit_lsn, end_lsn, time_us)
        if kind == b"R":
            return self._relation(reader)
        if kind in (b"I", b"U", b"D"):
            return self._change(kind.decode(), reader)
        if kind == b"T":
            count, _options = reader.take("!IB")
            return Truncate(tuple(reader.take("!" + "I" * count)))
        return Other(kind.decode(errors="replace"))

    def _relation(self, reader: _Reader) -> Relation:
        (relid,) = reader.take("!I")
        schema, name = reader.string(), reader.string()
        identity, count = reader.take("!cH")
        columns, keys = [], []
        for _ in range(count):
            (flags,) = reader.take("!B")
            column = reader.string()
            reader.take("!Ii")  # type oid, type modifier: values stay text, cast in SQL
            columns.append(column)
            if flags & 1:
                keys.append(column)
        relation = Relation(relid, schema, name, identity.decode(), tuple(columns), tuple(keys))
        self.relations[relid] = relation
        return relation

    def _change(self, op: str, reader: _Reader) -> Change:
        (relid,) = reader.take("!I")
        relation = self.relations.get(relid)
        if relation is None:
            raise ValueError(f"pgoutput: a change of relation {relid} before its Relation message")
        columns, wanted = relation.columns, self.wanted.get(relid)
        (marker,) = reader.take("!c")
        old: Values | None = None
        old_is_key = False
        if marker in (b"K", b"O"):
            old, old_is_key = reader.tuple_data(columns, wanted), marker == b"K"
            if op == "D":
                return Change(op, relid, None, old, old_is_key)
            (marker,) = reader.take("!c")
        if marker != b"N":
            raise ValueError(f"pgoutput: unexpected tuple marker {marker!r} in a {op} message")
        return Change(op, relid, reader.tuple_data(columns, wanted), old, old_is_key)
