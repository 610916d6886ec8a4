"""Relations, fan-out, keys and versions as pure functions: spec validation and the SQL they build."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from sync_pipeline.core.cdc.fanout import parents_of, watched_tables
from sync_pipeline.core.spec.model import SpecError, parse_specs
from sync_pipeline.core.sql.columns import ColumnInfo
from sync_pipeline.core.sql.keys import (
    canonical_sql,
    canonical_texts,
    document_id,
    ids_from_texts,
    texts_from_id,
)
from sync_pipeline.core.sql.relations import (
    TableInfo,
    index_lookups,
    object_sql,
    plan_relation,
    relation_problems,
    relation_sql,
    unserved,
)
from sync_pipeline.core.sql.statements import keys_query, window_select
from sync_pipeline.core.sql.versions import VERSION_BASE, XIP_SLOTS
from sync_pipeline.core.windows import Window

SPEC = """
specs:
  - name: shop
    source:
      table: shop.products
      primary_key: id
      updated_at: updated_at
      relations:
        - name: category
          table: shop.categories
          kind: many_to_one
          on: {id: category_id}
          columns: [name]
          relations:
            - {name: department, table: shop.departments, kind: many_to_one, on: {id: department_id}}
        - name: tags
          table: shop.tags
          kind: many_to_many
          through: {table: shop.product_tags, on: {product_id: id}, to: {tag_id: id}}
          columns: [label]
    target: {index: shop}
    partitions: {start: "2026-01-01"}
    fields:
      category.name: {rename: title, cleanse: [trim]}
"""

TABLES = {
    "shop.categories": TableInfo(
        "shop.categories",
        (ColumnInfo("id", "int4"), ColumnInfo("name", "text"), ColumnInfo("department_id", "int4")),
        ("id",),
    ),
    "shop.departments": TableInfo(
        "shop.departments", (ColumnInfo("id", "int4"), ColumnInfo("name", "text")), ("id",)
    ),
    "shop.tags": TableInfo("shop.tags", (ColumnInfo("id", "int4"), ColumnInfo("label", "text")), ("id",)),
    "shop.product_tags": TableInfo(
        "shop.product_tags",
        (ColumnInfo("product_id", "int8"), ColumnInfo("tag_id", "int4")),
        ("product_id", "tag_id"),
    ),
}
ROOT = TableInfo(
    "shop.products",
    (ColumnInfo("id", "int8"), ColumnInfo("category_id", "int4"), ColumnInfo("updated_at", "timestamptz")),
    ("id",),
)


def plans(spec):
    return [plan_relation(spec, r, TABLES, r.name) for r in spec.source.relations]


def test_on_stays_a_key_in_yaml_and_relations_validate():
    (spec,) = parse_specs(SPEC)
    category = spec.source.relations[0]
    assert category.on == {"id": "category_id"}  # not {True: …}: YAML 1.1 reads `on` as a boolean
    assert [path for path, _ in spec.source.all_relations()] == ["category", "category.department", "tags"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("kind: many_to_one\n          on: {id: category_id}", "only for many_to_many"),
        ("columns: [label]", "needs `through"),
    ],
)
def test_relation_shapes_are_checked_where_they_are_written(change, message):
    text = SPEC.replace(
        "through: {table: shop.product_tags, on: {product_id: id}, to: {tag_id: id}}",
        "through: {table: shop.product_tags, on: {product_id: id}, to: {tag_id: id}}\n          " + change,
    )
    if change.startswith("columns"):
        text = SPEC.replace(
            "          through: {table: shop.product_tags, on: {product_id: id}, to: {tag_id: id}}\n", ""
        )
    with pytest.raises(SpecError) as caught:
        parse_specs(text)
    assert message in str(caught.value) and "source.relations[1]" in str(caught.value)


def test_the_version_key_is_refused_with_the_reason():
    text = SPEC.replace(
        "      updated_at: updated_at\n", "      updated_at: updated_at\n      version: v\n", 1
    )
    with pytest.raises(
        SpecError, match="no longer used: document versions come from the PostgreSQL snapshot"
    ):
        parse_specs(text)


def test_relation_problems_name_every_missing_table_and_column():
    (spec,) = parse_specs(SPEC.replace("columns: [label]", "columns: [label, colour]"))
    tables = {**TABLES, "shop.departments": None}
    problems = relation_problems(spec, ROOT, tables)
    assert any("shop.tags has no column colour" in p for p in problems)
    assert any("table shop.departments not found" in p for p in problems)


def test_relation_sql_is_a_correlated_subquery_ordered_by_the_related_key():
    (spec,) = parse_specs(SPEC)
    category, tags = plans(spec)
    text = relation_sql(category, "__sync_root", "UTC")
    assert (
        'FROM "shop"."categories" AS __sync_r1 WHERE __sync_r1."id" = __sync_root."category_id" '
        'ORDER BY __sync_r1."id" LIMIT 1' in text
    )
    assert "'title', regexp_replace(__sync_r1.\"name\"" in text  # dotted rename and cleanse
    assert 'FROM "shop"."departments" AS __sync_r2 WHERE __sync_r2."id" = __sync_r1."department_id"' in text
    text = relation_sql(tags, "__sync_root", "UTC")
    assert "ORDER BY __sync_r1.\"id\"), '[]'::json)" in text
    assert 'JOIN "shop"."tags" AS __sync_r1 ON __sync_t1."tag_id" = __sync_r1."id"' in text
    assert 'WHERE __sync_t1."product_id" = __sync_root."id"' in text


def test_a_window_read_joins_the_related_rows_of_its_window_and_key_lookups_stay_correlated():
    (spec,) = parse_specs(SPEC)
    category = plans(spec)[0]
    window = window_select(
        spec, list(ROOT.columns), Window(datetime(2026, 2, 1, tzinfo=UTC), None), plans(spec)
    )
    sql = window.sql
    assert "__sync_r1" not in sql  # no correlated subquery
    # category joined on its primary key: one row per value, no DISTINCT ON; its department inside it
    assert (
        "LEFT JOIN (SELECT __sync_x1.\"id\" AS __sync_j0, json_build_object('title', " in sql
        and ') AS __sync_a1 ON __sync_a1.__sync_j0 = __sync_root."category_id"' in sql
    )
    assert (
        'LEFT JOIN (SELECT __sync_x2."id" AS __sync_j0' in sql
        and "__sync_a2 ON __sync_a2.__sync_j0 = __sync_x1." in sql
    )
    # the related rows of the window's rows only, at each depth
    window_rows = '(SELECT __sync_w."category_id" FROM "shop"."products" AS __sync_w WHERE "updated_at" >= '
    assert f'WHERE (__sync_x1."id") IN {window_rows}' in sql
    assert (
        f'WHERE (__sync_x2."id") IN (SELECT __sync_g1."department_id" FROM "shop"."categories" AS __sync_g1 '
        f'WHERE (__sync_g1."id") IN {window_rows}' in sql
    )
    # tags through the join table, one array per product, by the tag's key
    assert (
        'FROM "shop"."product_tags" AS __sync_l3 '
        'JOIN "shop"."tags" AS __sync_x3 ON __sync_l3."tag_id" = __sync_x3."id"' in sql
    )
    assert 'GROUP BY __sync_l3."product_id") AS __sync_a3 ON __sync_a3.__sync_j0 = __sync_root."id"' in sql
    assert "coalesce(__sync_a3.__sync_v, '[]'::json)" in sql and 'ORDER BY __sync_x3."id")' in sql
    # a window of every row reads every related row: no filter
    assert (
        "__sync_w" not in window_select(spec, list(ROOT.columns), Window(None, None, True), plans(spec)).sql
    )
    lookup = keys_query(spec, list(ROOT.columns), [["1"]], plans(spec)).sql
    assert "LEFT JOIN" not in lookup and relation_sql(category, "__sync_root", "UTC") in lookup


def test_a_many_to_one_on_a_column_that_is_no_key_joins_the_first_row_by_key():
    (spec,) = parse_specs(SPEC.replace("on: {id: category_id}", "on: {department_id: category_id}"))
    sql = window_select(spec, list(ROOT.columns), Window(None, None, True), plans(spec)).sql
    assert (
        'SELECT DISTINCT ON (__sync_x1."department_id") __sync_x1."department_id" AS __sync_j0, ' in sql
        and 'ORDER BY __sync_x1."department_id", __sync_x1."id")' in sql
    )


def test_every_table_of_a_document_is_watched_with_what_leads_to_its_parent():
    (spec,) = parse_specs(SPEC)
    watched = {w.source: w for w in watched_tables(spec, ["id"], plans(spec))}
    assert set(watched) == {None, "category", "category.department", "tags", "tags#through"}
    assert watched["category.department"].link == ("id",)
    assert watched["tags#through"].link == ("product_id",)
    assert "department_id" in watched["category"].required  # what its child joins on


def test_a_grandchild_change_walks_up_the_chain_to_the_root_columns():
    (spec,) = parse_specs(SPEC)
    inner, match = parents_of(plans(spec), "category.department")
    assert match == ["category_id"]
    assert inner.startswith(
        'SELECT __sync_h1."id" FROM "shop"."categories" AS __sync_h1 WHERE (__sync_h1."department_id") IN ('
    )
    inner, match = parents_of(plans(spec), "tags")
    assert match == ["id"]
    assert '"shop"."product_tags"' in inner and "tag_id" in inner


def test_key_texts_are_the_same_in_sql_and_in_arrow():
    when = datetime(2026, 2, 1, 10, 0, 0, 1, tzinfo=UTC)
    batch = pa.RecordBatch.from_pydict(
        {"k": pa.array(["1.50"]), "t": pa.array([when], pa.timestamp("us", tz="UTC")), "n": [7]}
    )
    numeric, stamp, number = (
        ColumnInfo("k", "numeric"),
        ColumnInfo("t", "timestamptz"),
        ColumnInfo("n", "int8"),
    )
    texts = [t.to_pylist()[0] for t in canonical_texts(batch, [numeric, stamp, number])]
    assert texts == ["1.50", "2026-02-01T10:00:00.000001Z", "7"]
    assert "to_char((x) AT TIME ZONE 'UTC'" in canonical_sql(stamp, "x")
    ids = ids_from_texts(canonical_texts(batch, [number, numeric]), [number, numeric]).to_pylist()
    assert ids == ['[7,"1.50"]'] == [document_id(["7", "1.50"], [number, numeric])]
    assert texts_from_id('[7,"1.50"]', 2) == ["7", "1.50"]


def test_snapshot_versions_lie_above_every_epoch_microsecond_version():
    year_2100 = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
    assert year_2100 < VERSION_BASE
    assert VERSION_BASE <= VERSION_BASE + 10**9 * XIP_SLOTS < 2**63 and not year_2100 >= VERSION_BASE


def test_relation_lookups_no_index_serves_are_named_with_the_side_that_needs_them():
    spec = parse_specs(SPEC, origin="test")[0]
    lookups = index_lookups(plans(spec), "shop.products")
    # primary keys only, the usual state of a schema nobody indexed for search yet
    indexed = {
        "shop.products": [("id",)],
        "shop.categories": [("id",)],
        "shop.departments": [("id",)],
        "shop.tags": [("id",)],
        "shop.product_tags": [("product_id", "tag_id")],
    }
    missing = {(x.table, x.columns) for x in unserved(lookups, indexed)}
    # the fan-out sides: a category, department or tag change looks its documents up by these
    assert missing == {
        ("shop.products", ("category_id",)),
        ("shop.categories", ("department_id",)),
        ("shop.product_tags", ("tag_id",)),
    }
    # an index whose leading columns are the lookup's serves it; one starting elsewhere does not
    indexed["shop.product_tags"].append(("tag_id", "product_id"))
    indexed["shop.products"].append(("updated_at", "category_id"))
    indexed["shop.categories"].append(("", "department_id"))  # an expression first
    missing = {(x.table, x.columns) for x in unserved(lookups, indexed)}
    assert missing == {("shop.products", ("category_id",)), ("shop.categories", ("department_id",))}


def test_an_object_of_more_than_50_fields_is_merged_from_parts_as_json_takes_100_arguments():
    (spec,) = parse_specs(SPEC.replace("          columns: [name]\n", ""))
    wide = TableInfo(
        "shop.categories",
        (
            ColumnInfo("id", "int4"),
            ColumnInfo("department_id", "int4"),
            *(ColumnInfo(f"c{i}", "text") for i in range(60)),
        ),
        ("id",),
    )
    narrow = object_sql(plans(spec)[0], "c", "UTC", lambda child: "NULL")
    assert narrow.startswith("json_build_object('id', c.\"id\"") and "||" not in narrow
    category = plan_relation(spec, spec.source.relations[0], {**TABLES, "shop.categories": wide}, "category")
    merged = object_sql(category, "c", "UTC", lambda child: "NULL")
    parts = merged.split(" || ")
    assert len(parts) == 2 and all(part.startswith("jsonb_build_object(") for part in parts)
    assert merged.count("'c") == 60 and "'department', NULL" in parts[1]
