"""Source columns as sync_pipeline sees them: name, PostgreSQL type, and how each travels.

`ColumnInfo` is what describing a source yields; everything downstream (SQL
building, staging, documents, mappings) decides by it, so none of it needs a
database connection.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

Staging = Literal["native", "text", "json"]

NATIVE: dict[str, pa.DataType] = {
    "int2": pa.int64(),
    "int4": pa.int64(),
    "int8": pa.int64(),
    "float4": pa.float64(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "name": pa.string(),
}
# citext is textual (keys compare with COLLATE "C") but staged as text: the COPY driver hands an
# extension type over as opaque bytes
TEXTUAL = frozenset({"text", "varchar", "bpchar", "name", "citext"})
# the most digits a double carries exactly (DBL_DIG): numeric(p, s) with p <= 15 survives the trip
DOUBLE_DIGITS = 15

COLUMNS_METADATA_KEY = b"sync_pipeline.columns"

ES_TYPE_BY_PG = {
    "int2": "integer",
    "int4": "integer",
    "int8": "long",
    "float4": "float",
    "float8": "double",
    "numeric": "double",  # arrays of numeric: JSON numbers, exact in _source (scalars: infer_es_type)
    "bool": "boolean",
    "timestamptz": "date",
    "timestamp": "date",
    "date": "date",
    "uuid": "keyword",
    "json": "object",
    "jsonb": "object",
}


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    pg_type: str
    is_array: bool = False
    precision: int | None = None  # numeric(p, s) as declared; None: unconstrained, or not numeric
    scale: int | None = None
    is_enum: bool = False

    @property
    def fits_double(self) -> bool:
        """A numeric column whose every value a double holds exactly (to its shortest form)."""
        return self.precision is not None and self.precision <= DOUBLE_DIGITS

    @property
    def staging(self) -> Staging:
        """How the column travels through Parquet.

        NUMERIC goes as text so no digit is lost before the transform decides;
        JSON and arrays go as JSON text because their shapes vary row to row and
        would otherwise force a per-page Arrow schema.
        """
        if self.is_array or self.pg_type in ("json", "jsonb"):
            return "json"
        if self.pg_type in NATIVE:
            return "native"
        return "text"

    @property
    def arrow_type(self) -> pa.DataType:
        return NATIVE[self.pg_type] if self.staging == "native" else pa.string()

    @property
    def is_textual(self) -> bool:
        return self.pg_type in TEXTUAL


def arrow_schema(columns: Sequence[ColumnInfo]) -> pa.Schema:
    """Arrow schema of a staged extract; the PostgreSQL types ride along as metadata
    so the transform can cleanse by source type without talking to PostgreSQL."""
    # precision/scale ride along: a documents stage run alone must pick the same numeric form
    described = json.dumps([[c.name, c.pg_type, c.is_array, c.precision, c.scale] for c in columns])
    return pa.schema(
        [pa.field(c.name, c.arrow_type) for c in columns],
        metadata={COLUMNS_METADATA_KEY: described.encode()},
    )


def columns_of(schema: pa.Schema) -> list[ColumnInfo]:
    """The columns an `arrow_schema` describes (a staged file's schema)."""
    metadata = schema.metadata or {}
    # files staged before precision/scale were recorded have three entries per column
    return [ColumnInfo(*entry) for entry in json.loads(metadata[COLUMNS_METADATA_KEY])]


def infer_es_type(info: ColumnInfo, is_key: bool) -> str:
    if info.is_array:
        # ES fields are arrays natively: an array maps as its element (JSON elements as objects)
        return ES_TYPE_BY_PG.get(info.pg_type, "keyword")
    if info.pg_type in TEXTUAL:
        return "keyword" if is_key else "text"
    if info.pg_type == "numeric":
        # exact-safe default (core/documents/build.py numeric_mode): a double only where one is exact
        return "double" if info.fits_double else "keyword"
    return ES_TYPE_BY_PG.get(info.pg_type, "keyword")


def json_es_type(kinds: set[str]) -> str | None:
    """The mapping a JSON column's values all satisfy, from the `jsonb_typeof` of its sampled
    values and of their array elements (arrays are a field's values in Elasticsearch).

    Objects map as objects, and scalars of one kind as that kind. Scalars of several kinds map
    as text: a text field takes numbers and booleans as their text, while _source keeps them
    as they are, so documents still compare equal. Objects mixed with scalars, or arrays of
    arrays, fit no field type: None, stored in _source without being indexed. No evidence (no
    rows yet) keeps `object`, what a JSON column usually holds.
    """
    if not kinds or kinds == {"object"}:
        return "object"
    if kinds <= {"string", "number", "boolean"}:
        if len(kinds) == 1:
            return {"string": "text", "number": "double", "boolean": "boolean"}[next(iter(kinds))]
        return "text"
    return None


_INTEGERS = frozenset({"byte", "short", "integer", "long"})
# PostgreSQL type → the field types Elasticsearch sorts in PostgreSQL's key order, each value to a
# sort value of its own. bpchar: PostgreSQL ignores the padding, the field keeps it; both orders
# agree unless a value holds characters below a space.
SORTS_ALIKE: dict[str, frozenset[str]] = {
    "int2": _INTEGERS,
    "int4": _INTEGERS,
    "int8": frozenset({"long"}),
    "float4": frozenset({"float", "double"}),
    "float8": frozenset({"double"}),
    "bool": frozenset({"boolean"}),
    "date": frozenset({"date"}),
    "timestamp": frozenset({"date", "date_nanos"}),  # a timestamp key maps as date_nanos
    "timestamptz": frozenset({"date", "date_nanos"}),
    "uuid": frozenset({"keyword"}),  # 16 bytes in order = their lowercase hex text in order
    **{name: frozenset({"keyword"}) for name in TEXTUAL - {"citext"}},  # pages use COLLATE "C"
}


def key_sort_problem(
    info: ColumnInfo, es_type: str, cleanse: Collection[str], numeric: str | None
) -> str | None:
    """Why Elasticsearch would sort this key field otherwise than PostgreSQL orders the column
    (verify merges the two by key), or None when the orders agree."""
    if cleanse:
        return (
            f"its values are cleansed ({', '.join(cleanse)}): the search server sorts the cleansed value, "
            "PostgreSQL orders the row's own, and distinct keys may even become equal"
        )
    if info.pg_type == "citext":
        return "PostgreSQL compares citext case-insensitively, Elasticsearch sorts the keyword by bytes"
    if info.is_enum:
        return "PostgreSQL orders an enum by its declaration, Elasticsearch sorts the labels as text"
    if info.pg_type == "numeric" and not info.is_array:
        if numeric == "scaled_long" and es_type == "long":
            return None
        if numeric == "double" and es_type == "double" and info.fits_double:
            return None
        return (
            f"mapped as {es_type}: the search server would not order it by value, or distinct values would "
            "meet in one double; give it numeric: double (for numeric(p <= 15, s)) or scaled_long(N)"
        )
    if info.is_array or es_type not in SORTS_ALIKE.get(info.pg_type, ()):
        return f"PostgreSQL orders {info.pg_type} by its own rules, Elasticsearch sorts the {es_type} field"
    return None
