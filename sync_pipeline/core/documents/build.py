"""Rows → documents: cleansing and field mapping on Arrow record batches, no IO.

Cleansing runs as Arrow compute kernels, column by column (the kernels that
pyarrow-backed pandas would dispatch to, without building a DataFrame per
batch); Python touches each row once, to assemble it. Two outputs:

- `batch_to_bulk`: bulk-ready NDJSON (action line + source line per document),
  what a sync stages and sends as is. JSON columns are embedded as the text
  PostgreSQL produced (already valid JSON) instead of being parsed and
  re-serialised.
- `batch_to_documents`: the same documents as dicts, for the code that
  compares or edits them (verify, resync).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sync_pipeline.core.documents.cleanse import FieldPlan, cleanse_array, exact_longs
from sync_pipeline.core.documents.json_text import float_text, is_nested, json_text
from sync_pipeline.core.documents.transform import Failure, Transform, failed_mask, run_transform
from sync_pipeline.core.documents.transform import rejected as transform_rejected
from sync_pipeline.core.load.bulk import (
    BulkBody,
    BulkChunk,
    action_array,
    action_tail,
    json_strings,
    value_bytes,
)
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.spec.sources import RESERVED_PREFIX
from sync_pipeline.core.spec.target import FieldSpec
from sync_pipeline.core.sql import poison
from sync_pipeline.core.sql.columns import ColumnInfo, infer_es_type, key_sort_problem
from sync_pipeline.core.sql.keys import check_no_null_keys, ids_from_texts, key_texts
from sync_pipeline.core.sql.relations import RelationPlan
from sync_pipeline.core.sql.versions import VERSION_COLUMN

NUMERIC_ES_TYPE = {"double": "double", "string": "keyword", "scaled_long": "long"}


def numeric_mode(info: ColumnInfo, rule: FieldSpec | None) -> tuple[str | None, int]:
    """How a numeric column travels: the spec's `numeric`, else the exact-safe default — a double
    where the declared precision fits one exactly (numeric(p, s), p <= 15), PostgreSQL's text
    otherwise (an unconstrained numeric, or wider), since Elasticsearch has no decimal type."""
    if info.pg_type != "numeric" or info.is_array:
        return None, 0
    if rule is not None and rule.numeric is not None:
        scale = rule.numeric_scale
        return ("scaled_long", scale) if scale is not None else (rule.numeric, 0)
    return ("double" if info.fits_double else "string"), 0


@dataclass(frozen=True)
class DocumentPlan:
    """Everything the transform needs, derived once from spec + source columns."""

    spec: SyncSpec
    fields: tuple[FieldPlan, ...]
    keys: tuple[ColumnInfo, ...] = ()  # the primary-key columns, in key order
    relations: tuple[RelationPlan, ...] = ()
    # a spec's transform (core/documents/transform.py): it gets the fields the Arrow path would write
    # (`transform_inputs`); `fields` are then what it returns, read back as `transform_outputs`
    transform: Transform | None = None
    transform_inputs: tuple[FieldPlan, ...] = ()
    transform_outputs: tuple[FieldPlan, ...] = ()

    @property
    def key_columns(self) -> list[str]:
        return list(self.spec.source.primary_key)


def build_plan(
    spec: SyncSpec,
    columns: Sequence[ColumnInfo],
    relations: Sequence[RelationPlan] = (),
    json_types: Mapping[str, str | None] | None = None,
) -> DocumentPlan:
    """`columns` as a read returns them (the source's, then one JSON column per relation, then
    the snapshot version, which is no field). `json_types`: the mapping of JSON columns inferred
    from their values (core/sql/columns.json_es_type; None: no field type fits, stored only)."""
    json_types = json_types or {}
    by_name = {r.spec.name: r for r in relations}
    fields = []
    for info in columns:
        if info.name.startswith(RESERVED_PREFIX):
            continue
        if info.name in by_name:
            relation = by_name[info.name]
            kind = "nested" if relation.spec.nested else "object"
            fields.append(FieldPlan(info.name, info.name, info, kind, ()))
            continue
        cfg = spec.fields.get(info.name)
        if cfg is not None and cfg.drop:
            continue
        mode, scale = numeric_mode(info, cfg)
        indexed = True
        if cfg is not None and cfg.type:
            es_type = cfg.type
        elif info.name in json_types:
            es_type, indexed = json_types[info.name] or "object", json_types[info.name] is not None
        elif mode is not None:
            es_type = NUMERIC_ES_TYPE[mode]
        else:
            es_type = infer_es_type(info, info.name in spec.source.primary_key)
        fields.append(
            FieldPlan(
                column=info.name,
                name=spec.field_name(info.name),
                column_info=info,
                es_type=es_type,
                cleanse=tuple(cfg.cleanse) if cfg else (),
                numeric=mode,
                numeric_scale=scale,
                indexed=indexed,
            )
        )
    info = {c.name: c for c in columns}
    keys = tuple(info[c] for c in spec.source.primary_key if c in info)
    return DocumentPlan(spec=spec, fields=tuple(fields), keys=keys, relations=tuple(relations))


def key_order_problems(plan: DocumentPlan) -> list[str]:
    """Key fields Elasticsearch sorts in another order than PostgreSQL's keyset pages read them,
    one line each: verify's merge of the two streams would report false missing/extra."""
    by_column = {f.column: f for f in plan.fields}
    problems = []
    for info in plan.keys:
        f = by_column[info.name]  # key columns cannot be dropped (core/spec/model.py)
        problem = key_sort_problem(info, f.es_type, f.cleanse, f.numeric)
        if problem:
            problems.append(f"key column '{info.name}' ({info.pg_type}): {problem}")
    return problems


def document_ids(batch: pa.RecordBatch, plan: DocumentPlan) -> list[str]:
    """`_id` of every row (core/sql/keys.py); NULL keys are refused."""
    return _id_array(batch, plan).to_pylist()


def _id_array(batch: pa.RecordBatch, plan: DocumentPlan) -> pa.Array:
    texts = key_texts(batch, plan.keys, plan.spec.naive_timezone)
    check_no_null_keys(texts, plan.spec.name)
    return ids_from_texts(texts, plan.keys)


def field_table(batch: pa.RecordBatch, fields: Sequence[FieldPlan], naive_timezone: str) -> pa.Table:
    """The batch's fields as the Arrow path writes them, one column per field name."""
    arrays = [cleanse_array(batch.column(f.column), f, naive_timezone) for f in fields]
    return pa.table(arrays, names=[f.name for f in fields])


def _transformed(
    batch: pa.RecordBatch, plan: DocumentPlan
) -> tuple[pa.RecordBatch, DocumentPlan, list[Failure]]:
    """With a transform: the batch with what it returned appended (`transform_outputs` read it),
    the plan for that, and the rows it raised on. The one place every path that builds documents
    goes through, so a sync, a drain and verify see the same documents."""
    if plan.transform is None:
        return batch, plan, []
    table = field_table(batch, plan.transform_inputs, plan.spec.naive_timezone)
    out, failures = run_transform(table, plan.transform)
    outputs, returned = list(plan.transform_outputs), []
    for number, column in enumerate(out.columns):
        values = column.combine_chunks()
        if is_nested(values.type):  # lists (an embedding) or dicts: carried as JSON text from here
            values = json_text(values)
            outputs[number] = replace(outputs[number], column_info=ColumnInfo(outputs[number].name, "jsonb"))
        returned.append(values)
    names = [*batch.schema.names, *(f.column for f in outputs)]
    batch = pa.RecordBatch.from_arrays([*batch.columns, *returned], names=names)
    return batch, replace(plan, fields=tuple(outputs), transform=None), failures


def deleted_flags(batch: pa.RecordBatch, spec: SyncSpec) -> list[bool]:
    """Soft-deleted rows: the soft-delete column is true (booleans) or set (anything else)."""
    flags = _deleted_array(batch, spec)
    return [False] * batch.num_rows if flags is None else flags.to_pylist()


def _deleted_array(batch: pa.RecordBatch, spec: SyncSpec) -> pa.Array | None:
    """`deleted_flags` in Arrow; None when the spec has no soft-delete column."""
    column = spec.source.soft_delete
    if column is None:
        return None
    values = batch.column(column)
    if pa.types.is_boolean(values.type):
        return pc.fill_null(values, False)
    return pc.is_valid(values)


def document_versions(batch: pa.RecordBatch, spec: SyncSpec) -> list[int]:
    """External version per row: the snapshot version the read returned (core/sql/versions.py).

    A batch staged before snapshot versions (no version column) falls back to updated_at in
    epoch microseconds, the earlier scheme: always below snapshot versions, so such a re-send
    never replaces a document written since.
    """
    return _version_array(batch, spec).to_pylist()


def _version_array(batch: pa.RecordBatch, spec: SyncSpec) -> pa.Array:
    if VERSION_COLUMN in batch.schema.names:
        return pc.fill_null(batch.column(VERSION_COLUMN).cast(pa.int64()), 0)
    column = batch.column(spec.source.updated_at)
    if pa.types.is_timestamp(column.type):
        unit = pa.timestamp("us", tz="UTC") if column.type.tz else pa.timestamp("us")
        column = column.cast(unit)
    values = pc.fill_null(column.cast(pa.int64()), 0)
    return pc.max_element_wise(values, pa.scalar(0, pa.int64()))


def _field_values(batch: pa.RecordBatch, plan: DocumentPlan, json_value: Any) -> list[list[Any]]:
    """Per field, its cleansed values as Python objects; `json_value` turns JSON text into a value."""
    values = []
    for f in plan.fields:
        array = cleanse_array(batch.column(f.column), f, plan.spec.naive_timezone)
        if f.column_info.staging == "json":
            values.append([None if v is None else json_value(v) for v in array.to_pylist()])
        elif f.numeric == "scaled_long":
            exact = pc.cast(pc.if_else(exact_longs(array), array, pa.scalar(None, pa.string())), pa.int64())
            pairs = zip(exact.to_pylist(), array.to_pylist(), strict=True)
            values.append([text if number is None else number for number, text in pairs])
        else:
            values.append(array.to_pylist())
    return values


def expect_exact_numerics(batch: pa.RecordBatch, plan: DocumentPlan, documents: list[dict[str, Any]]) -> None:
    """Verify's expectation of numeric values sent as doubles: the double where it stands for
    PostgreSQL's value (its shortest form reads back as the same decimal), else the exact text,
    which no double in Elasticsearch equals, so the field is reported as mismatched."""
    for f in plan.fields:
        if f.numeric != "double" or f.column_info.fits_double:
            continue  # at most 15 digits: the double is always exact
        for doc, text in zip(documents, batch.column(f.column).to_pylist(), strict=True):
            value = doc.get(f.name)
            if isinstance(value, float) and Decimal(repr(value)) != Decimal(text):
                doc[f.name] = text


@dataclass
class DocumentBatch:
    ids: list[str]
    documents: list[dict[str, Any]]  # aligned with ids; ignored where deleted
    deleted: list[bool]
    versions: list[int]  # ES external versions: a document never replaces a newer one
    # per row, why no document can carry it (core/sql/poison.py; None: it can); aligned with ids
    unrepresentable: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.ids)


def batch_to_documents(batch: pa.RecordBatch, plan: DocumentPlan) -> DocumentBatch:
    batch, plan, failed = _transformed(batch, plan)
    names = [f.name for f in plan.fields]
    refused: list[str] = []
    columns = _field_values(batch, plan, lambda text: poison.parse_json(text, refused))
    documents = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
    if not plan.fields:
        documents = [{} for _ in range(batch.num_rows)]
    ids = _id_array(batch, plan)
    mask = poison.flagged(batch, ids, _deleted_array(batch, plan.spec))
    unrepresentable: list[str | None] | None = None
    if mask is not None:
        reasons = iter(poison.reasons(batch, ids, mask))
        unrepresentable = [next(reasons).error["reason"] if bad else None for bad in mask.to_pylist()]
    if refused:  # a value no JSON parser takes: a dead letter of the sync, so not verify's drift
        unrepresentable = poison.unparsable(documents, unrepresentable)
    deleted = deleted_flags(batch, plan.spec)
    if failed:  # the sync dead-letters these rows too: not verify's drift
        unrepresentable = unrepresentable or [None] * batch.num_rows
        for failure in failed:
            if not deleted[failure.row]:
                unrepresentable[failure.row] = unrepresentable[failure.row] or failure.reason
    return DocumentBatch(
        ids=ids.to_pylist(),
        documents=documents,
        deleted=deleted,
        versions=document_versions(batch, plan.spec),
        unrepresentable=unrepresentable,
    )


def _json_values(array: pa.Array, field: FieldPlan) -> pa.Array:
    """One cleansed column as the JSON text of each value (nulls stay null)."""
    kind = array.type
    if pa.types.is_null(kind):  # a field a transform returned no value of in this batch
        text = pa.nulls(len(array), pa.string())
    elif field.column_info.staging == "json":
        text = array  # the JSON PostgreSQL produced, embedded as it is
    elif field.numeric == "scaled_long":
        text = pc.if_else(exact_longs(array), array, json_strings(array))  # inexact: a string
    elif pa.types.is_floating(kind):
        text = float_text(array)  # non-finite values are null by now
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        text = pc.cast(array, pa.string())
    else:
        text = json_strings(array if pa.types.is_string(kind) else pc.cast(array, pa.string()))
    return text


def batch_to_bulk(batch: pa.RecordBatch, plan: DocumentPlan, include_deletes: bool = True) -> BulkChunk:
    """The batch as bulk NDJSON, assembled column by column in Arrow: no Python per row. Rows no
    document can carry (core/sql/poison.py), or that the spec's transform raised on, are left out,
    as the chunk's `rejected`."""
    batch, plan, failures = _transformed(batch, plan)
    ids = _id_array(batch, plan)
    flags = _deleted_array(batch, plan.spec)
    mask = poison.flagged(batch, ids, flags)
    failed = failed_mask(failures, batch.num_rows)
    if failed is not None:  # a deleted row needs no document; a poisoned one has its letter
        failed = failed if flags is None else pc.and_not(failed, flags)
        failed = failed if mask is None else pc.and_not(failed, mask)
    letters = transform_rejected(ids, failures, failed) if failed is not None else []
    unsendable = None if flags is None else pc.and_(flags, poison.too_long(ids))
    if unsendable is not None and pc.any(unsendable).as_py():
        # the delete of an `_id` too long to index: already the index's state, and not sendable
        keep = pc.invert(unsendable)
        batch, ids = batch.filter(keep), pc.filter(ids, keep)
        mask = None if mask is None else pc.filter(mask, keep)
        failed = None if failed is None else pc.filter(failed, keep)
    if mask is None and not letters:
        return _bulk(batch, plan, ids, include_deletes)
    rejected = (*(poison.reasons(batch, ids, mask) if mask is not None else ()), *letters)
    mask = failed if mask is None else (mask if not letters else pc.or_(mask, failed))
    keep = pc.invert(mask)
    chunk = _bulk(batch.filter(keep), plan, pc.filter(ids, keep), include_deletes)
    return BulkChunk(chunk.body, chunk.deletes, rejected)


def _bulk(batch: pa.RecordBatch, plan: DocumentPlan, ids: pa.Array, include_deletes: bool) -> BulkChunk:
    spec = plan.spec
    parts: list[Any] = []
    for number, f in enumerate(plan.fields):
        name = orjson.dumps(f.name).decode()
        parts += [
            ("{" if number == 0 else ",") + name + ":",
            _json_values(cleanse_array(batch.column(f.column), f, spec.naive_timezone), f),
        ]
    parts += ["}\n" if plan.fields else "{}\n"]
    versions = _version_array(batch, spec)
    flags = _deleted_array(batch, spec)
    deletes = 0 if flags is None else int(pc.sum(flags).as_py() or 0)
    if deletes == 0:
        # no deletes, the usual case: action and source lines in one join, so the body is
        # written once instead of three times (actions, sources, then both)
        lines = _joined('{"index":', *action_tail(ids, versions), *parts)
    else:
        actions = action_array(ids, versions, flags)
        lines = pc.if_else(flags, actions, _joined(actions, *parts))
        if not include_deletes:
            lines = pc.filter(lines, pc.invert(flags))
            deletes = 0
    return BulkChunk(BulkBody(*value_bytes(lines)), deletes=deletes)


def _joined(*parts: Any) -> pa.Array:
    """Element-wise concatenation; a null value (of a field) is written as JSON's null."""
    return pc.binary_join_element_wise(*parts, "", null_handling="replace", null_replacement="null")
