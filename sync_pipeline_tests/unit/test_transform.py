"""Rows → documents: cleansing and field mapping, as pure functions on Arrow record batches."""

from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pytest

from sync_pipeline.core.documents.build import (
    batch_to_bulk,
    batch_to_documents,
    build_plan,
)
from sync_pipeline.core.documents.index_mapping import index_mapping
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.core.sql.columns import ColumnInfo, arrow_schema

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
    ColumnInfo("price", "numeric", precision=12, scale=2),  # fits a double (wider: test_values_settings)
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


def batch(rows: list[dict]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(rows, schema=arrow_schema(COLUMNS))


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
    docs = batch_to_documents(batch([row()]), plan)
    assert docs.ids == ["1"]
    assert docs.deleted == [False]
    assert docs.documents[0] == {
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
    doc = batch_to_documents(batch([row(**overrides)]), plan).documents[0]
    assert doc[field] == expected


def test_soft_deleted_rows_are_flagged():
    plan = build_plan(spec(), COLUMNS)
    docs = batch_to_documents(batch([row(id=1), row(id=2, deleted=True), row(id=3, deleted=None)]), plan)
    assert docs.deleted == [False, True, False]


def test_dropped_columns_never_reach_documents():
    plan = build_plan(spec(), COLUMNS)
    doc = batch_to_documents(batch([row()]), plan).documents[0]
    assert "secret" not in doc
    assert "s3cret" not in repr(doc)


def test_composite_ids_are_unambiguous_json():
    from sync_pipeline.core.sql.keys import canonical_texts, ids_from_texts

    keys = pa.RecordBatch.from_pydict({"a": ["x|y", "x"], "b": ["1", "y|1"], "n": [1, 20]})
    a, b, n = ColumnInfo("a", "text"), ColumnInfo("b", "text"), ColumnInfo("n", "int8")

    def ids(*columns):
        return ids_from_texts(canonical_texts(keys, columns), columns).to_pylist()

    assert ids(a, b) == ['["x|y","1"]', '["x","y|1"]']
    assert ids(a) == ["x|y", "x"]
    assert ids(n) == ["1", "20"]
    assert ids(n, a) == ['[1,"x|y"]', '[20,"x"]']


def test_mapping_is_explicit_and_inferred_from_postgres_types():
    properties = index_mapping(build_plan(spec(), COLUMNS))["properties"]
    assert properties["id"] == {"type": "long"}
    assert properties["title"]["type"] == "text"
    assert properties["title"]["fields"]["keyword"]["type"] == "keyword"
    assert properties["category"] == {"type": "keyword"}
    assert properties["price"] == {"type": "double"}
    assert properties["updated_at"] == {"type": "date"}
    assert properties["day"] == {"type": "date", "format": "strict_date"}
    assert properties["attrs"] == {"type": "object", "dynamic": "true"}  # its keys are data
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
    docs = batch_to_documents(batch(rows), plan)
    assert docs.ids == [str(i) for i in range(1000)]
    assert [d["title"] for d in docs.documents] == [f"t{i}" for i in range(1000)]


def test_naive_timestamps_in_a_dst_gap_or_overlap_resolve_instead_of_failing():
    text = SPEC.format(key="id").replace("naive_timezone: Asia/Shanghai", "naive_timezone: Europe/Berlin")
    plan = build_plan(parse_specs(text)[0], COLUMNS)
    skipped = row(local_time=datetime(2026, 3, 29, 2, 30))  # clocks jump 02:00 → 03:00
    repeated = row(id=2, local_time=datetime(2026, 10, 25, 2, 30))  # 02:00–03:00 happens twice
    docs = batch_to_documents(batch([skipped, repeated]), plan).documents
    assert docs[0]["local_time"] == "2026-03-29T01:00:00.000000Z"
    assert docs[1]["local_time"] == "2026-10-25T00:30:00.000000Z"  # the earlier of the two


def test_unknown_naive_timezone_is_a_spec_error():
    from sync_pipeline.core.spec.model import SpecError

    with pytest.raises(SpecError, match="naive_timezone: unknown time zone 'Mars/Olympus'"):
        parse_specs(SPEC.format(key="id").replace("Asia/Shanghai", "Mars/Olympus"))


def _parse_bulk(body) -> list[tuple[str, dict, dict | None]]:
    assert len(body.starts) == len(body) + 1 and body.starts[-1] == len(body.data)
    lines = iter(body.data.splitlines())
    parsed = []
    for line in lines:
        op, meta = next(iter(orjson.loads(line).items()))
        parsed.append((op, meta, None if op == "delete" else orjson.loads(next(lines))))
    return parsed


def test_bulk_lines_carry_the_same_documents_ids_and_versions_as_the_dicts():
    plan = build_plan(spec(), COLUMNS)
    rows = [row(id=1), row(id=2, deleted=True), row(id=3, attrs=None, tags='["a"]', title="  x "), row(id=4)]
    chunk = batch_to_bulk(batch(rows), plan)
    docs = batch_to_documents(batch(rows), plan)

    parsed = _parse_bulk(chunk.body)
    assert (chunk.docs, chunk.deletes) == (4, 1)
    assert [meta["_id"] for _, meta, _ in parsed] == docs.ids
    assert [op for op, _, _ in parsed] == ["index", "delete", "index", "index"]
    assert [meta["version"] for _, meta, _ in parsed] == docs.versions
    assert {meta["version_type"] for _, meta, _ in parsed} == {"external_gte"}
    for (_op, _, source), doc, deleted in zip(parsed, docs.documents, docs.deleted, strict=True):
        assert source == (None if deleted else doc)


def test_bulk_lines_embed_json_columns_verbatim_and_never_name_an_index():
    plan = build_plan(spec(), COLUMNS)
    body = batch_to_bulk(batch([row(attrs='{"b": 1, "a": [true, null]}')]), plan).body.data
    assert b'"attrs":{"b": 1, "a": [true, null]}' in body  # PostgreSQL's text, not re-serialised
    assert b"_index" not in body  # the index is named by the request, so staged files are portable


def test_a_rebuild_leaves_soft_deleted_rows_out_of_the_bulk_lines():
    plan = build_plan(spec(), COLUMNS)
    chunk = batch_to_bulk(batch([row(id=1), row(id=2, deleted=True)]), plan, include_deletes=False)
    assert [meta["_id"] for _, meta, _ in _parse_bulk(chunk.body)] == ["1"]
    assert (chunk.docs, chunk.deletes) == (1, 0)


@pytest.mark.parametrize(
    "ids",
    [["1", "22", "333"], ['a"b', "c\\d", "tab\tnew\nline", "\x01ctl", "青花", "plain"], ['["x|y",1]']],
)
def test_batch_action_lines_are_the_per_document_action_lines(ids):
    import pyarrow as pa
    import pyarrow.compute as pc

    from sync_pipeline.core.load.bulk import action_array, action_line

    versions = list(range(len(ids)))
    deleted = [i % 2 == 1 for i in range(len(ids))]
    rows = zip(ids, versions, deleted, strict=True)
    expected = [action_line("delete" if d else "index", i, v) for i, v, d in rows]
    assert pc.cast(action_array(ids, versions, deleted), pa.binary()).to_pylist() == expected
    assert orjson.loads(expected[0]) == {
        "delete" if deleted[0] else "index": {"_id": ids[0], "version": 0, "version_type": "external_gte"}
    }


def test_timestamps_are_iso_utc_with_microseconds_whatever_the_year():
    from sync_pipeline.core.sql.timestamps import iso_utc

    values = [datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC), None]
    assert iso_utc(pa.array(values, pa.timestamp("us", tz="UTC"))).to_pylist() == [
        "2026-03-01T08:30:15.123456Z",
        "0001-01-01T00:00:00.000000Z",
        None,
    ]


def test_timestamps_before_1970_and_at_the_end_of_the_range_keep_their_text():
    from sync_pipeline.core.sql.timestamps import iso_utc

    values = [
        datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    assert iso_utc(pa.array(values, pa.timestamp("us", tz="UTC"))).to_pylist() == [
        "1969-12-31T23:59:59.000001Z",
        "9999-12-31T23:59:59.999999Z",
    ]
    nanos = pa.array([1_700_000_000_123_456_789], pa.timestamp("ns", tz="UTC"))
    assert iso_utc(nanos).to_pylist() == ["2023-11-14T22:13:20.123456Z"]  # cut to microseconds


def test_json_strings_escape_what_a_slice_holds_and_only_that():
    from sync_pipeline.core.load.bulk import json_strings

    values = pa.array(['say "hi"', "plain", None, "tab\there", "back\\slash", "青花"])
    assert json_strings(values).to_pylist() == [
        None if v is None else orjson.dumps(v).decode() for v in values.to_pylist()
    ]
    # a slice sees only its own values' bytes: the quote before it does not matter
    assert json_strings(values.slice(1, 2)).to_pylist() == ['"plain"', None]
    assert json_strings(values.slice(5, 1)).to_pylist() == ['"青花"']
    assert json_strings(values.slice(3, 1)).to_pylist() == ['"tab\\there"']


def test_bulk_lines_without_deletes_are_the_lines_with_them_minus_the_deletes():
    plan = build_plan(spec(), COLUMNS)
    rows = [row(id=1), row(id=2, title='a "quoted"\ttitle'), row(id=3, attrs=None)]
    plain = batch_to_bulk(batch(rows), plan)
    mixed = batch_to_bulk(batch([*rows, row(id=4, deleted=True)]), plan)
    assert (plain.docs, plain.deletes, mixed.deletes) == (3, 0, 1)
    assert mixed.body.data.startswith(plain.body.data)
    assert list(plain.body.starts) == list(mixed.body.starts)[:-1]
