"""One key encoding: how a row's primary key becomes its document `_id`, on every path.

The sync (Arrow batches from COPY), the drain (keys the triggers recorded as
JSON), deletes of rows that are gone, verify and the dead letters all derive
`_id` through the *canonical text* of each key column, produced the same way
in SQL (`canonical_sql`) and in Arrow (`canonical_texts`): integers and
NUMERIC as PostgreSQL prints them (so 1.50 stays "1.50"), text and uuid as
they are, dates as YYYY-MM-DD, timestamps as UTC ISO-8601 with microseconds
(naive ones read in the spec's naive_timezone), booleans as true/false. A
single-column key's `_id` is that text; a composite key's is a JSON array of
the parts, integers as numbers and everything else as strings.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sync_pipeline.core.sql import poison
from sync_pipeline.core.sql.columns import ColumnInfo
from sync_pipeline.core.sql.quoting import sql_literal
from sync_pipeline.core.sql.timestamps import iso_utc, utc_from_naive

INTEGER_TYPES = frozenset({"int2", "int4", "int8"})
# to_char's pattern for what core/sql/timestamps.iso_utc writes: UTC, microseconds, Z
ISO_UTC_SQL = '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\''


class NullKeyError(ValueError):
    """Rows whose primary key is NULL cannot become documents."""


def canonical_sql(info: ColumnInfo, expr: str, naive_timezone: str = "UTC") -> str:
    """SQL for the canonical text of a key value `expr` of the column's type."""
    if info.pg_type == "timestamptz":
        return _representable(info, expr, f"to_char(({expr}) AT TIME ZONE 'UTC', {ISO_UTC_SQL})")
    if info.pg_type == "timestamp":
        local = f"({expr}) AT TIME ZONE {sql_literal(naive_timezone)}"
        return _representable(info, expr, f"to_char(({local}) AT TIME ZONE 'UTC', {ISO_UTC_SQL})")
    if info.pg_type == "date":
        return _representable(info, expr, f"to_char({expr}, 'YYYY-MM-DD')")
    if info.pg_type == "bool":
        return f"CASE WHEN {expr} THEN 'true' ELSE 'false' END"
    return f"CAST({expr} AS text)"


def _representable(info: ColumnInfo, expr: str, text: str) -> str:
    """A date or timestamp key no document date can hold (±infinity, BC, after 9999; to_char
    gives NULL for infinity) keeps PostgreSQL's own text: the `_id` of its dead letter, the text
    a read names it by (`key_texts`), and one that casts back to the value for lookups."""
    return f"CASE WHEN {poison.representable_sql(info, expr)} THEN {text} ELSE CAST({expr} AS text) END"


def key_texts(
    batch: pa.RecordBatch, columns: Sequence[ColumnInfo], naive_timezone: str = "UTC"
) -> list[pa.Array]:
    """`canonical_texts`, with a key value the read could not represent (rendered NULL, named in
    its unrepresentable column) as PostgreSQL's text of it, as `canonical_sql` gives it: such a
    row is a dead letter under that `_id`, never a NULL key that stops its batch."""
    texts = canonical_texts(batch, columns, naive_timezone)
    if poison.UNREPRESENTABLE_COLUMN not in batch.schema.names or not any(t.null_count for t in texts):
        return texts  # the usual batch: no key value to look up, no reason text parsed
    raw = poison.raw_values(batch, [info.name for info in columns])
    return [
        text if values is None else pc.coalesce(text, values) for text, values in zip(texts, raw, strict=True)
    ]


def typed_sql(info: ColumnInfo, text_expr: str, type_name: str, naive_timezone: str = "UTC") -> str:
    """SQL turning a canonical text back into a value of the column's type (key lookups)."""
    if info.pg_type == "timestamp":
        return f"(CAST({text_expr} AS timestamptz) AT TIME ZONE {sql_literal(naive_timezone)})"
    return f"CAST({text_expr} AS {type_name})"


def canonical_texts(
    batch: pa.RecordBatch, columns: Sequence[ColumnInfo], naive_timezone: str = "UTC"
) -> list[pa.Array]:
    """The canonical text of every key column of a staged batch, vectorised."""
    texts = []
    for info in columns:
        array = batch.column(info.name)
        if info.pg_type == "timestamp":
            text = iso_utc(utc_from_naive(array, naive_timezone))
        elif info.pg_type == "timestamptz":
            text = iso_utc(array)
        elif info.pg_type == "bpchar":
            text = pc.utf8_rtrim(array, " ")  # as CAST(… AS text) prints char(n)
        else:
            text = pc.cast(array, pa.string())
        texts.append(text)
    return texts


def check_no_null_keys(texts: Sequence[pa.Array], spec_name: str) -> None:
    missing = pc.is_null(texts[0])
    for text in texts[1:]:
        missing = pc.or_(missing, pc.is_null(text))
    count = int(pc.sum(missing).as_py() or 0)
    if count:
        raise null_key_error(spec_name, f"{count} row(s) have")


def null_key_error(spec_name: str, which: str) -> NullKeyError:
    """`which`: the rows, and their verb ("3 row(s) have", "a row of the window has")."""
    return NullKeyError(
        f"spec '{spec_name}': {which} a NULL primary key; such rows cannot become documents "
        "(give the key columns NOT NULL, or filter them out in a `query` source)"
    )


def ids_from_texts(texts: Sequence[pa.Array], columns: Sequence[ColumnInfo]) -> pa.Array:
    """`_id`s of a batch from its key columns' canonical texts."""
    if len(texts) == 1:
        return texts[0]
    from sync_pipeline.core.load.bulk import json_strings

    parts: list[object] = []
    for number, (text, info) in enumerate(zip(texts, columns, strict=True)):
        parts += ["[" if number == 0 else ",", text if info.pg_type in INTEGER_TYPES else json_strings(text)]
    return pc.binary_join_element_wise(*parts, "]", "")


def document_id(texts: Sequence[str], columns: Sequence[ColumnInfo]) -> str:
    """The `_id` of one key from its canonical texts (what `ids_from_texts` gives per row)."""
    if len(texts) == 1:
        return texts[0]
    parts = [int(t) if c.pg_type in INTEGER_TYPES else t for t, c in zip(texts, columns, strict=True)]
    return orjson.dumps(parts).decode()


def texts_from_id(doc_id: str, count: int) -> list[str]:
    """The canonical texts of a key from its `_id` (dead-letter replay)."""
    if count == 1:
        return [doc_id]
    return [str(part) for part in orjson.loads(doc_id)]
