"""A spec's own documents stage: a callable over a batch's fields, with failing rows isolated.

The callable arrives resolved (io/transform.py imports the user's pandas function and wraps it
as Arrow table → Arrow table), so nothing here imports pandas or user code. A batch the
callable raises on is split in halves until the rows it raises on stand alone: they become
dead letters carrying the exception, the rest of the batch flows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from sync_pipeline.core.load.bulk import Rejected

TableTransform = Callable[[pa.Table], pa.Table]

ERROR_TYPE = "transform_failed"


@dataclass(frozen=True)
class Transform:
    name: str  # 'module:function', as the spec names it
    apply: TableTransform
    output: pa.Schema  # the fields it returns, learnt from a zero-row run at binding
    protected: tuple[str, ...] = ()  # key fields: the input's values are put back after it ran


@dataclass(frozen=True)
class Failure:
    row: int
    error: BaseException

    @property
    def reason(self) -> str:
        return f"transform raised {type(self.error).__name__}: {self.error}"


def _conformed(out: pa.Table, rows: int, transform: Transform) -> pa.Table:
    """The callable's result as the fields learnt at binding: a row count other than the input's,
    or a field it did not return then, is the callable's error (the index is strict). Key fields
    are left null here: `_protected` puts the input's back."""
    schema = transform.output
    if out.num_rows != rows:
        raise ValueError(f"returned {out.num_rows} rows for {rows} (a transform maps rows, never filters)")
    extra = [n for n in out.column_names if n not in schema.names]
    if extra:
        raise ValueError(f"returned field(s) {extra} it did not return on the empty sample at validation")
    columns = []
    for field in schema:
        if field.name not in out.column_names or field.name in transform.protected:
            columns.append(pa.nulls(rows, field.type))
            continue
        columns.append(_as_learnt(out.column(field.name), field.type))
    return pa.table(columns, names=schema.names)


def _as_learnt(column: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    """A number or a null column in the type the zero-row sample gave it (an int64 field whose
    batch came back int32), anything else as returned: an empty sample types what pandas cannot
    see (a list comprehension over no rows is float64, an all-null field is null), so a text, a
    list of floats (an embedding) or a dict must not be cast into it — nor a text into a number."""
    numbers = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
    learnt_number = pa.types.is_integer(kind) or pa.types.is_floating(kind)
    if column.type == kind or not (pa.types.is_null(column.type) or (numbers and learnt_number)):
        return column
    try:
        return column.cast(kind)  # safe casts only: 1.5 into an integer type raises
    except pa.ArrowInvalid:
        return column


def run_transform(table: pa.Table, transform: Transform) -> tuple[pa.Table, list[Failure]]:
    """The fields of every row (a failed row's are null) and the rows the callable raised on."""
    failures: list[Failure] = []
    pieces = _run(table, 0, transform, failures)
    result = pa.concat_tables(pieces, promote_options="permissive")
    return _protected(table, result, transform.protected), failures


def _run(table: pa.Table, start: int, transform: Transform, failures: list[Failure]) -> list[pa.Table]:
    try:
        return [_conformed(transform.apply(table), table.num_rows, transform)]
    except Exception as exc:  # user code: any exception is the row's dead letter
        if table.num_rows <= 1:
            failures.extend(Failure(start + row, exc) for row in range(table.num_rows))
            return [transform.output.empty_table()] if table.num_rows == 0 else [_nulls(transform.output)]
        half = table.num_rows // 2
        head = _run(table.slice(0, half), start, transform, failures)
        return head + _run(table.slice(half), start + half, transform, failures)


def _nulls(schema: pa.Schema) -> pa.Table:
    # of type null, which the other pieces' types absorb (an embedding's list is unknown here)
    return pa.table([pa.nulls(1) for _ in schema], names=schema.names)


def _protected(before: pa.Table, after: pa.Table, names: Sequence[str]) -> pa.Table:
    """Key fields as they were: `_id` and verify's key order are the key's, whatever it returned."""
    for name in names:
        index = after.column_names.index(name)
        after = after.set_column(index, before.field(name), before.column(name))
    return after


def failed_mask(failures: Sequence[Failure], rows: int) -> pa.Array | None:
    if not failures:
        return None
    flags = [False] * rows
    for failure in failures:
        flags[failure.row] = True
    return pa.array(flags, pa.bool_())


def rejected(ids: pa.Array, failures: Sequence[Failure], keep: pa.Array) -> list[Rejected]:
    """A dead letter per failed row still `keep` (not deleted, not refused for another reason)."""
    out = []
    for failure in failures:
        if not keep[failure.row].as_py():
            continue
        doc_id = ids[failure.row].as_py()
        error = {
            "type": ERROR_TYPE,
            "status": None,
            "reason": failure.reason,
            "exception": {"type": type(failure.error).__name__, "message": str(failure.error)},
        }
        out.append(Rejected(doc_id, {"_op_type": "index", "_id": doc_id}, error))
    return out
