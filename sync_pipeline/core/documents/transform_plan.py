"""A document plan with the spec's transform: what it returns, learnt from a zero-row run.

The index is `dynamic: strict`, so every field a transform returns needs a mapping before the
first document: a field it keeps maps as the Arrow path maps it, a field it computes maps as
`fields:` declares it (a type is required), and a field with neither is refused here — at
`validate` and at every binding — naming it.
"""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa

from sync_pipeline.core.documents.build import DocumentPlan, FieldPlan, field_table
from sync_pipeline.core.documents.transform import TableTransform, Transform
from sync_pipeline.core.spec.sources import RESERVED_PREFIX
from sync_pipeline.core.sql.columns import ColumnInfo
from sync_pipeline.core.sql.statements import SourceError

OUTPUT_PREFIX = f"{RESERVED_PREFIX}doc."  # the batch column holding a returned field


def with_transform(plan: DocumentPlan, name: str, apply: TableTransform) -> DocumentPlan:
    spec = plan.spec
    where = f"spec '{spec.name}': transform {name}"
    empty = pa.RecordBatch.from_arrays(
        [pa.array([], f.column_info.arrow_type) for f in plan.fields], names=[f.column for f in plan.fields]
    )
    sample = field_table(empty, plan.fields, spec.naive_timezone)
    try:
        returned = apply(sample)
    except Exception as exc:  # user code: whatever it raises is the spec's problem
        raise SourceError(f"{where} raised on a zero-row sample: {type(exc).__name__}: {exc}") from exc
    protected = tuple(spec.key_fields)
    kept = {f.name: f for f in plan.fields}
    names = [*returned.column_names, *(k for k in protected if k not in returned.column_names)]
    fields, outputs, problems = [], [], []
    for field in names:
        if field in kept:
            original = kept[field]
            info = (
                original.column_info if original.column_info.staging == "json" else ColumnInfo(field, "text")
            )
            fields.append(original)
            outputs.append(
                replace(original, column=OUTPUT_PREFIX + field, column_info=info, cleanse=(), numeric=None)
            )
            continue
        rule = spec.fields.get(field)
        if rule is None or not rule.type:
            problems.append(
                f"field '{field}' it returns has no mapping (the index is dynamic: strict): declare it "
                f"under fields, e.g. fields: {{{field}: {{type: keyword}}}}"
            )
            continue
        computed = FieldPlan(
            column=field, name=field, column_info=ColumnInfo(field, "text"), es_type=rule.type, cleanse=()
        )
        fields.append(computed)
        outputs.append(replace(computed, column=OUTPUT_PREFIX + field))
    known = {f.column for f in plan.fields} | set(names)
    unknown = [k for k in spec.fields if "." not in k and k not in known and not spec.fields[k].drop]
    if unknown:
        problems.append(f"fields {unknown} name neither a column nor a field it returns")
    if problems:
        raise SourceError(f"{where}: " + "; ".join(problems))
    types = {n: returned.schema.field(n).type for n in returned.column_names}
    types.update({k: sample.schema.field(k).type for k in protected})
    output = pa.schema([pa.field(f.name, types[f.name]) for f in fields])
    transform = Transform(name, apply, output, protected)
    return replace(
        plan,
        fields=tuple(fields),
        transform=transform,
        transform_inputs=plan.fields,
        transform_outputs=tuple(outputs),
    )
