"""A window read (pre-aggregated joins, core/sql/relation_joins.py) builds the same documents as
the key lookups drains and repairs read (correlated subqueries), for every kind of relation
(real PostgreSQL).

Orders with their customer → nation (many_to_one at depth 2, the nation joined on a code that
is no key), their lines (one_to_many) each with its product (depth 2) and their tags (many_to_many),
with the values that differ between JSON builders: NaN/±Infinity, json holding newlines,
timestamps, NULL foreign keys, no children at all.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from sync_pipeline.core.documents.build import batch_to_documents
from sync_pipeline.core.spec.model import SyncSpec, parse_specs
from sync_pipeline.core.sql.statements import KeyRange, window_select
from sync_pipeline.core.windows import Window
from sync_pipeline.io.postgres import fetch_keys, libpq_url, stream_window
from sync_pipeline.ops.binding import Bound, bind

JANUARY, FEBRUARY = "2026-01-15+00", "2026-02-15+00"


@dataclass
class Orders:
    schema: str
    engine: sa.Engine
    url: str
    spec: SyncSpec
    bound: Bound

    def window(self, window: Window, key_range: KeyRange | None = None) -> dict[str, dict]:
        """Documents by `_id`, as a full sync reads them (COPY of window_select)."""
        found: dict[str, dict] = {}
        b = self.bound
        for batch in stream_window(self.url, self.spec, b.columns, window, 7, b.relations, key_range):
            for relation in b.relations:  # what the bulk body embeds must stay one NDJSON line
                assert not any("\n" in text for text in batch.column(relation.spec.name).to_pylist() if text)
            documents = batch_to_documents(batch, b.plan)
            assert documents.unrepresentable is None
            found.update(zip(documents.ids, documents.documents, strict=True))
        return found

    def keys(self, ids: list[str]) -> dict[str, dict]:
        """The same rows as a drain reads them (keys_query)."""
        b = self.bound
        with self.engine.connect() as conn:
            batch = fetch_keys(conn, self.spec, b.columns, [[i] for i in ids], b.relations)
        documents = batch_to_documents(batch, b.plan)
        return dict(zip(documents.ids, documents.documents, strict=True))


def spec_text(s: str) -> str:
    return f"""
specs:
  - name: {s}
    source:
      table: {s}.orders
      primary_key: id
      updated_at: updated_at
      relations:
        - name: customer
          table: {s}.customers
          kind: many_to_one
          on: {{id: customer_id}}
          relations:
            - {{name: nation, table: {s}.nations, kind: many_to_one, on: {{code: nation_code}},
                columns: [name]}}
        - name: lines
          table: {s}.lines
          kind: one_to_many
          on: {{order_id: id}}
          nested: true
          relations:
            - {{name: product, table: {s}.products, kind: many_to_one, on: {{id: product_id}}}}
        - name: tags
          table: {s}.tags
          kind: many_to_many
          through: {{table: {s}.order_tags, on: {{order_id: id}}, to: {{tag_id: id}}}}
          columns: [label]
          relations:
            - {{name: kind, table: {s}.tag_kinds, kind: many_to_one, on: {{id: kind_id}}, columns: [name]}}
    target: {{index: {s}}}
    partitions: {{grain: month, start: "2026-01-01"}}
"""


@pytest.fixture()
def orders(pg, live) -> Iterator[Orders]:
    s = f"rr_{uuid.uuid4().hex[:8]}"
    statements = [
        f"CREATE SCHEMA {s}",
        # two nations share a code: the customer's nation is the first of them by key
        f"CREATE TABLE {s}.nations (id int PRIMARY KEY, code text, name text)",
        f"INSERT INTO {s}.nations VALUES (2, 'FR', 'France (second)'), (1, 'FR', 'France'), (3, 'DE', 'D')",
        f"""CREATE TABLE {s}.customers (id int PRIMARY KEY, name text, nation_code text,
            since timestamptz, born date, local timestamp)""",
        f"""INSERT INTO {s}.customers VALUES
            (1, 'Ann', 'FR', '2020-05-01 12:30:00.123456+02', '1990-02-03', '2021-01-01 08:00'),
            (2, 'Bob', NULL, NULL, NULL, NULL),
            (3, 'Céline "quoted"', 'XX', '2019-01-01+00', '1980-12-31', '2019-06-01 23:59:59.5')""",
        f"""CREATE TABLE {s}.products (id int PRIMARY KEY, title text, weight float4, price numeric(8, 2),
            big numeric, attrs jsonb, tags text[])""",
        f"""INSERT INTO {s}.products VALUES
            (1, 'kettle', 1.1, 19.99, 123456789012345678901234567890.5, '{{"colour": "red"}}', '{{a,b}}'),
            (2, 'weird', 'NaN', 'NaN', 'Infinity', '[1, "two", null]', NULL),
            (3, 'huge', 'Infinity', NULL, '-Infinity', 'null', '{{}}')""",
        f"""CREATE TABLE {s}.lines (id int PRIMARY KEY, order_id bigint, product_id int, qty int,
            ratio float8, note json, shipped timestamptz)""",
        f"CREATE TABLE {s}.tag_kinds (id int PRIMARY KEY, name text)",
        f"INSERT INTO {s}.tag_kinds VALUES (1, 'service'), (2, 'unread')",
        f"CREATE TABLE {s}.tags (id int PRIMARY KEY, label text, kind_id int)",
        f"INSERT INTO {s}.tags VALUES (1, 'gift', 1), (2, 'rush', NULL), (3, 'unused', 1)",
        f"CREATE TABLE {s}.order_tags (order_id bigint, tag_id int, PRIMARY KEY (order_id, tag_id))",
        f"""CREATE TABLE {s}.orders (id bigint PRIMARY KEY, customer_id int, total float8,
            updated_at timestamptz)""",
        # orders 1-20 in January, 21-40 in February; customer NULL for every fifth
        f"""INSERT INTO {s}.orders SELECT g, CASE WHEN g % 5 = 0 THEN NULL ELSE 1 + g % 3 END,
            g * 1.5, CASE WHEN g <= 20 THEN TIMESTAMPTZ '{JANUARY}' ELSE TIMESTAMPTZ '{FEBRUARY}' END
            FROM generate_series(1, 40) AS g""",
        # lines in descending key order (the array is by key); every third order has none
        f"""INSERT INTO {s}.lines SELECT 1000 - g * 4 - k, g, 1 + (g + k) % 3, k,
            CASE k WHEN 0 THEN 'NaN'::float8 WHEN 1 THEN 'Infinity'
                   WHEN 2 THEN 0.1::float8 + 0.2::float8 ELSE -1e300 END,
            CASE WHEN k = 0 THEN '{{"multi":\n  "line",\n "n": [1,\n2]}}'::json ELSE '{{"k": 1}}'::json END,
            TIMESTAMPTZ '2026-01-01 10:00+05' + g * interval '1 hour'
            FROM generate_series(1, 40) AS g, generate_series(0, 3) AS k WHERE g % 3 <> 0""",
        f"INSERT INTO {s}.order_tags SELECT g, 1 + g % 2 FROM generate_series(1, 40) AS g WHERE g % 4 <> 0",
        f"INSERT INTO {s}.order_tags SELECT g, 3 FROM generate_series(1, 40) AS g WHERE g % 7 = 0",
    ]
    with pg.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    spec = parse_specs(spec_text(s), origin="test")[0]
    yield Orders(s, pg, libpq_url(live.pg_url), spec, bind(pg, spec))
    with pg.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {s} CASCADE"))


def test_a_whole_window_reads_the_documents_key_lookups_read(orders: Orders):
    documents = orders.window(Window(None, None, include_null_updated_at=True))
    assert len(documents) == 40
    assert documents == orders.keys(list(documents))
    # and they are the right ones, not merely the same
    first = documents["1"]
    assert first["customer"]["name"] == "Bob" and first["customer"]["nation"] is None
    assert documents["2"]["customer"]["id"] == 3 and documents["2"]["customer"]["nation"] is None  # no XX
    ann = documents["3"]["customer"]
    assert ann["nation"] == {"name": "France"}  # the first of the two FR nations by key
    assert ann["since"].startswith("2020-05-01T10:30:00.123456") and ann["born"].startswith("1990-02-03")
    assert documents["5"]["customer"] is None and documents["5"]["tags"] == [{"label": "rush", "kind": None}]
    assert documents["3"]["lines"] == [] and documents["4"]["tags"] == []
    lines = documents["1"]["lines"]
    assert [line["id"] for line in lines] == sorted(line["id"] for line in lines) and len(lines) == 4
    assert [line["ratio"] for line in lines] == [-1e300, 0.1 + 0.2, None, None]  # by key: k = 3, 2, 1, 0
    assert lines[3]["note"] == {"multi": "line", "n": [1, 2]}
    products = {line["product"]["id"]: line["product"] for line in documents["1"]["lines"]}
    assert products[2]["weight"] is None and products[2]["price"] is None and products[2]["big"] == "Infinity"
    assert products[2]["attrs"] == [1, "two", None]
    assert math.isclose(products[1]["weight"], 1.1, rel_tol=1e-7) and products[1]["price"] == 19.99
    assert products[1]["big"] == "123456789012345678901234567890.5" and products[1]["tags"] == ["a", "b"]
    # two links, by key, each with its kind (a relation under a many_to_many)
    assert documents["7"]["tags"] == [
        {"label": "rush", "kind": None},
        {"label": "unused", "kind": {"name": "service"}},
    ]


def test_a_bounded_window_reads_only_its_rows_with_all_their_related_rows(orders: Orders):
    february = Window(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    documents = orders.window(february)
    assert sorted(documents, key=int) == [str(i) for i in range(21, 41)]
    assert documents == orders.keys(list(documents))
    assert len(documents["22"]["lines"]) == 4 and documents["22"]["lines"][0]["product"] is not None
    assert documents["21"]["lines"] == [] and documents["25"]["customer"] is None


def test_the_window_read_joins_pre_aggregated_rows_and_key_lookups_stay_correlated(orders: Orders):
    b = orders.bound
    window = window_select(
        orders.spec, b.columns, Window(datetime(2026, 2, 1, tzinfo=UTC), None), b.relations
    )
    assert "LEFT JOIN (SELECT" in window.sql and "GROUP BY" in window.sql and "DISTINCT ON" in window.sql
    # each relation reads the related rows of the window's rows only
    assert window.sql.count(f'FROM "{orders.schema}"."orders" AS __sync_w WHERE "updated_at" >=') >= 3


def test_a_key_range_of_a_window_joins_the_related_rows_of_its_own_keys(orders: Orders):
    everything = Window(None, None, include_null_updated_at=True)
    middle = KeyRange(after=("3",), upto=("22",))
    documents = orders.window(everything, middle)
    assert sorted(documents, key=int) == [str(i) for i in range(4, 23)]
    assert documents == orders.keys(list(documents))
    assert len(documents["22"]["lines"]) == 4 and documents["7"]["tags"][1]["kind"] == {"name": "service"}
    # the pre-aggregated joins are restricted to the range's root rows, not the whole window's
    b = orders.bound
    sql = window_select(orders.spec, b.columns, everything, b.relations, middle).sql
    assert sql.count('(__sync_w."id") > (') >= 3 and sql.count('(__sync_w."id") <= (') >= 3
