"""Rows → documents: cleansing and field mapping, as pure functions on frames."""

from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pytest

from sync_pipeline.extract import ColumnInfo, arrow_schema
from sync_pipeline.specs import parse_specs
from sync_pipeline.transform import (
    build_plan,
    document_ids,
    frame_to_documents,
    index_mapping,
    record_batch_to_frame,
)

SPEC = """
specs:
  - name: s
    source:
      table: t
      primary_key: {key}
      updated_at: updated_at
      soft_delete: deleted
    target: {{index: s}}
    partitions: {{start: "2026-01-01"}}
    naive_timezone: Asia/Shanghai
    fields:
      title: {{cleanse: [trim, empty_to_null]}}
      code: {{cleanse: [lowercase]}}
      cat: {{rename: category, type: keyword}}
      secret: {{drop: true}}
"""

COLUMNS = [
    ColumnInfo("id", "int8"),
    ColumnInfo("title", "text"),
    ColumnInfo("code", "varchar"),
    ColumnInfo("cat", "text"),
    ColumnInfo("secret", "text"),
    ColumnInfo("price", "numeric"),
    ColumnInfo("rating", "float8"),
    ColumnInfo("updated_at", "timestamptz"),
    ColumnInfo("local_time", "timestamp"),
    ColumnInfo("day", "date"),
    ColumnInfo("attrs", "jsonb"),
    ColumnInfo("tags", "text", is_array=True),
    ColumnInfo("deleted", "bool"),
]


def spec(key: str = "id"):
    return parse_specs(SPEC.format(key=key))[0]


def frame(rows: list[dict]) -> pd.DataFrame:
    schema = arrow_schema(COLUMNS)
    batch = pa.RecordBatch.from_pylist(rows, schema=schema)
    return record_batch_to_frame(batch)


def row(**overrides):
    base = {
        "id": 1,
        "title": "  青花瓷茶杯  ",
        "code": "ABC",
        "cat": "Tea",
        "secret": "s3cret",
        "price": "12.50",
        "rating": 4.5,
        "updated_at": datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC),
        "local_time": datetime(2026, 3, 1, 8, 0, 0),
        "day": datetime(2026, 3, 1).date(),
        "attrs": '{"color": "蓝色", "dims": {"w": 2}}',
        "tags": '["new", "热卖"]',
        "deleted": False,
    }
    return base | overrides


def test_cleansing_and_mapping_of_one_row():
    plan = build_plan(spec(), COLUMNS)
    batch = frame_to_documents(frame([row()]), plan)
    assert batch.ids == ["1"]
    assert batch.deleted == [False]
    assert batch.documents[0] == {
        "id": 1,
        "title": "青花瓷茶杯",
        "code": "abc",
        "category": "Tea",
        "price": 12.5,
        "rating": 4.5,
        "updated_at": "2026-03-01T08:30:15.123456Z",
        "local_time": "2026-03-01T00:00:00.000000Z",  # Asia/Shanghai → UTC
        "day": "2026-03-01",
        "attrs": {"color": "蓝色", "dims": {"w": 2}},
        "tags": ["new", "热卖"],
        "deleted": False,
    }


@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [
        ({"title": "   "}, "title", None),  # trim then empty → null
        ({"title": None}, "title", None),
        ({"rating": float("nan")}, "rating", None),
        ({"rating": float("inf")}, "rating", None),
        ({"price": None}, "price", None),
        ({"price": "1234567890.99"}, "price", 1234567890.99),
        ({"updated_at": None}, "updated_at", None),
        ({"attrs": None}, "attrs", None),
        ({"attrs": "[1, 2]"}, "attrs", [1, 2]),
        ({"tags": None}, "tags", None),
        ({"cat": ""}, "category", ""),  # no cleanse configured: kept as is
    ],
)
def test_cleansing_rules(overrides, field, expected):
    plan = build_plan(spec(), COLUMNS)
    doc = frame_to_documents(frame([row(**overrides)]), plan).documents[0]
    assert doc[field] == expected


def test_soft_deleted_rows_are_flagged():
    plan = build_plan(spec(), COLUMNS)
    batch = frame_to_documents(frame([row(id=1), row(id=2, deleted=True), row(id=3, deleted=None)]), plan)
    assert batch.deleted == [False, True, False]


def test_dropped_columns_never_reach_documents():
    plan = build_plan(spec(), COLUMNS)
    doc = frame_to_documents(frame([row()]), plan).documents[0]
    assert "secret" not in doc
    assert "s3cret" not in repr(doc)


def test_composite_ids_are_unambiguous_json():
    df = pd.DataFrame({"a": ["x|y", "x"], "b": [1, "y|1"]})
    assert document_ids(df, ["a", "b"]) == ['["x|y",1]', '["x","y|1"]']
    assert document_ids(df, ["a"]) == ["x|y", "x"]


def test_mapping_is_explicit_and_inferred_from_postgres_types():
    properties = index_mapping(build_plan(spec(), COLUMNS))["properties"]
    assert properties["id"] == {"type": "long"}
    assert properties["title"]["type"] == "text"
    assert properties["title"]["fields"]["keyword"]["type"] == "keyword"
    assert properties["category"] == {"type": "keyword"}
    assert properties["price"] == {"type": "double"}
    assert properties["updated_at"] == {"type": "date"}
    assert properties["day"] == {"type": "date", "format": "strict_date"}
    assert properties["attrs"] == {"type": "object"}
    assert properties["tags"] == {"type": "keyword"}
    assert properties["deleted"] == {"type": "boolean"}
    assert "secret" not in properties


def test_text_primary_key_is_mapped_as_keyword_for_sorting():
    columns = [
        ColumnInfo("code", "text"),
        ColumnInfo("updated_at", "timestamptz"),
        ColumnInfo("deleted", "bool"),
    ]
    properties = index_mapping(build_plan(spec(key="code"), columns))["properties"]
    assert properties["code"] == {"type": "keyword"}


def test_many_rows_keep_order_and_alignment():
    plan = build_plan(spec(), COLUMNS)
    rows = [row(id=i, title=f" t{i} ") for i in range(1000)]
    batch = frame_to_documents(frame(rows), plan)
    assert batch.ids == [str(i) for i in range(1000)]
    assert [d["title"] for d in batch.documents] == [f"t{i}" for i in range(1000)]


def test_naive_timestamps_in_a_dst_gap_or_overlap_resolve_instead_of_failing():
    text = SPEC.format(key="id").replace("naive_timezone: Asia/Shanghai", "naive_timezone: Europe/Berlin")
    plan = build_plan(parse_specs(text)[0], COLUMNS)
    skipped = row(local_time=datetime(2026, 3, 29, 2, 30))  # clocks jump 02:00 → 03:00
    repeated = row(id=2, local_time=datetime(2026, 10, 25, 2, 30))  # 02:00–03:00 happens twice
    docs = frame_to_documents(frame([skipped, repeated]), plan).documents
    assert docs[0]["local_time"] == "2026-03-29T01:00:00.000000Z"
    assert docs[1]["local_time"] == "2026-10-25T00:30:00.000000Z"  # the earlier of the two


def test_unknown_naive_timezone_is_a_spec_error():
    from sync_pipeline.specs import SpecError

    with pytest.raises(SpecError, match="naive_timezone: Value error, unknown time zone 'Mars/Olympus'"):
        parse_specs(SPEC.format(key="id").replace("Asia/Shanghai", "Mars/Olympus"))
