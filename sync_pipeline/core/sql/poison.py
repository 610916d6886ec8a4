"""Rows a document cannot carry: found by the read's own SQL, kept out of the body, dead-lettered.

A `date`/`timestamp` of ±infinity, BC or after year 9999 makes psycopg (and
Elasticsearch's date fields) refuse the value; a `json` value holding `\\u0000`
fails the `jsonb` cast of the whole statement; an `_id` longer than 512 bytes is
refused by Elasticsearch. Any of them used to stop a window, a drain's claim
(retried forever) or `verify`. Every read now renders such a value as NULL and
names it in one extra text column (`UNREPRESENTABLE_COLUMN`, NULL on a healthy
row), so decoding never fails and the happy path stays one Arrow mask; the few
flagged rows become dead letters naming the column and the value, and the rest
of the batch flows. Mapping them to null instead would index a document that
says "no due date" where the row says "forever": silent drift, which is exactly
what a dead letter makes visible (`dead-letters replay` re-sends the row once
it is fixed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sync_pipeline.core.load.bulk import Rejected
from sync_pipeline.core.sql.columns import ColumnInfo
from sync_pipeline.core.sql.quoting import quote_ident

UNREPRESENTABLE_COLUMN = "__sync_unrepresentable"
MAX_ID_BYTES = 512  # Elasticsearch's limit on `_id`
ERROR_TYPE = "unrepresentable_row"

# the years a document's date (and Python's datetime, which psycopg decodes into) can hold
_RANGES = {
    "date": ("DATE '0001-01-01'", "DATE '9999-12-31'"),
    "timestamp": ("TIMESTAMP '0001-01-01 00:00:00'", "TIMESTAMP '9999-12-31 23:59:59.999999'"),
    "timestamptz": ("TIMESTAMPTZ '0001-01-01 00:00:00+00'", "TIMESTAMPTZ '9999-12-31 23:59:59.999999+00'"),
}
# a JSON `\u0000` escape (an odd run of backslashes before it): jsonb has no NUL character
_NUL_ESCAPE = r"'(^|[^\\])(\\\\)*\\u0000'"
_SHOWN = 200  # characters of an offending value kept in its dead letter
_PAIRS = 40  # jsonb_build_object takes at most 100 arguments


def representable_sql(info: ColumnInfo, expr: str) -> str:
    """SQL true when a date/timestamp value is one a document can carry (false for NULL too)."""
    low, high = _RANGES[info.pg_type]
    return f"({expr}) BETWEEN {low} AND {high}"


def raw_values(batch: pa.RecordBatch, names: Sequence[str]) -> list[pa.Array | None]:
    """Per named column, the text of the values the read rendered NULL (PostgreSQL's, as the
    unrepresentable column holds it), null elsewhere; None for a column with none. Python for the
    flagged rows only."""
    reasons = batch.column(UNREPRESENTABLE_COLUMN)
    positions = {name: str(batch.schema.get_field_index(name)) for name in names}
    out: list[pa.Array | None] = []
    for name in names:
        found = False
        values: list[str | None] = [None] * batch.num_rows
        for row in pc.indices_nonzero(pc.is_valid(reasons)).to_pylist():
            value = orjson.loads(reasons[row].as_py()).get(positions[name])
            if value is not None:
                values[row], found = value, True
        out.append(pa.array(values, pa.string()) if found else None)
    return out


def _problem(info: ColumnInfo, column: str) -> str | None:
    """A condition true exactly when the column's (non-null) value cannot be read or carried."""
    if info.is_array:
        return None
    if info.pg_type in _RANGES:
        low, high = _RANGES[info.pg_type]
        return f"NOT ({column} BETWEEN {low} AND {high})"
    if info.pg_type == "json":
        return f"CAST({column} AS TEXT) ~ {_NUL_ESCAPE}"
    return None


def safe_value(info: ColumnInfo, expression: str) -> str:
    """`expression` (the column as a read outputs it) or NULL where the value is unrepresentable:
    the row's reason column says why, and the row never becomes a document."""
    problem = _problem(info, quote_ident(info.name))
    return expression if problem is None else f"CASE WHEN NOT ({problem}) THEN {expression} END"


def reason_sql(columns: Sequence[ColumnInfo]) -> str:
    """The reason column: {"<position in the read>": "<value>"} of each unrepresentable value,
    NULL when there is none (positions, not names: no identifier ever becomes a literal)."""
    pairs = []
    for position, info in enumerate(columns):
        column = quote_ident(info.name)
        problem = _problem(info, column)
        if problem is not None:
            shown = f"left(CAST({column} AS TEXT), {_SHOWN})"
            pairs.append(f"'{position}', CASE WHEN {problem} THEN {shown} END")
    if not pairs:
        return "CAST(NULL AS TEXT)"
    objects = " || ".join(
        f"jsonb_build_object({', '.join(pairs[i : i + _PAIRS])})" for i in range(0, len(pairs), _PAIRS)
    )
    return f"CAST(NULLIF(jsonb_strip_nulls({objects}), '{{}}'::jsonb) AS TEXT)"


def too_long(ids: pa.Array) -> pa.Array:
    """Which `_id`s Elasticsearch refuses: one of them fails a whole bulk request (a 400), not
    just its item."""
    return pc.fill_null(pc.greater(pc.binary_length(ids), MAX_ID_BYTES), False)


def flagged(batch: pa.RecordBatch, ids: pa.Array, deleted: pa.Array | None = None) -> pa.Array | None:
    """Which rows cannot become documents (a boolean mask), None when all can: the usual case,
    decided by a few Arrow kernels. A soft-deleted row (`deleted`) is never one: it needs no
    document (and an `_id` too long to index is already absent from the index)."""
    mask = too_long(ids)
    if UNREPRESENTABLE_COLUMN in batch.schema.names:
        mask = pc.or_(mask, pc.is_valid(batch.column(UNREPRESENTABLE_COLUMN)))
    if deleted is not None:
        mask = pc.and_not(mask, deleted)
    return mask if pc.any(mask).as_py() else None


def reasons(batch: pa.RecordBatch, ids: pa.Array, mask: pa.Array) -> list[Rejected]:
    """A dead letter for each flagged row, naming the columns and values (Python for these only)."""
    names = batch.schema.names
    flagged_ids = pc.filter(ids, mask).to_pylist()
    if UNREPRESENTABLE_COLUMN in names:
        texts = pc.filter(batch.column(UNREPRESENTABLE_COLUMN), mask).to_pylist()
    else:
        texts = [None] * len(flagged_ids)
    rejected = []
    for doc_id, text in zip(flagged_ids, texts, strict=True):
        values = {names[int(p)]: v for p, v in orjson.loads(text).items()} if text else {}
        parts = [f"column '{name}' holds {value!r}" for name, value in values.items()]
        if len(doc_id.encode()) > MAX_ID_BYTES:
            parts.append(
                f"the _id is {len(doc_id.encode())} bytes (Elasticsearch takes at most {MAX_ID_BYTES})"
            )
        error: dict[str, Any] = {
            "type": ERROR_TYPE,
            "status": None,
            "reason": "; ".join(parts) + ": no document can carry it",
            "columns": values,
        }
        rejected.append(Rejected(doc_id, {"_op_type": "index", "_id": doc_id}, error))
    return rejected


class Unparsable(str):
    """A JSON value the parser refuses (nested deeper than it goes), standing in for the value:
    the parser's error. Elasticsearch refuses its document as well (its depth limits are lower),
    so the sync dead-letters it; verify must count it so, not crash."""


def parse_json(text: str, refused: list[str]) -> Any:
    """The value of JSON text, or Unparsable (noted in `refused`)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        refused.append(str(exc))
        return Unparsable(str(exc))


def unparsable(documents: list[dict[str, Any]], reasons: list[str | None] | None) -> list[str | None]:
    """`reasons` (one per document, None: fine) with every document holding an Unparsable value
    named; Python per document, only for a batch that has one."""
    out = list(reasons) if reasons is not None else [None] * len(documents)
    for row, doc in enumerate(documents):
        found = next((f"'{k}': {v}" for k, v in doc.items() if isinstance(v, Unparsable)), None)
        if found is not None and out[row] is None:
            out[row] = f"a JSON value no parser takes in {found}"
    return out
