"""Comparing what PostgreSQL says a document should be with what Elasticsearch holds.

Both sides arrive as streams sorted by primary key and are merged like two
sorted files, so memory is a page on each side however large the table is:
no set of all ids is built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from sync_pipeline.core.load.bulk import LoadTotals

# (sort key, _id, document); a PostgreSQL row no document can carry (core/sql/poison.py) has None:
# it is a dead letter, counted apart and compared with nothing
Keyed = tuple[tuple[Any, ...], str, dict[str, Any] | None]

EXAMPLES = 10


@dataclass
class Mismatch:
    doc_id: str
    fields: list[str]


@dataclass
class VerifyReport:
    spec: str
    index: str
    pg_count: int = 0
    es_count: int = 0
    missing: int = 0
    extra: int = 0
    mismatched: int = 0
    missing_ids: list[str] = field(default_factory=list)
    extra_ids: list[str] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    # rows that are dead letters, not drift: no document can carry them (core/sql/poison.py), or
    # the index refused theirs and the dead-letter table holds it (`dead-letters replay` is
    # their repair, once the row or the mapping is fixed)
    dead_letters: int = 0
    dead_letter_ids: list[str] = field(default_factory=list)
    repaired: LoadTotals | None = None
    # how the index's mapping differs from the spec's, one line per field: `_source` can match
    # while the index holds 12.5 as the integer 12
    mapping: list[str] = field(default_factory=list)

    @property
    def drift(self) -> int:
        return self.missing + self.extra + self.mismatched + len(self.mapping)

    @property
    def ok(self) -> bool:
        return self.drift == 0

    def lines(self) -> list[str]:
        status = "OK" if self.ok else "DRIFT"
        out = [
            f"{self.spec} → {self.index}: {status}  postgres={self.pg_count} index={self.es_count} "
            f"missing={self.missing} extra={self.extra} mismatched={self.mismatched}"
        ]
        if self.missing_ids:
            out.append(f"  missing in ES (first {len(self.missing_ids)}): {', '.join(self.missing_ids)}")
        if self.extra_ids:
            out.append(f"  extra in ES (first {len(self.extra_ids)}): {', '.join(self.extra_ids)}")
        if self.dead_letters:
            out.append(
                f"  {self.dead_letters} rows are dead letters, not drift (`dead-letters` says why; "
                f"first {len(self.dead_letter_ids)}): {', '.join(self.dead_letter_ids)}"
            )
        for m in self.mismatches:
            out.append(f"  _id {m.doc_id} differs in: {', '.join(m.fields)}")
        if self.mapping:
            out.append(f"  mapping differs from the spec's ({len(self.mapping)}):")
            out += [f"    {line}" for line in self.mapping]
        if self.repaired is not None:
            r = self.repaired
            out.append(
                f"  fixed: {r.indexed} re-indexed, {r.deleted} deleted, {r.failed + r.dead_lettered} failed"
            )
        return out


def normalise(doc: dict[str, Any]) -> dict[str, Any]:
    """JSON round trip, so both sides compare as what ES actually stores."""
    return orjson.loads(orjson.dumps(doc))


def differing_fields(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    keys = set(expected) | set(actual)
    # a field that is null on one side and absent on the other is the same document
    return sorted(k for k in keys if expected.get(k) != actual.get(k))


class Repairs(Protocol):
    """What `verify --fix` does with each difference as the merge finds it."""

    def repair(self, doc_id: str) -> None: ...


def _dead_letter(report: VerifyReport, doc_id: str) -> None:
    report.dead_letters += 1
    if len(report.dead_letter_ids) < EXAMPLES:
        report.dead_letter_ids.append(doc_id)


def diff_sorted(
    expected: Iterable[Keyed],
    actual: Iterable[Keyed],
    report: VerifyReport,
    repairs: Repairs | None = None,
    dead: Collection[str] = (),
) -> VerifyReport:
    """Merge two key-ordered streams, counting missing, extra and changed documents; a row that
    is a dead letter (no document for it, or one of `dead`, the ids the dead-letter table holds)
    is counted apart when its document is missing or differs, and not repaired."""
    exp_iter: Iterator[Keyed] = iter(expected)
    act_iter: Iterator[Keyed] = iter(actual)
    exp = next(exp_iter, None)
    act = next(act_iter, None)
    while exp is not None or act is not None:
        if exp is not None and exp[2] is None and (act is None or exp[0] <= act[0]):
            # the row's document is whatever the index last took, or none: either way not drift
            _dead_letter(report, exp[1])
            report.pg_count += 1
            if act is not None and act[0] == exp[0]:
                report.es_count += 1
                act = next(act_iter, None)
            exp = next(exp_iter, None)
        elif act is None or (exp is not None and exp[0] < act[0]):
            assert exp is not None
            report.pg_count += 1
            if exp[1] in dead:
                _dead_letter(report, exp[1])
                exp = next(exp_iter, None)
                continue
            report.missing += 1
            if len(report.missing_ids) < EXAMPLES:
                report.missing_ids.append(exp[1])
            if repairs:
                repairs.repair(exp[1])
            exp = next(exp_iter, None)
        elif exp is None or act[0] < exp[0]:
            report.extra += 1
            report.es_count += 1
            if len(report.extra_ids) < EXAMPLES:
                report.extra_ids.append(act[1])
            if repairs:
                repairs.repair(act[1])
            act = next(act_iter, None)
        else:
            report.pg_count += 1
            report.es_count += 1
            fields = differing_fields(normalise(exp[2]), normalise(act[2]))
            if fields and exp[1] in dead:
                _dead_letter(report, exp[1])
            elif fields:
                report.mismatched += 1
                if len(report.mismatches) < EXAMPLES:
                    report.mismatches.append(Mismatch(exp[1], fields))
                if repairs:
                    repairs.repair(exp[1])
            exp = next(exp_iter, None)
            act = next(act_iter, None)
    return report


@dataclass(frozen=True)
class WindowDigest:
    """Count and an order-independent content hash of the documents in one window."""

    count: int
    digest: int

    @classmethod
    def of(cls, documents: Iterable[dict[str, Any]]) -> WindowDigest:
        count = total = 0
        for doc in documents:
            count += 1
            total = (total + document_hash(doc)) % 2**64  # a sum: independent of read order
        return cls(count, total)


def document_hash(doc: dict[str, Any]) -> int:
    canonical = orjson.dumps(normalise(doc), option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.blake2b(canonical, digest_size=8).digest(), "big")
