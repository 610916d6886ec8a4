"""Spec → SQL: the statements are plain text built without a server (core.sql.statements)."""

from datetime import UTC, datetime

from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.core.sql.columns import ColumnInfo
from sync_pipeline.core.sql.range_bounds import key_range_bound, window_estimate
from sync_pipeline.core.sql.statements import (
    KeyRange,
    keys_query,
    page_query,
    quote_ident,
    window_count_query,
    window_select,
)
from sync_pipeline.core.windows import Window


def _spec(source: str, key: str = "id", extra: str = ""):
    return parse_specs(
        f"""
specs:
  - name: s
    source:
      {source}
      primary_key: {key}
      updated_at: updated_at
{extra}
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


def test_window_page_is_a_keyset_on_updated_at_and_key_without_offset():
    window = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    after = [datetime.now(UTC), 5]
    statement = page_query(_spec("table: items"), COLUMNS, window, after, 100)
    text = statement.sql
    assert "OFFSET" not in text.upper()
    assert '(__sync_root."updated_at", __sync_root."id") > (%(after_0)s, %(after_1)s)' in text
    assert '"updated_at" >= CAST(%(window_start)s AS timestamptz)' in text
    assert '"updated_at" < CAST(%(window_end)s AS timestamptz)' in text
    assert text.endswith('ORDER BY __sync_root."updated_at", __sync_root."id" LIMIT 100')
    assert statement.params == {
        "window_start": window.start,
        "window_end": window.end,
        "after_0": after[0],
        "after_1": 5,
    }


def test_open_window_sides_add_no_bound():
    statement = page_query(_spec("table: items"), COLUMNS, Window(None, None), None, 10)
    assert "window_start" not in statement.sql and "window_end" not in statement.sql
    assert statement.params == {}


def test_null_updated_at_pass_pages_by_key_only():
    statement = page_query(_spec("table: items"), COLUMNS, Window(None, None), [7], 10, "null_updated_at")
    assert '"updated_at" IS NULL' in statement.sql
    assert '(__sync_root."id") > (%(after_0)s)' in statement.sql
    assert 'ORDER BY __sync_root."id" LIMIT' in statement.sql


def test_json_arrays_and_numeric_are_staged_as_text():
    text = page_query(_spec("table: items"), COLUMNS, Window(None, None), None, 10).sql
    assert 'CAST("price" AS TEXT) AS "price"' in text
    assert 'CAST("attrs" AS TEXT) AS "attrs"' in text
    assert 'CAST(to_jsonb("tags") AS TEXT) AS "tags"' in text


def test_identifiers_from_config_are_quoted_not_formatted():
    hostile = 'items"; DROP TABLE users; --'
    spec = _spec(f"table: '{hostile}'")
    text = page_query(spec, COLUMNS, Window(None, None), None, 10).sql
    assert 'FROM "items""; DROP TABLE users; --"' in text
    assert quote_ident('a"b') == '"a""b"'


def test_schema_qualified_table_is_quoted_per_part():
    text = page_query(_spec("table: Sales.Orders"), COLUMNS, Window(None, None), None, 10).sql
    assert 'FROM "Sales"."Orders"' in text


def test_query_sources_are_wrapped_as_a_subquery_with_their_percent_signs_kept():
    spec = _spec("query: SELECT p.id, p.updated_at FROM p JOIN c ON c.id = p.cid WHERE c.name LIKE 'a%'")
    text = page_query(spec, COLUMNS[:2], Window(None, None), None, 10).sql
    # psycopg reads % as a placeholder when parameters are given: the query's own ones double
    assert (
        "FROM (SELECT p.id, p.updated_at FROM p JOIN c ON c.id = p.cid WHERE c.name LIKE 'a%%') AS src"
        in text
    )
    assert 'ORDER BY src."updated_at", src."id"' in text
    # without parameters (the COPY read) the query goes as written
    assert "LIKE 'a%')" in window_select(spec, COLUMNS[:2], Window(None, None)).sql


def test_keys_sort_by_the_typed_column_not_by_its_text_staged_output():
    # a numeric key is staged as text under its own name: a bare ORDER BY name would sort the
    # text output while the keyset compares the typed column, and pages would skip rows
    columns = [ColumnInfo("k", "numeric"), ColumnInfo("updated_at", "timestamptz")]
    text = page_query(_spec("table: items", key="k"), columns, None, ["1.50"], 10, "by_key").sql
    assert 'CAST("k" AS TEXT) AS "k"' in text
    assert '(__sync_root."k") > (%(after_0)s) ORDER BY __sync_root."k" LIMIT 10' in text


def test_text_keys_sort_bytewise_like_elasticsearch_keywords():
    columns = [ColumnInfo("code", "text"), ColumnInfo("updated_at", "timestamptz")]
    text = page_query(_spec("table: items", key="code"), columns, None, None, 10, "by_key").sql
    assert 'ORDER BY __sync_root."code" COLLATE "C"' in text


def test_a_full_window_read_is_one_unordered_statement_with_the_nulls_it_owns():
    spec = _spec("table: shop.items")
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    middle = window_select(spec, COLUMNS, Window(start, end))
    assert middle.params == {}  # the COPY read takes no parameters: bounds are literals
    assert "\"updated_at\" >= CAST('2026-03-01T00:00:00+00:00' AS timestamptz) AND" in middle.sql
    assert "\"updated_at\" < CAST('2026-03-02T00:00:00+00:00' AS timestamptz)" in middle.sql
    assert "ORDER BY" not in middle.sql and "LIMIT" not in middle.sql and "IS NULL" not in middle.sql
    first = window_select(spec, COLUMNS, Window(None, end, include_null_updated_at=True)).sql
    assert (
        '("updated_at" < CAST(\'2026-03-02T00:00:00+00:00\' AS timestamptz)) OR "updated_at" IS NULL' in first
    )
    everything = window_select(spec, COLUMNS, Window(None, None, include_null_updated_at=True)).sql
    assert "WHERE" not in everything
    assert 'CAST(to_jsonb("tags") AS TEXT)' in everything  # staged as in the keyset pages


def test_window_count_skips_soft_deleted_rows_with_the_same_window_predicate():
    spec = _spec("table: items", extra="      soft_delete: deleted")
    columns = [*COLUMNS, ColumnInfo("deleted", "bool")]
    start = datetime(2026, 3, 1, tzinfo=UTC)
    statement = window_count_query(spec, columns, Window(start, None))
    assert statement.sql == (
        'SELECT count(*) FROM "items" AS __sync_root '
        'WHERE "updated_at" >= CAST(%(window_start)s AS timestamptz) '
        'AND ("deleted" IS NULL OR "deleted" = false)'
    )


def test_a_naive_updated_at_compares_each_window_bound_as_its_zones_wall_clock():
    spec = _spec("table: items", extra="    naive_timezone: America/New_York")
    columns = [ColumnInfo("id", "int8"), ColumnInfo("updated_at", "timestamp")]
    start, end = datetime(2026, 3, 10, 14, tzinfo=UTC), datetime(2026, 3, 10, 15, tzinfo=UTC)
    counted = window_count_query(spec, columns, Window(start, end)).sql
    zone = "AT TIME ZONE 'America/New_York'"
    assert f'"updated_at" >= (CAST(%(window_start)s AS timestamptz) {zone})' in counted
    assert f'"updated_at" < (CAST(%(window_end)s AS timestamptz) {zone})' in counted
    streamed = window_select(spec, columns, Window(start, end)).sql
    assert f"\"updated_at\" >= (CAST('2026-03-10T14:00:00+00:00' AS timestamptz) {zone})" in streamed
    # a timestamptz column is compared as it is: the zone concerns naive values only
    assert zone not in window_count_query(spec, COLUMNS, Window(start, end)).sql


def test_key_lookups_turn_canonical_texts_back_into_each_columns_type():
    spec = _spec("table: items", key="[region, id]")
    columns = [
        ColumnInfo("region", "text"),
        ColumnInfo("id", "int8"),
        ColumnInfo("updated_at", "timestamptz"),
    ]
    statement = keys_query(spec, columns, [("eu", "1"), ("us", "2")])
    # one text array per key column, whatever the number of keys: the key index serves the lookup
    assert statement.sql.endswith(
        'WHERE ("region", "id") IN (SELECT CAST(__sync_u.__sync_k0 AS text), '
        "CAST(__sync_u.__sync_k1 AS int8) "
        "FROM unnest(CAST(%(k0)s AS text[]), CAST(%(k1)s AS text[])) AS __sync_u(__sync_k0, __sync_k1))"
    )
    assert statement.params == {"k0": ["eu", "us"], "k1": ["1", "2"]}
    assert keys_query(spec, columns, []).sql.endswith("WHERE false")


def test_every_read_carries_the_version_of_its_own_snapshot():
    from sync_pipeline.core.sql.versions import VERSION_SQL

    spec = _spec("table: items")
    for statement in (
        page_query(spec, COLUMNS, Window(None, None), None, 10),
        window_select(spec, COLUMNS, Window(None, None)),
        keys_query(spec, COLUMNS, [("1",)]),
    ):
        assert f'{VERSION_SQL} AS "__sync_version"' in statement.sql


def test_a_key_range_read_adds_its_bounds_as_escaped_literals_in_the_keys_own_order():
    spec = _spec("table: items", key="[region, code]")
    columns = [
        ColumnInfo("region", "text"),
        ColumnInfo("code", "int4"),
        ColumnInfo("updated_at", "timestamptz"),
    ]
    key_range = KeyRange(after=("O'Brien\\x", "7"), upto=("zz", "1"))
    text = window_select(spec, columns, Window(None, None), key_range=key_range).sql
    # a COPY takes no parameters: the bounds are literals, a quote doubled, a backslash escaped
    assert (
        '(__sync_root."region", __sync_root."code") > '
        "(CAST(E'O''Brien\\\\x' AS text), CAST(E'7' AS int4))"
    ) in text
    assert "(CAST(E'zz' AS text), CAST(E'1' AS int4))" in text
    # no COLLATE "C" here: the primary key's index serves a range only in the column's own order
    assert 'COLLATE "C"' not in text


def test_a_range_bound_probe_reads_the_key_texts_at_the_range_size_and_the_one_after():
    spec = _spec("table: items")
    window = Window(datetime(2026, 1, 1, tzinfo=UTC), None)
    text = key_range_bound(spec, COLUMNS, window, ("500",), 1000).sql
    assert text.startswith('SELECT CAST(__sync_root."id" AS text) FROM "items" AS __sync_root WHERE')
    assert "\"updated_at\" >= CAST('2026-01-01T00:00:00+00:00' AS timestamptz)" in text
    assert "(__sync_root.\"id\") > (CAST(E'500' AS int8))" in text
    assert text.endswith('ORDER BY __sync_root."id" OFFSET 999 LIMIT 2')
    first = key_range_bound(spec, COLUMNS, window, None, 1000).sql
    assert "> (" not in first


def test_a_window_size_estimate_is_an_explain_of_the_same_window():
    window = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    text = window_estimate(_spec("table: items"), COLUMNS, window).sql
    assert text.startswith('EXPLAIN (FORMAT JSON) SELECT 1 FROM "items" AS __sync_root WHERE ')
    assert "\"updated_at\" < CAST('2026-01-02T00:00:00+00:00' AS timestamptz)" in text
