"""Arrow values as JSON text, in compute kernels: scalars, and the lists and structs a pandas
transform returns (an embedding is a list of floats per row).

Columns read from PostgreSQL never need the nested forms: arrays and JSON arrive as the JSON
text PostgreSQL wrote. A transform's DataFrame is another matter — a column of Python lists
becomes an Arrow list column — and it must reach the bulk body and verify as the same text.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from sync_pipeline.core.load.bulk import json_strings


def is_nested(kind: pa.DataType) -> bool:
    return pa.types.is_nested(kind) and not pa.types.is_map(kind) and not pa.types.is_union(kind)


def float_text(array: pa.Array) -> pa.Array:
    """Doubles (non-finite ones already null) in their shortest round-trip form; an integral one
    keeps its ".0", as Python's JSON (and so verify's documents) writes it."""
    text = pc.cast(array, pa.string())
    integral = pc.match_substring_regex(text, r"^-?[0-9]+$")
    return pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)


def json_text(array: pa.Array) -> pa.Array:
    """Each value as JSON text, a null value as null (inside a list or struct: JSON's null)."""
    kind = array.type
    if pa.types.is_null(kind):
        return pa.nulls(len(array), pa.string())
    if pa.types.is_struct(kind):
        return _struct_text(array)
    if is_nested(kind):
        return _list_text(array)
    if pa.types.is_floating(kind):
        finite = pc.if_else(pc.is_finite(array), array, pa.scalar(None, kind))  # NaN/±Inf: not JSON
        return float_text(finite)
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return pc.cast(array, pa.string())
    return json_strings(array if pa.types.is_string(kind) else pc.cast(array, pa.string()))


def _list_text(array: pa.Array) -> pa.Array:
    # flatten() drops what null lists hold; the lengths (0 for a null list) rebuild the offsets
    items = pc.fill_null(json_text(array.flatten()), "null")
    lengths = pc.fill_null(pc.list_value_length(array), 0).cast(pa.int32())
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cumulative_sum(lengths)])
    lists = pa.ListArray.from_arrays(offsets, items, mask=pc.is_null(array))
    return pc.binary_join_element_wise("[", pc.binary_join(lists, ","), "]", "")


def _struct_text(array: pa.StructArray) -> pa.Array:
    parts: list[pa.Array | str] = []
    for number, (field, child) in enumerate(zip(array.type, array.flatten(), strict=True)):
        key = json_strings(pa.array([field.name])).to_pylist()[0]
        parts += [("{" if number == 0 else ",") + key + ":", json_text(child)]
    if not parts:
        text = pa.array(["{}"] * len(array), pa.string())
    else:
        parts.append("}")
        text = pc.binary_join_element_wise(*parts, "", null_handling="replace", null_replacement="null")
    return pc.if_else(pc.is_valid(array), text, pa.scalar(None, pa.string()))
