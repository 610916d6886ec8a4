"""Values that used to drift silently (json text, wide numerics, JSON scalars), the replica count a
load leaves behind, and keys verify cannot merge on: the pure parts (on the real servers:
integration/test_values_settings.py)."""

import re
from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pytest

from sync_pipeline.core.documents.build import (
    batch_to_bulk,
    batch_to_documents,
    build_plan,
    key_order_problems,
)
from sync_pipeline.core.documents.index_mapping import index_mapping
from sync_pipeline.core.spec.model import SpecError, parse_specs
from sync_pipeline.core.sql.columns import ColumnInfo, arrow_schema, columns_of, json_es_type
from sync_pipeline.core.sql.relations import NestedField, nested_es_type, value_sql
from sync_pipeline.core.sql.statements import SourceError, staged_column
from sync_pipeline.ops.binding import check_numeric_rules


def _spec(fields: str = "", key: str = "id", relations: str = ""):
    extra = f", relations: {relations}" if relations else ""
    return parse_specs(
        f"""
specs:
  - name: s
    source: {{table: t, primary_key: {key}, updated_at: updated_at{extra}}}
    target: {{index: s}}
    partitions: {{start: "2026-01-01"}}
    fields: {{{fields}}}
"""
    )[0]


# --- 5a: json text is one line in the bulk body --------------------------------------------------


def test_json_is_staged_through_jsonb_so_it_is_one_line():
    # (NULL where the text holds \u0000, which jsonb cannot: core/sql/poison.py dead-letters the row)
    staged = staged_column(ColumnInfo("raw", "json"))
    assert staged.startswith("CASE WHEN NOT (")
    assert staged.endswith('THEN CAST(CAST("raw" AS jsonb) AS TEXT) END AS "raw"')
    assert staged_column(ColumnInfo("doc", "jsonb")) == 'CAST("doc" AS TEXT) AS "doc"'


# --- 5b: numeric is exact unless the spec says otherwise -----------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("float", "'double', 'string' or 'scaled_long(N)'"),
        ("scaled_long(19)", "0 ≤ N ≤ 18"),
        ("scaled_long(x)", "'double', 'string' or 'scaled_long(N)'"),
    ],
)
def test_numeric_option_is_validated_precisely(value, message):
    with pytest.raises(SpecError, match=r"fields\.amount\.numeric: .*" + re.escape(message)):
        parse_specs(
            f"""
specs:
  - name: s
    source: {{table: t, primary_key: id, updated_at: updated_at}}
    target: {{index: s}}
    partitions: {{start: "2026-01-01"}}
    fields: {{amount: {{numeric: "{value}"}}}}
"""
        )


NUMERIC_COLUMNS = [
    ColumnInfo("id", "int8"),
    ColumnInfo("updated_at", "timestamptz"),
    ColumnInfo("narrow", "numeric", precision=15, scale=2),
    ColumnInfo("wide", "numeric", precision=16, scale=2),
    ColumnInfo("free", "numeric"),
    ColumnInfo("cents", "numeric"),
]


def _numeric_docs(values: dict, fields: str = "cents: {numeric: scaled_long(2)}"):
    plan = build_plan(_spec(fields), NUMERIC_COLUMNS)
    row = {"id": 1, "updated_at": datetime(2026, 2, 1, tzinfo=UTC)} | values
    batch = pa.RecordBatch.from_pylist([row], schema=arrow_schema(NUMERIC_COLUMNS))
    bulk = batch_to_bulk(batch, plan).body
    from_bulk = orjson.loads(bulk.doc(0)[1])
    from_dicts = batch_to_documents(batch, plan).documents[0]
    assert from_bulk == from_dicts  # the sync and verify/resync build the same document
    return plan, from_bulk


def test_numeric_defaults_to_double_only_when_the_declared_precision_fits_one():
    plan, doc = _numeric_docs({"narrow": "1234567890123.45", "wide": "12345678901234.56", "free": "0.10"})
    properties = index_mapping(plan)["properties"]
    assert properties["narrow"] == {"type": "double"}
    assert properties["wide"] == {"type": "keyword"} and properties["free"] == {"type": "keyword"}
    assert doc["narrow"] == 1234567890123.45
    assert doc["wide"] == "12345678901234.56" and doc["free"] == "0.10"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.34", 1234),
        ("-0.05", -5),
        ("7", 700),
        ("12.3400", 1234),  # trailing zeros are no digits lost
        ("92233720368547758.07", 9223372036854775807),
        ("0.001", "0.1"),  # a digit below the scale: a string, which the long field refuses
        ("92233720368547758.08", "9223372036854775808"),  # beyond a long: refused too
        ("NaN", None),
        (None, None),
    ],
)
def test_scaled_long_is_exact_or_refused_never_rounded(text, expected):
    plan, doc = _numeric_docs({"cents": text})
    assert doc["cents"] == expected
    assert index_mapping(plan)["properties"]["cents"] == {"type": "long", "coerce": False}


def test_related_numerics_follow_the_same_exact_safe_default():
    wide = NestedField(
        ColumnInfo("amount", "numeric"), "amount", nested_es_type(ColumnInfo("amount", "numeric"))
    )
    narrow = ColumnInfo("price", "numeric", precision=10, scale=2)
    assert (value_sql(wide, "r", "UTC"), wide.es_type) == ('CAST(r."amount" AS text)', "keyword")
    assert "float8" in value_sql(NestedField(narrow, "price", nested_es_type(narrow)), "r", "UTC")


def test_numeric_option_on_a_column_it_cannot_apply_to_is_refused():
    columns = [ColumnInfo("id", "int8"), ColumnInfo("title", "text"), ColumnInfo("updated_at", "timestamptz")]
    with pytest.raises(SourceError, match=r"spec 's'.*fields\.title\.numeric: column title is text"):
        check_numeric_rules(_spec("title: {numeric: string}"), columns)
    with pytest.raises(SourceError, match=r"fields\.reviews\.stars\.numeric: not supported"):
        reviews = "[{name: reviews, table: r, kind: one_to_many, on: {t_id: id}}]"
        check_numeric_rules(_spec("reviews.stars: {numeric: string}", relations=reviews), columns)


def test_staged_files_keep_the_declared_precision():
    assert columns_of(arrow_schema(NUMERIC_COLUMNS)) == NUMERIC_COLUMNS


# --- 5c: JSON columns are mapped as their values allow -------------------------------------------


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (set(), "object"),
        ({"object"}, "object"),
        ({"number"}, "double"),
        ({"boolean"}, "boolean"),
        ({"string"}, "text"),
        ({"string", "number", "boolean"}, "text"),
        ({"object", "number"}, None),
        ({"array"}, None),
    ],
)
def test_json_mapping_follows_the_kinds_of_values(kinds, expected):
    assert json_es_type(kinds) == expected


# --- 7: verify refuses keys whose order PostgreSQL and Elasticsearch disagree on ------------------


@pytest.mark.parametrize(
    ("column", "fields", "reason"),
    [
        (ColumnInfo("id", "citext"), "", "case-insensitively"),
        (ColumnInfo("id", "mood", is_enum=True), "", "declaration"),
        (ColumnInfo("id", "text"), "id: {cleanse: [lowercase]}", "cleansed"),
        (ColumnInfo("id", "numeric"), "", "keyword"),
        (ColumnInfo("id", "int8"), "id: {type: keyword}", "keyword"),
        (ColumnInfo("id", "inet"), "", "inet"),
    ],
)
def test_keys_verify_cannot_merge_on_are_named(column, fields, reason):
    plan = build_plan(_spec(fields), [column, ColumnInfo("updated_at", "timestamptz")])
    (problem,) = key_order_problems(plan)
    assert "'id'" in problem and reason in problem


@pytest.mark.parametrize(
    "column",
    [
        ColumnInfo("id", "int8"),
        ColumnInfo("id", "text"),
        ColumnInfo("id", "uuid"),
        ColumnInfo("id", "numeric", precision=12, scale=2),
        ColumnInfo("id", "timestamptz"),
    ],
)
def test_keys_verify_can_merge_on(column):
    plan = build_plan(_spec(), [column, ColumnInfo("updated_at", "timestamptz")])
    assert key_order_problems(plan) == []
