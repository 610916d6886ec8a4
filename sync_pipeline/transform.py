"""Rows → documents: pandas cleansing and field mapping, no IO.

Frames arrive with pyarrow-backed dtypes (see `read_frames`), so string,
numeric and timestamp cleansing below run as Arrow compute kernels rather
than per-row Python; only JSON parsing has to touch each value.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .extract import ColumnInfo
from .specs import SyncSpec

_ES_TYPE_BY_PG = {
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
_TEXTUAL = {"text", "varchar", "bpchar", "name", "citext"}


@dataclass(frozen=True)
class FieldPlan:
    column: str
    name: str
    column_info: ColumnInfo
    es_type: str
    cleanse: tuple[str, ...]


@dataclass(frozen=True)
class DocumentPlan:
    """Everything the transform needs, derived once from spec + source columns."""

    spec: SyncSpec
    fields: tuple[FieldPlan, ...]

    @property
    def key_columns(self) -> list[str]:
        return list(self.spec.source.primary_key)


def infer_es_type(info: ColumnInfo, is_key: bool) -> str:
    if info.is_array:
        # ES fields are arrays natively: an array maps as its element (JSON elements as objects)
        return _ES_TYPE_BY_PG.get(info.pg_type, "keyword")
    if info.pg_type in _TEXTUAL:
        return "keyword" if is_key else "text"
    return _ES_TYPE_BY_PG.get(info.pg_type, "keyword")


def build_plan(spec: SyncSpec, columns: Sequence[ColumnInfo]) -> DocumentPlan:
    fields = []
    for info in columns:
        cfg = spec.fields.get(info.name)
        if cfg is not None and cfg.drop:
            continue
        is_key = info.name in spec.source.primary_key
        es_type = (cfg.type if cfg and cfg.type else None) or infer_es_type(info, is_key)
        fields.append(
            FieldPlan(
                column=info.name,
                name=spec.field_name(info.name),
                column_info=info,
                es_type=es_type,
                cleanse=tuple(cfg.cleanse) if cfg else (),
            )
        )
    return DocumentPlan(spec=spec, fields=tuple(fields))


def index_mapping(plan: DocumentPlan) -> dict[str, Any]:
    """Explicit mapping for every known field; JSON columns stay dynamic objects."""
    properties: dict[str, Any] = {}
    for f in plan.fields:
        prop: dict[str, Any] = {"type": f.es_type}
        if f.es_type == "text":
            # sortable/aggregatable twin, as ES's own dynamic mapping would add
            prop["fields"] = {"keyword": {"type": "keyword", "ignore_above": 256}}
        if f.es_type == "date" and f.column_info.pg_type == "date":
            prop["format"] = "strict_date"
        properties[f.name] = prop
    return {"dynamic": True, "properties": properties}


def index_settings(spec: SyncSpec) -> dict[str, Any]:
    return {"number_of_shards": spec.target.shards, "number_of_replicas": spec.target.replicas}


def document_id(key: Sequence[Any]) -> str:
    """`_id` from primary-key values: the value itself, or a JSON array for composite keys.

    JSON keeps composite ids unambiguous whatever characters the parts contain.
    """
    if len(key) == 1:
        return str(key[0])
    return orjson.dumps(list(key), default=str).decode()


def document_ids(frame: pd.DataFrame, key_columns: Sequence[str]) -> list[str]:
    if len(key_columns) == 1:
        return [str(v) for v in frame[key_columns[0]].tolist()]
    rows = zip(*(frame[c].tolist() for c in key_columns), strict=True)
    return [document_id(r) for r in rows]


def _null_if(series: pd.Series, mask: Any) -> pd.Series:
    return series.mask(mask)


def cleanse_column(series: pd.Series, field: FieldPlan, naive_timezone: str) -> pd.Series:
    info = field.column_info
    staging = info.staging
    if staging == "json":
        return series.astype(object).map(lambda v: orjson.loads(v) if isinstance(v, str) else None)
    if info.pg_type == "numeric":
        # Decimal → number; ES has no decimal type, double is what it would store anyway
        series = series.astype("double[pyarrow]")
    if info.pg_type in ("float4", "float8", "numeric"):
        values = series.to_numpy(dtype="float64", na_value=0.0)
        return _null_if(series, ~np.isfinite(values))  # NaN/±Infinity are not JSON
    if info.pg_type in ("timestamptz", "timestamp"):
        if info.pg_type == "timestamp":
            # DST: a skipped wall-clock time moves past the gap, a repeated one takes its first instant
            local = pc.assume_timezone(
                pa.array(series), naive_timezone, ambiguous="earliest", nonexistent="latest"
            )
            utc = local.cast(pa.timestamp("us", tz="UTC"))
            series = pd.Series(utc, dtype=pd.ArrowDtype(utc.type), index=series.index)
        return series.dt.strftime("%Y-%m-%dT%H:%M:%S") + "Z"
    if info.pg_type == "date":
        return series.dt.strftime("%Y-%m-%d")
    if series.dtype == "string[pyarrow]" or info.pg_type in _TEXTUAL or staging == "text":
        for step in field.cleanse:
            if step == "trim":
                series = series.str.strip()
            elif step == "lowercase":
                series = series.str.lower()
            elif step == "empty_to_null":
                series = _null_if(series, series == "")
    return series


def deleted_mask(frame: pd.DataFrame, spec: SyncSpec) -> pd.Series:
    """Soft-deleted rows: the soft-delete column is true (booleans) or set (anything else)."""
    column = spec.source.soft_delete
    if column is None:
        return pd.Series(False, index=frame.index)
    values = frame[column]
    if values.dtype == "bool[pyarrow]":
        return values.fillna(False).astype(bool)
    return values.notna().astype(bool)


@dataclass
class DocumentBatch:
    ids: list[str]
    documents: list[dict[str, Any]]  # aligned with ids; ignored where deleted
    deleted: list[bool]
    versions: list[int]  # ES external versions: a document never replaces a newer one

    def __len__(self) -> int:
        return len(self.ids)


def frame_to_documents(frame: pd.DataFrame, plan: DocumentPlan) -> DocumentBatch:
    ids = document_ids(frame, plan.key_columns)
    deleted = deleted_mask(frame, plan.spec).tolist()
    out = pd.DataFrame(
        {f.name: cleanse_column(frame[f.column], f, plan.spec.naive_timezone) for f in plan.fields},
        index=frame.index,
    )
    versions = document_versions(frame, plan.spec)
    return DocumentBatch(ids=ids, documents=out.to_dict("records"), deleted=deleted, versions=versions)


def document_versions(frame: pd.DataFrame, spec: SyncSpec) -> list[int]:
    """External version per row: the spec's version column, else updated_at in epoch microseconds.

    A row without one gets 0, which any later stamped write supersedes.
    """
    column = frame[spec.source.version or spec.source.updated_at]
    if isinstance(column.dtype, pd.ArrowDtype) and pa.types.is_timestamp(column.dtype.pyarrow_dtype):
        micros = pa.array(column).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        column = pd.Series(micros, dtype=pd.ArrowDtype(pa.int64()), index=frame.index)
    return column.fillna(0).astype("int64").clip(lower=0).tolist()


def read_frames(path: Path, batch_size: int) -> Iterator[pd.DataFrame]:
    """Stream a staged Parquet file as pyarrow-backed frames of at most `batch_size` rows."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=batch_size):
        yield record_batch_to_frame(batch)


def record_batch_to_frame(batch: pa.RecordBatch) -> pd.DataFrame:
    return batch.to_pandas(types_mapper=pd.ArrowDtype)


def documents_to_ndjson(batch: DocumentBatch) -> bytes:
    """One line per document: {"_id", "_op", "_version", "_source"} — the staged documents."""
    lines = []
    rows = zip(batch.ids, batch.documents, batch.deleted, batch.versions, strict=True)
    for doc_id, doc, is_deleted, version in rows:
        entry: dict[str, Any] = {
            "_id": doc_id,
            "_op": "delete" if is_deleted else "index",
            "_version": version,
        }
        if not is_deleted:
            entry["_source"] = doc
        lines.append(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))
    return b"".join(lines)
