"""One staged column → its document values, in Arrow compute kernels (core/documents/build.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from sync_pipeline.core.sql.columns import ColumnInfo
from sync_pipeline.core.sql.timestamps import iso_utc, utc_from_naive


@dataclass(frozen=True)
class FieldPlan:
    column: str
    name: str
    column_info: ColumnInfo
    es_type: str
    cleanse: tuple[str, ...]
    numeric: str | None = None  # a numeric column's form: double, string or scaled_long
    numeric_scale: int = 0  # N of scaled_long(N)
    indexed: bool = True  # False: kept in _source only (JSON whose values fit no one field type)


def cleanse_array(array: pa.Array, field: FieldPlan, naive_timezone: str) -> pa.Array:
    """One staged column → its document values (JSON columns stay JSON text)."""
    info = field.column_info
    if info.staging == "json":
        return array
    if field.numeric == "string":
        return array  # PostgreSQL's exact text (NaN stays "NaN": it is the value)
    if field.numeric == "scaled_long":
        return _scaled(array, field.numeric_scale)
    if info.pg_type == "numeric":
        # Decimal text → the nearest double (Arrow parses it correctly rounded)
        array = pc.cast(array, pa.float64())
    if info.pg_type in ("float4", "float8", "numeric"):
        return pc.if_else(pc.is_finite(array), array, pa.scalar(None, pa.float64()))  # NaN/±Inf: not JSON
    if info.pg_type in ("timestamptz", "timestamp"):
        if info.pg_type == "timestamp":
            array = utc_from_naive(array, naive_timezone)
        return iso_utc(array)
    if info.pg_type == "date":
        return pc.cast(array, pa.string())  # YYYY-MM-DD
    if pa.types.is_string(array.type):
        for step in field.cleanse:
            if step == "trim":
                array = pc.utf8_trim_whitespace(array)
            elif step == "lowercase":
                array = pc.utf8_lower(array)
            elif step == "empty_to_null":
                array = pc.if_else(pc.equal(array, ""), pa.scalar(None, array.type), array)
    return array


_DECIMAL = r"^(?P<sign>-?)(?P<whole>[0-9]+)(?:\.(?P<fraction>[0-9]*))?$"
_LONG_MAX = "9223372036854775807"


def _scaled(text: pa.Array, digits: int) -> pa.Array:
    """Numeric text × 10^digits, by moving the decimal point in the text: never through a float.

    An exact result is an integer's digits; one with digits left below the point keeps them
    ("0.125" at 2 → "12.5") so that the long field refuses it instead of truncating. NaN and
    ±Infinity (no decimal) become null, as they do for doubles.
    """
    parts = pc.extract_regex(text, _DECIMAL)
    fraction = pc.utf8_rpad(pc.struct_field(parts, "fraction"), width=digits, padding="0")
    rest = pc.utf8_rtrim(pc.utf8_slice_codeunits(fraction, digits), "0")  # trailing zeros lose nothing
    whole = pc.utf8_ltrim(
        pc.binary_join_element_wise(
            pc.struct_field(parts, "whole"), pc.utf8_slice_codeunits(fraction, 0, digits), ""
        ),
        "0",
    )
    whole = pc.if_else(pc.equal(whole, ""), "0", whole)
    zero = pc.and_(pc.equal(whole, "0"), pc.equal(rest, ""))
    signed = pc.binary_join_element_wise(pc.if_else(zero, "", pc.struct_field(parts, "sign")), whole, "")
    scaled = pc.if_else(pc.equal(rest, ""), signed, pc.binary_join_element_wise(signed, rest, "."))
    return pc.if_else(pc.is_valid(parts), scaled, pa.scalar(None, pa.string()))


def exact_longs(scaled: pa.Array) -> pa.Array:
    """Which `_scaled` texts are integers a long holds (-2^63 itself is left out, for brevity)."""
    magnitude = pc.utf8_ltrim(scaled, "-")
    length = pc.utf8_length(magnitude)
    fits = pc.or_(pc.less(length, 19), pc.and_(pc.equal(length, 19), pc.less_equal(magnitude, _LONG_MAX)))
    return pc.and_(pc.match_substring_regex(scaled, r"^-?[0-9]+$"), fits)
