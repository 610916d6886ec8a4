"""Values that used to drift silently (json text, wide numerics, JSON scalars), the replica count a
load leaves behind, and keys verify cannot merge on. Integration tests use the real servers."""

import re
from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pytest

from sync_pipeline.apps.cli.runner import run_sync, run_verify
from sync_pipeline.core.columns import ColumnInfo, arrow_schema, columns_of, json_es_type
from sync_pipeline.core.documents import (
    batch_to_bulk,
    batch_to_documents,
    build_plan,
    key_order_problems,
)
from sync_pipeline.core.index_mapping import index_mapping
from sync_pipeline.core.relations import NestedField, nested_es_type, value_sql
from sync_pipeline.core.specs import SpecError, parse_specs
from sync_pipeline.core.sql import SourceError, staged_column
from sync_pipeline.ops.binding import check_numeric_rules

from .conftest import indexed

integration = pytest.mark.integration

WHEN = "2026-02-10 08:00:00+00"


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


def _with_fields(scenario, *lines: str):
    """The scenario's spec with more `fields:` entries (the block ends the spec text)."""
    text = scenario.spec_text() + "".join(f"      {line}\n" for line in lines)
    return parse_specs(text, origin="test")[0]


def _field_mapping(es, index: str) -> dict:
    return next(iter(es.indices.get_mapping(index=index).body.values()))["mappings"]["properties"]


# --- 5a: json text is one line in the bulk body --------------------------------------------------


def test_json_is_staged_through_jsonb_so_it_is_one_line():
    # (NULL where the text holds \u0000, which jsonb cannot: core/poison.py dead-letters the row)
    staged = staged_column(ColumnInfo("raw", "json"))
    assert staged.startswith("CASE WHEN NOT (")
    assert staged.endswith('THEN CAST(CAST("raw" AS jsonb) AS TEXT) END AS "raw"')
    assert staged_column(ColumnInfo("doc", "jsonb")) == 'CAST("doc" AS TEXT) AS "doc"'


@integration
def test_json_text_with_newlines_syncs_and_verifies(scenario, insert_rows, es):
    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN raw json")
    insert_rows(range(1, 4), WHEN)
    scenario.execute(
        f"""UPDATE {scenario.table} SET raw = CAST(:raw AS json) WHERE id < 3""",
        {"raw": '{\n  "a": "line\\nbreak",\n  "b": [1,\n 2],\n  "b": 3\n}'},
    )
    spec = scenario.spec()

    summary = run_sync([spec], spec)

    assert summary.success, summary.error
    assert (summary.indexed, summary.dead_lettered) == (3, 0)
    docs = indexed(es, scenario.index)
    assert docs["1"]["raw"] == {"a": "line\nbreak", "b": 3}  # jsonb keeps the last duplicate key
    assert docs["3"]["raw"] is None
    (report,) = run_verify([spec], [spec])
    assert report.ok, report.lines()


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


@integration
def test_wide_numerics_reach_elasticsearch_exactly(scenario, insert_rows, es):
    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN amount numeric, ADD COLUMN wei numeric(78, 0)")
    insert_rows([1, 2], WHEN)
    scenario.execute(
        f"UPDATE {scenario.table} SET amount = 12345678901234567.89, "
        "wei = 123456789012345678901234567890 WHERE id = 1"
    )
    spec = scenario.spec()

    assert run_sync([spec], spec).success

    docs = indexed(es, scenario.index)
    assert docs["1"]["amount"] == "12345678901234567.89"
    assert docs["1"]["wei"] == "123456789012345678901234567890"
    assert docs["1"]["price"] == 19.9  # numeric(10, 2) still fits a double
    mapping = _field_mapping(es, scenario.index)
    assert mapping["amount"]["type"] == "keyword" and mapping["price"]["type"] == "double"
    (report,) = run_verify([spec], [spec])
    assert report.ok, report.lines()


@integration
def test_scaled_long_lands_exact_values_and_dead_letters_the_rest(scenario, insert_rows, es):
    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN amount numeric")
    insert_rows([1, 2], WHEN)
    scenario.execute(f"UPDATE {scenario.table} SET amount = 12345678901234567.89 WHERE id = 1")
    scenario.execute(f"UPDATE {scenario.table} SET amount = 0.125 WHERE id = 2")
    spec = _with_fields(scenario, "amount: {numeric: scaled_long(2)}")

    summary = run_sync([spec], spec)

    assert (summary.indexed, summary.dead_lettered) == (1, 1)
    assert indexed(es, scenario.index)["1"]["amount"] == 1234567890123456789
    assert _field_mapping(es, scenario.index)["amount"]["type"] == "long"


@integration
def test_verify_sees_a_double_that_lost_digits(scenario, insert_rows, es):
    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN amount numeric")
    insert_rows([1, 2], WHEN)
    scenario.execute(f"UPDATE {scenario.table} SET amount = 12345678901234567.89 WHERE id = 1")
    scenario.execute(f"UPDATE {scenario.table} SET amount = 0.1 WHERE id = 2")
    spec = _with_fields(scenario, "amount: {numeric: double}")
    assert run_sync([spec], spec).success

    (report,) = run_verify([spec], [spec])

    assert report.mismatched == 1, report.lines()
    assert [(m.doc_id, m.fields) for m in report.mismatches] == [("1", ["amount"])]


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


@integration
def test_json_scalars_and_arrays_of_scalars_are_not_dead_lettered(scenario, insert_rows, es):
    scenario.execute(
        f"ALTER TABLE {scenario.table} ADD COLUMN nums jsonb, ADD COLUMN label json, ADD COLUMN mixed jsonb"
    )
    insert_rows(range(1, 5), WHEN)
    values = [("[1, 2.5]", '"red"', '{"a": 1}'), ("[]", "5", "[1, 2]"), ("3", "true", '"x"'), (None,) * 3]
    for i, (nums, label, mixed) in enumerate(values, 1):
        scenario.execute(
            f"UPDATE {scenario.table} SET nums = CAST(:n AS jsonb), label = CAST(:l AS json), "
            "mixed = CAST(:m AS jsonb) WHERE id = :id",
            {"n": nums, "l": label, "m": mixed, "id": i},
        )
    spec = scenario.spec()

    summary = run_sync([spec], spec)

    assert (summary.indexed, summary.dead_lettered) == (4, 0), summary
    mapping = _field_mapping(es, scenario.index)
    assert mapping["nums"]["type"] == "double" and mapping["label"]["type"] == "text"
    assert mapping["mixed"] == {"type": "object", "enabled": False}
    assert mapping["payload"]["properties"]  # objects stay objects
    docs = indexed(es, scenario.index)
    assert (docs["1"]["nums"], docs["2"]["label"], docs["3"]["mixed"]) == ([1, 2.5], 5, "x")
    (report,) = run_verify([spec], [spec])
    assert report.ok, report.lines()


# --- 6: a load leaves the replica count as it found it --------------------------------------------


@integration
def test_a_large_load_restores_the_replicas_an_operator_set(scenario, insert_rows, es):
    insert_rows([1], WHEN)
    spec = scenario.spec(batch_size="10")
    assert run_sync([spec], spec).success  # creates the index with the spec's 0 replicas
    es.indices.put_settings(index=scenario.index, settings={"index": {"number_of_replicas": 1}})
    insert_rows(range(2, 36), WHEN)

    summary = run_sync([spec], spec)

    assert summary.success and summary.batches >= 2
    settings = es.indices.get_settings(index=scenario.index, name="index.number_of_replicas").body
    assert {v["settings"]["index"]["number_of_replicas"] for v in settings.values()} == {"1"}


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


@integration
def test_verify_refuses_an_enum_key_naming_spec_and_column(scenario, es):
    kind = f"{scenario.table}_kind"
    scenario.execute(f"DROP TABLE {scenario.table}")
    scenario.execute(f"CREATE TYPE {kind} AS ENUM ('zebra', 'apple')")
    try:
        scenario.execute(
            f"CREATE TABLE {scenario.table} (id {kind} PRIMARY KEY, title text, updated_at timestamptz)"
        )
        scenario.execute(
            f"INSERT INTO {scenario.table} VALUES ('zebra', 'z', '{WHEN}'), ('apple', 'a', '{WHEN}')"
        )
        spec = scenario.spec()
        assert run_sync([spec], spec).success
        with pytest.raises(SourceError, match=rf"spec '{spec.name}'.*'id'.*enum"):
            run_verify([spec], [spec])
    finally:
        scenario.execute(f"DROP TABLE IF EXISTS {scenario.table}")
        scenario.execute(f"DROP TYPE IF EXISTS {kind}")


@integration
def test_verify_refuses_a_cleansed_key_instead_of_reporting_false_drift(scenario, es):
    scenario.execute(f"DROP TABLE {scenario.table}")
    scenario.execute(
        f"CREATE TABLE {scenario.table} (id text PRIMARY KEY, title text, updated_at timestamptz)"
    )
    scenario.execute(f"INSERT INTO {scenario.table} VALUES ('B', 'b', '{WHEN}'), ('a', 'a', '{WHEN}')")
    spec = _with_fields(scenario, "id: {cleanse: [lowercase]}")
    assert run_sync([spec], spec).success

    with pytest.raises(SourceError, match=rf"spec '{spec.name}'.*'id'.*cleansed"):
        run_verify([spec], [spec])
