"""Source columns as sync_pipeline sees them: name, PostgreSQL type, and how each travels.

`ColumnInfo` is what describing a source yields; everything downstream (SQL
building, staging, documents, mappings) decides by it, so none of it needs a
database connection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    "citext": pa.string(),
}
TEXTUAL = frozenset({"text", "varchar", "bpchar", "name", "citext"})

COLUMNS_METADATA_KEY = b"sync_pipeline.columns"

ES_TYPE_BY_PG = {
    "int2": "integer",
    "int4": "integer",
    "int8": "long",
    "float4": "float",
    "float8": "double",
    "numeric": "double",
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
    described = json.dumps([[c.name, c.pg_type, c.is_array] for c in columns])
    return pa.schema(
        [pa.field(c.name, c.arrow_type) for c in columns],
        metadata={COLUMNS_METADATA_KEY: described.encode()},
    )


def columns_of(schema: pa.Schema) -> list[ColumnInfo]:
    """The columns an `arrow_schema` describes (a staged file's schema)."""
    metadata = schema.metadata or {}
    return [
        ColumnInfo(name, pg_type, is_array)
        for name, pg_type, is_array in json.loads(metadata[COLUMNS_METADATA_KEY])
    ]


def infer_es_type(info: ColumnInfo, is_key: bool) -> str:
    if info.is_array:
        # ES fields are arrays natively: an array maps as its element (JSON elements as objects)
        return ES_TYPE_BY_PG.get(info.pg_type, "keyword")
    if info.pg_type in TEXTUAL:
        return "keyword" if is_key else "text"
    return ES_TYPE_BY_PG.get(info.pg_type, "keyword")
