"""Spec → SQL: the keyset pages, compiled for PostgreSQL without a server."""

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from sync_pipeline.core.specs import parse_specs
from sync_pipeline.io.postgres import ColumnInfo, Window, page_query


def _spec(source: str, key: str = "id"):
    return parse_specs(
        f"""
specs:
  - name: s
    source:
      {source}
      primary_key: {key}
      updated_at: updated_at
    target: {{index: s}}
    partitions: {{start: "2026-01-01"}}
"""
    )[0]


COLUMNS = [
    ColumnInfo("id", "int8"),
    ColumnInfo("updated_at", "timestamptz"),
    ColumnInfo("price", "numeric"),
    ColumnInfo("attrs", "jsonb"),
    ColumnInfo("tags", "text", is_array=True),
]


def sql(query: sa.Select) -> str:
    return str(query.compile(dialect=postgresql.dialect()))


def test_window_page_is_a_keyset_on_updated_at_and_key_without_offset():
    window = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    text = sql(page_query(_spec("table: items"), COLUMNS, window, [datetime.now(UTC), 5], 100))
    assert "OFFSET" not in text.upper()
    assert "(items.updated_at, items.id) > (%(after_0)s, %(after_1)s)" in text
    assert "items.updated_at >= %(window_start)s" in text
    assert "items.updated_at < %(window_end)s" in text
    assert "LIMIT %(param_1)s" in text
    assert "ORDER BY items.updated_at, items.id" in text


def test_open_window_sides_add_no_bound():
    text = sql(page_query(_spec("table: items"), COLUMNS, Window(None, None), None, 10))
    assert "window_start" not in text and "window_end" not in text


def test_null_updated_at_pass_pages_by_key_only():
    text = sql(page_query(_spec("table: items"), COLUMNS, Window(None, None), [7], 10, "null_updated_at"))
    assert "items.updated_at IS NULL" in text
    assert "(items.id) > (%(after_0)s)" in text
    assert "ORDER BY items.id" in text


def test_json_arrays_and_numeric_are_staged_as_text():
    text = sql(page_query(_spec("table: items"), COLUMNS, Window(None, None), None, 10))
    assert "CAST(items.price AS TEXT) AS price" in text
    assert "CAST(items.attrs AS TEXT) AS attrs" in text
    assert "CAST(to_jsonb(items.tags) AS TEXT) AS tags" in text


def test_identifiers_from_config_are_quoted_not_formatted():
    hostile = 'items"; DROP TABLE users; --'
    spec = _spec(f"table: '{hostile}'")
    text = sql(page_query(spec, COLUMNS, Window(None, None), None, 10))
    assert 'FROM "items""; DROP TABLE users; --"' in text


def test_schema_qualified_table_is_quoted_per_part():
    text = sql(page_query(_spec("table: Sales.Orders"), COLUMNS, Window(None, None), None, 10))
    assert 'FROM "Sales"."Orders"' in text


def test_query_sources_are_wrapped_as_a_subquery():
    spec = _spec("query: SELECT p.id, p.updated_at FROM p JOIN c ON c.id = p.cid")
    text = sql(page_query(spec, COLUMNS[:2], Window(None, None), None, 10))
    assert "FROM (SELECT p.id, p.updated_at FROM p JOIN c ON c.id = p.cid) AS src" in text
    assert "ORDER BY src.updated_at, src.id" in text


def test_text_keys_sort_bytewise_like_elasticsearch_keywords():
    columns = [ColumnInfo("code", "text"), ColumnInfo("updated_at", "timestamptz")]
    text = sql(page_query(_spec("table: items", key="code"), columns, None, None, 10, "by_key"))
    assert 'ORDER BY items.code COLLATE "C"' in text


def _literal(query: sa.Select) -> str:
    return str(query.compile(dialect=postgresql.psycopg.dialect(), compile_kwargs={"literal_binds": True}))


def test_a_full_window_read_is_one_unordered_statement_with_the_nulls_it_owns():
    from sync_pipeline.io.postgres import window_select

    spec = _spec("table: shop.items")
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    middle = _literal(window_select(spec, COLUMNS, Window(start, end)))
    assert "updated_at >= '2026-03-01 00:00:00+00:00' AND" in middle
    assert "updated_at < '2026-03-02 00:00:00+00:00'" in middle
    assert "ORDER BY" not in middle and "LIMIT" not in middle and "IS NULL" not in middle
    first = _literal(window_select(spec, COLUMNS, Window(None, end, include_null_updated_at=True)))
    assert "updated_at < '2026-03-02 00:00:00+00:00' OR shop.items.updated_at IS NULL" in first
    everything = _literal(window_select(spec, COLUMNS, Window(None, None, include_null_updated_at=True)))
    assert "WHERE" not in everything
    assert "CAST(to_jsonb(shop.items.tags) AS TEXT)" in everything  # staged as in the keyset pages
