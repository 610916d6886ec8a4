"""Bulk request bodies and their outcomes: bytes for Elasticsearch, counts for the run history.

Documents travel as bulk NDJSON bytes from the transform to the request body;
a body remembers where each of its documents starts, so one can be cut out
again (to retry it, or to dead-letter it) without re-serialising the rest.
Every body's outcome is a `BatchResult`; a load's is `LoadTotals`; both count in `Counts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice, pairwise
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sync_pipeline.core.load.counts import ONE_BATCH, Counted, Counts

TRANSIENT_STATUS = frozenset({429, 502, 503, 504})


Doc = tuple[bytes, bytes | None]  # one document as bulk lines: (action, source or None for a delete)


@dataclass(frozen=True)
class BulkBody:
    """One bulk request body, and where each of its documents starts in it.

    The bytes go to Elasticsearch as they are; a document is only cut out
    again when it has to be retried or dead-lettered.
    """

    data: bytes
    starts: Sequence[int]  # one offset per document, then len(data)

    def __len__(self) -> int:
        return len(self.starts) - 1

    def doc(self, i: int) -> Doc:
        raw = self.data[self.starts[i] : self.starts[i + 1]]
        cut = raw.index(b"\n") + 1
        return raw[:cut], (raw[cut:] or None)

    def is_delete(self, i: int) -> bool:
        return self.data.startswith(b'{"delete"', self.starts[i])

    def deletes(self, indices: Iterable[int] | None = None) -> int:
        return sum(1 for i in (range(len(self)) if indices is None else indices) if self.is_delete(i))

    def subset(self, indices: Sequence[int]) -> BulkBody:
        return BulkBody.join(self.data[self.starts[i] : self.starts[i + 1]] for i in indices)

    def split(self, parts: int) -> list[BulkBody]:
        """The documents in `parts` consecutive bodies of about equal counts (one copy of the
        bytes, no re-serialising), for sending side by side."""
        count = len(self)
        bounds = [count * n // parts for n in range(parts + 1)]
        pieces = []
        for first, last in pairwise(bounds):
            if last > first:
                base = self.starts[first]
                starts = [start - base for start in self.starts[first : last + 1]]
                pieces.append(BulkBody(self.data[base : self.starts[last]], starts))
        return pieces

    @classmethod
    def concat(cls, first: BulkBody, second: BulkBody) -> BulkBody:
        """One body with the documents of both, in order."""
        shift = len(first.data)
        starts = [*first.starts[:-1], *(start + shift for start in second.starts)]
        return cls(first.data + second.data, starts)

    @classmethod
    def join(cls, documents: Iterable[bytes]) -> BulkBody:
        """A body from each document's bulk lines (action, and source unless it deletes)."""
        parts = list(documents)
        starts = [0]
        for part in parts:
            starts.append(starts[-1] + len(part))
        return cls(b"".join(parts), starts)


@dataclass(frozen=True)
class BulkChunk:
    """A batch's documents as one bulk body."""

    body: BulkBody
    deletes: int
    # rows no document can carry (core/sql/poison.py), kept out of the body: for the dead letters
    rejected: tuple[Rejected, ...] = ()

    @property
    def docs(self) -> int:
        return len(self.body)


def action_line(op: str, doc_id: str, version: int | None) -> bytes:
    """The bulk action line of one document; the index is named by the request, not the line.

    Versions are external_gte: re-sending the same version is an idempotent
    no-op success, while an older version (a backfill racing an incremental
    sync) is refused with a 409 that the load counts as stale.
    """
    meta = b'{"_id":' + orjson.dumps(doc_id)
    if version is not None:
        meta += b',"version":%d,"version_type":"external_gte"' % version
    return b'{"' + op.encode() + b'":' + meta + b"}}\n"


# bytes a JSON string cannot hold as they are: the quote, the backslash, control characters
_NEEDS_ESCAPING = frozenset(b'"\\' + bytes(range(0x20)))
_SAFE_BYTES = bytes(c for c in range(256) if c not in _NEEDS_ESCAPING)


def value_bytes(array: pa.Array) -> tuple[bytes, list[int]]:
    """The values of a string array back to back (its data buffer, not a copy per value), and
    where each value starts, then the end."""
    if len(array) == 0:
        return b"", [0]
    _, offsets, data = array.buffers()
    kind = "q" if pa.types.is_large_string(array.type) else "i"
    bounds = memoryview(offsets).cast(kind)[array.offset : array.offset + len(array) + 1].tolist()
    first = bounds[0]
    payload = bytes(memoryview(data)[first : bounds[-1]]) if data is not None else b""
    # an unsliced array (every body) starts at 0: no Python pass over its offsets
    return payload, bounds if first == 0 else [b - first for b in bounds]


def _plain(array: pa.Array) -> bool:
    """No value of a string array needs escaping in JSON: one pass over the values' data buffer
    that deletes every safe byte (`bytes.translate`, a table lookup per byte) leaves nothing —
    twice as fast as a memchr search per byte to avoid (34 passes), twenty times a regex run on
    every value. Only the first and last offsets are read: a list of every value's would cost
    Python per row."""
    if len(array) == 0:
        return True
    _, offsets, data = array.buffers()
    if data is None:
        return True
    kind = "q" if pa.types.is_large_string(array.type) else "i"
    bounds = memoryview(offsets).cast(kind)
    payload = bytes(memoryview(data)[bounds[array.offset] : bounds[array.offset + len(array)]])
    return not payload.translate(None, _SAFE_BYTES)


def action_array(
    ids: list[str] | pa.Array, versions: list[int] | pa.Array, deleted: list[bool] | pa.Array
) -> pa.Array:
    op = pc.if_else(_as_arrow(deleted, pa.bool_()), '{"delete":', '{"index":')
    return pc.binary_join_element_wise(op, *action_tail(_as_arrow(ids, pa.string()), versions), "")


def action_tail(ids: pa.Array, versions: list[int] | pa.Array) -> list[Any]:
    """The parts of an action line after its op (`{"index":`), to join element-wise."""
    texts = pc.cast(_as_arrow(versions, pa.int64()), pa.string())
    return ['{"_id":', json_strings(ids), ',"version":', texts, ',"version_type":"external_gte"}}\n']


def _as_arrow(values: list[Any] | pa.Array, kind: pa.DataType) -> pa.Array:
    return values if isinstance(values, pa.Array) else pa.array(values, kind)


def json_strings(array: pa.Array) -> pa.Array:
    """Text values as JSON string literals: quoted in Arrow when none needs escaping (the usual
    case), otherwise each one through orjson."""
    if _plain(array):
        return pc.binary_join_element_wise('"', array, '"', "")
    return pa.array([None if v is None else orjson.dumps(v).decode() for v in array.to_pylist()], pa.string())


@dataclass
class Rejected:
    """A document Elasticsearch refused for good (mapping/parse errors, too large)."""

    doc_id: str
    action: dict[str, Any]
    error: dict[str, Any]


FIRST_ERRORS = 5  # errors a batch's result and a run's totals keep word for word


@dataclass
class BatchResult(Counted):
    """One bulk batch's outcome; its counters are `counts` (core/load/counts.py)."""

    batch: int
    # what the server answered of the batch's documents; its dead letters are `rejected`'s
    answered: Counts = field(default_factory=Counts)
    stale_ids: list[str] = field(default_factory=list)
    stale_versions: dict[str, int] = field(default_factory=dict)  # the version ES holds, by _id
    rejected: list[Rejected] = field(default_factory=list)  # permanent: for the dead-letter table
    seconds: float = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)  # first few, for the report

    @property
    def counts(self) -> Counts:
        return self.answered + Counts(dead_lettered=len(self.rejected))

    def absorb(self, part: BatchResult) -> None:
        """Count a part of this batch sent as its own request (io/bulk_load.send_split)."""
        self.answered += part.answered
        self.stale_ids.extend(part.stale_ids)
        self.stale_versions.update(part.stale_versions)
        self.rejected.extend(part.rejected)
        self.errors.extend(part.errors[: max(0, FIRST_ERRORS - len(self.errors))])
        self.seconds = max(self.seconds, part.seconds)

    def mark_conflicts(self, ids: set[str]) -> None:
        """These stale ids are disagreements, not older reads."""
        found = len([i for i in self.stale_ids if i in ids])
        self.answered += Counts(conflicts=found, stale_skipped=-found)
        self.stale_ids = [i for i in self.stale_ids if i not in ids]

    @property
    def docs_per_second(self) -> float:
        return self.docs / self.seconds if self.seconds > 0 else 0.0


@dataclass
class LoadTotals(Counted):
    """A load's outcome: its batches' counts summed (`counts`), and what else its record keeps."""

    counts: Counts = field(default_factory=Counts)
    seconds: float = 0.0
    first_errors: list[dict[str, Any]] = field(default_factory=list)
    # what readying the index took before the load wrote (ops/prepare.py), for the run's record
    mapping_changes: list[str] = field(default_factory=list)

    def keep_errors(self, errors: Iterable[dict[str, Any]]) -> None:
        """The first FIRST_ERRORS errors of the run, for its record; the rest are only counted."""
        room = FIRST_ERRORS - len(self.first_errors)
        if room > 0:
            self.first_errors.extend(islice(errors, room))

    def count_dead_letters(self, rejected: Sequence[Rejected]) -> None:
        """Rows stored as dead letters instead of being sent (core/sql/poison.py, a transform's)."""
        self.counts += Counts(dead_lettered=len(rejected))
        self.keep_errors(r.error for r in rejected)

    def add(self, result: BatchResult) -> None:
        self.counts += result.counts + ONE_BATCH
        self.seconds += result.seconds
        self.keep_errors(result.errors)

    def merge(self, other: LoadTotals) -> None:
        """Another load of the same run (a window's next key range) into these totals."""
        self.counts += other.counts
        self.seconds += other.seconds
        self.keep_errors(other.first_errors)


DEFAULT_BODY_BYTES = 5 * 1024 * 1024


def packed(docs: Iterable[bytes], max_docs: int, max_bytes: int = DEFAULT_BODY_BYTES) -> Iterator[BulkBody]:
    """Documents' bulk lines into bodies of at most `max_docs` documents and about `max_bytes`
    (a single larger document still gets a body of its own)."""
    pending: list[bytes] = []
    size = 0
    for doc in docs:
        if pending and (len(pending) >= max_docs or size + len(doc) > max_bytes):
            yield BulkBody.join(pending)
            pending, size = [], 0
        pending.append(doc)
        size += len(doc)
    if pending:
        yield BulkBody.join(pending)


def _staged_docs(lines: Iterable[bytes]) -> Iterator[bytes]:
    """Each document of a staged NDJSON file: its action line, and its source unless it deletes."""
    iterator = iter(lines)
    for line in iterator:
        if not line.strip():
            continue
        if line.startswith(b'{"delete"'):
            yield line
            continue
        source = next(iterator, None)
        if source is None:
            raise ValueError(f"staged documents end in an action line without its source: {line[:200]!r}")
        yield line + source


def iter_bodies(
    lines: Iterable[bytes], max_docs: int, max_bytes: int = DEFAULT_BODY_BYTES
) -> Iterator[BulkBody]:
    """Group bulk NDJSON lines (a staged file) into bodies within the request limits."""
    return packed(_staged_docs(lines), max_docs, max_bytes)


def rebody(
    bodies: Iterable[BulkBody], max_docs: int, max_bytes: int = DEFAULT_BODY_BYTES
) -> Iterator[BulkBody]:
    """Bodies within the request limits pass untouched (no copy); larger ones are cut."""
    for body in bodies:
        if len(body) <= max_docs and len(body.data) <= max_bytes:
            yield body
        else:
            docs = (body.data[body.starts[i] : body.starts[i + 1]] for i in range(len(body)))
            yield from packed(docs, max_docs, max_bytes)


def entry_doc(entry: dict[str, Any]) -> bytes:
    """A document given as {"_id", "_op", "_version"?, "_source"?} → its bulk lines."""
    action = action_line(entry["_op"], entry["_id"], entry.get("_version"))
    if entry["_op"] == "delete":
        return action
    return action + orjson.dumps(entry["_source"], option=orjson.OPT_APPEND_NEWLINE)
