"""The joined-documents section's two shapes: their tables, seeded inside PostgreSQL, and their specs.

- `products`: the demo's shop (sync_pipeline_devtools/demo.py, its DDL and seed reused as they are):
  products with their category (many_to_one), tags (many_to_many through product_tags) and reviews
  (one_to_many, nested), 2 reviews and 2 tags per product on average.
- `orders`: orders with their customer → nation (a depth-2 many_to_one chain) and their line items
  (one_to_many, nested, 3–8 per order: 5.5 on average).

Both live in the schema `bench_joined` (dropped and re-created by `seed`, nothing else), on the
project's PostgreSQL and on PGSync's own cluster alike, so both tools read the same rows. Every row
comes from INSERT … SELECT over generate_series (seconds per million roots, no Python loop).
Each shape has three specs: `joined` (the document with its relations), `root` (the same table
with no relations: the reference for PostgreSQL's CPU) and a PGSync schema.json node tree.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

SCHEMA = "bench_joined"
SHAPES = ("products", "orders")
DEMO_DAYS = 40  # the demo's products' updated_at spread (demo.SEED_PRODUCTS)

ORDERS_DDL = """
CREATE TABLE nations (
    id      integer PRIMARY KEY,
    name    text NOT NULL,
    region  text NOT NULL
);
CREATE TABLE customers (
    id         bigint PRIMARY KEY,
    name       text NOT NULL,
    segment    text NOT NULL,
    balance    numeric(12, 2) NOT NULL,
    nation_id  integer NOT NULL REFERENCES nations(id)
);
CREATE INDEX customers_nation_id ON customers (nation_id);
CREATE TABLE orders (
    id           bigint PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES customers(id),
    status       text NOT NULL,
    priority     text NOT NULL,
    total        numeric(14, 2) NOT NULL,
    order_date   date NOT NULL,
    comment      text,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX orders_updated_at_id ON orders (updated_at, id);
CREATE INDEX orders_customer_id ON orders (customer_id);
CREATE TABLE line_items (
    id         bigint PRIMARY KEY,
    order_id   bigint NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    line_no    integer NOT NULL,
    part       text NOT NULL,
    quantity   integer NOT NULL,
    price      numeric(12, 2) NOT NULL,
    discount   numeric(4, 2) NOT NULL,
    ship_date  date NOT NULL
);
CREATE INDEX line_items_order_id ON line_items (order_id)
"""

ORDERS_SEED = """
SELECT setseed(0.17);
INSERT INTO nations (id, name, region)
SELECT n, (ARRAY['Portugal', '中国', 'Deutschland', 'Việt Nam', 'México', 'Brasil', 'Kenya', '日本',
                 'France', 'Canada', 'India', 'Ελλάδα', 'Norge', 'Perú', 'Egypt', 'Polska', 'Chile',
                 'Türkiye', 'Australia', 'Maroc', 'España', 'Sverige', 'Россия', 'Ghana', 'Italia'])[n],
       (ARRAY['EUROPE', 'ASIA', 'AMERICA', 'AFRICA', 'MIDDLE EAST'])[1 + n % 5]
FROM generate_series(1, 25) AS n;
INSERT INTO customers (id, name, segment, balance, nation_id)
SELECT c, 'Customer#' || lpad(c::text, 9, '0') || (ARRAY['', ' 李', ' Müller', ' Ñúñez'])[1 + c % 4],
       (ARRAY['AUTOMOBILE', 'BUILDING', 'FURNITURE', 'HOUSEHOLD', 'MACHINERY'])[1 + c % 5],
       round((random() * 10000 - 1000)::numeric, 2), 1 + c % 25
FROM generate_series(1, GREATEST(CAST(:rows AS bigint) / 10, 1)) AS c;
INSERT INTO orders (id, customer_id, status, priority, total, order_date, comment, updated_at)
SELECT o, 1 + (o * 7919) % GREATEST(CAST(:rows AS bigint) / 10, 1),
       (ARRAY['open', 'paid', 'shipped', 'delivered', 'returned'])[1 + o % 5],
       (ARRAY['1-URGENT', '2-HIGH', '3-MEDIUM', '4-NOT SPECIFIED', '5-LOW'])[1 + (o / 5) % 5],
       round((random() * 5000 + 10)::numeric, 2), date '2024-01-01' + (o % 700)::int,
       CASE WHEN o % 7 = 0 THEN NULL
            ELSE (ARRAY['deliver to the back door', '请在工作日送货', 'gift — no invoice',
                        'call before delivery', 'fragile: «glass»'])[1 + o % 5] END,
       date_trunc('minute', now() - (random() * :days) * interval '1 day')
FROM generate_series(1, CAST(:rows AS bigint)) AS o;
INSERT INTO line_items (id, order_id, line_no, part, quantity, price, discount, ship_date)
SELECT o * 10 + n, o, n,
       (ARRAY['steel bolt', 'copper wire', '青铜齿轮', 'oak plank', 'glass pane', 'Kabelbinder'])
           [1 + (o + n) % 6] || ' #' || ((o * 31 + n) % 100000),
       1 + (o + n) % 50, round((random() * 900 + 1)::numeric, 2), ((o + n) % 11) / 100.0,
       date '2024-01-01' + ((o % 700) + n)::int
FROM generate_series(1, CAST(:rows AS bigint)) AS o, generate_series(1, 3 + (o % 6)::int) AS n
"""

ORDERS_TABLES = ("nations", "customers", "orders", "line_items")
PRODUCTS_TABLES = ("categories", "products", "tags", "product_tags", "reviews")


def _statements(text: str) -> list[str]:
    return [s for s in text.split(";") if s.strip()]


def seed(pg_url: str, rows: int, shapes: tuple[str, ...] = SHAPES) -> dict[str, Any]:
    """(Re)create the schema bench_joined and fill each shape's tables with `rows` roots; the
    seconds per shape and every table's row count."""
    import sqlalchemy as sa

    from sync_pipeline.io.postgres import engine_for
    from sync_pipeline_devtools import demo

    engine = engine_for(pg_url)
    seconds: dict[str, float] = {}
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
        for shape in shapes:
            started = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(sa.text(f"SET LOCAL search_path = {SCHEMA}"))
                if shape == "products":
                    # the demo's own DDL and seed, in this schema (seed_demo would use the demo's)
                    for statement in _statements(demo.SCHEMA_DDL):
                        conn.execute(sa.text(statement))
                    conn.execute(
                        sa.text("INSERT INTO categories (id, name, name_zh) VALUES (:id, :name, :name_zh)"),
                        [{"id": i + 1, "name": n, "name_zh": z} for i, (n, z) in enumerate(demo.CATEGORIES)],
                    )
                    conn.execute(
                        sa.text("INSERT INTO tags (id, label) VALUES (:id, :label)"),
                        [{"id": i + 1, "label": label} for i, label in enumerate(demo.TAGS)],
                    )
                    params = {"rows": rows, "categories": len(demo.CATEGORIES)}
                    for statement in _statements(demo.SEED_PRODUCTS) + _statements(demo.SEED_RELATIONS):
                        used = {k: v for k, v in params.items() if f":{k}" in statement}
                        conn.execute(sa.text(statement), used)
                else:
                    for statement in _statements(ORDERS_DDL) + _statements(ORDERS_SEED):
                        used = {
                            k: v for k, v in {"rows": rows, "days": DEMO_DAYS}.items() if f":{k}" in statement
                        }
                        conn.execute(sa.text(statement), used)
                tables = PRODUCTS_TABLES if shape == "products" else ORDERS_TABLES
                for table in tables:
                    conn.execute(sa.text(f"ANALYZE {table}"))
            seconds[shape] = round(time.perf_counter() - started, 1)
        counts = {}
        with engine.connect() as conn:
            for shape in shapes:
                for table in PRODUCTS_TABLES if shape == "products" else ORDERS_TABLES:
                    counts[table] = conn.execute(sa.text(f"SELECT count(*) FROM {SCHEMA}.{table}")).scalar()
    finally:
        engine.dispose()
    return {"rows": rows, "seed_seconds": seconds, "table_rows": counts}


def drop(pg_url: str) -> None:
    import sqlalchemy as sa

    from sync_pipeline.io.postgres import engine_for

    engine = engine_for(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    finally:
        engine.dispose()


# --- specs ------------------------------------------------------------------------------------------


def index_name(shape: str, kind: str) -> str:
    """The index each measurement loads: bench_joined_<shape>_<pipeline|root|ceiling|pgsync>."""
    return f"bench_joined_{shape}_{kind}"


def _start() -> str:
    return (datetime.now(UTC) - timedelta(days=DEMO_DAYS + 2)).strftime("%Y-%m-%d")


_PRODUCTS_RELATIONS = [
    {
        "name": "category",
        "table": f"{SCHEMA}.categories",
        "kind": "many_to_one",
        "on": {"id": "category_id"},
        "columns": ["name", "name_zh"],
    },
    {
        "name": "tags",
        "table": f"{SCHEMA}.tags",
        "kind": "many_to_many",
        "through": {"table": f"{SCHEMA}.product_tags", "on": {"product_id": "id"}, "to": {"tag_id": "id"}},
        "columns": ["label"],
    },
    {
        "name": "reviews",
        "table": f"{SCHEMA}.reviews",
        "kind": "one_to_many",
        "on": {"product_id": "id"},
        "nested": True,
        "columns": ["rating", "body", "created_at"],
    },
]
_ORDERS_RELATIONS = [
    {
        "name": "customer",
        "table": f"{SCHEMA}.customers",
        "kind": "many_to_one",
        "on": {"id": "customer_id"},
        "columns": ["name", "segment", "balance"],
        "relations": [
            {
                "name": "nation",
                "table": f"{SCHEMA}.nations",
                "kind": "many_to_one",
                "on": {"id": "nation_id"},
                "columns": ["name", "region"],
            }
        ],
    },
    {
        "name": "lines",
        "table": f"{SCHEMA}.line_items",
        "kind": "one_to_many",
        "on": {"order_id": "id"},
        "nested": True,
        "columns": ["line_no", "part", "quantity", "price", "discount", "ship_date"],
    },
]
# the demo spec's field rules (sync.yaml) that hold without its custom analyzer
_PRODUCTS_FIELDS = {
    "sku": {"type": "keyword"},
    "name": {"cleanse": ["trim", "empty_to_null"]},
    "description": {"cleanse": ["trim", "empty_to_null"]},
    "category.name": {"type": "keyword"},
    "reviews.body": {"cleanse": ["trim", "empty_to_null"]},
}
_ORDERS_FIELDS = {
    "status": {"type": "keyword"},
    "priority": {"type": "keyword"},
    "customer.segment": {"type": "keyword"},
    "customer.nation.region": {"type": "keyword"},
}


def spec(shape: str, with_relations: bool = True, index: str | None = None) -> dict[str, Any]:
    """The shape's spec as a mapping (YAML is a superset of JSON): with its relations, or the root
    table alone (`with_relations` False: the same rows and columns, no related table read)."""
    relations = _PRODUCTS_RELATIONS if shape == "products" else _ORDERS_RELATIONS
    fields = _PRODUCTS_FIELDS if shape == "products" else _ORDERS_FIELDS
    source: dict[str, Any] = {"table": f"{SCHEMA}.{shape}", "primary_key": "id", "updated_at": "updated_at"}
    if with_relations:
        source["relations"] = relations
    else:
        fields = {k: v for k, v in fields.items() if "." not in k}
    kind = "pipeline" if with_relations else "root"
    return {
        "name": f"bench_joined_{shape}" + ("" if with_relations else "_root"),
        "source": source,
        "target": {"index": index or index_name(shape, kind)},
        "partitions": {"grain": "day", "start": _start()},
        "batch_size": 5000,
        "reconcile": "count",
        "schedule": {"catch_up": False},  # the bench launches every run it measures
        "fields": fields,
    }


def spec_yaml(shape: str, with_relations: bool = True) -> str:
    return json.dumps({"specs": [spec(shape, with_relations)]}, indent=1, ensure_ascii=False) + "\n"


# --- PGSync ---------------------------------------------------------------------------------------


def _pgsync_node(relation: dict[str, Any]) -> dict[str, Any]:
    """A spec relation as a PGSync child node: many_to_one → one_to_one object, one_to_many and
    many_to_many (through_tables) → one_to_many array of objects; foreign keys spelled out."""
    table = relation["table"].split(".", 1)[1]
    related, parent = next(iter((relation.get("on") or {}).items()), (None, None))
    kind = "one_to_one" if relation["kind"] == "many_to_one" else "one_to_many"
    relationship: dict[str, Any] = {"variant": "object", "type": kind}
    if relation["kind"] == "many_to_many":
        relationship["through_tables"] = [relation["through"]["table"].split(".", 1)[1]]
    else:
        relationship["foreign_key"] = {"child": [related], "parent": [parent]}
    node = {
        "table": table,
        "schema": SCHEMA,
        "label": relation["name"],
        "columns": list(relation["columns"]),
        "relationship": relationship,
    }
    if relation.get("relations"):
        node["children"] = [_pgsync_node(child) for child in relation["relations"]]
    return node


PRODUCTS_COLUMNS = [
    "id",
    "sku",
    "name",
    "description",
    "category_id",
    "price",
    "stock",
    "rating",
    "keywords",
    "attributes",
    "discontinued",
    "created_at",
    "updated_at",
    "deleted_at",
]
ORDERS_COLUMNS = ["id", "customer_id", "status", "priority", "total", "order_date", "comment", "updated_at"]


def pgsync_schema(shape: str, database: str) -> list[dict[str, Any]]:
    """PGSync's schema.json for the shape: the same root columns and relations as the spec."""
    relations = _PRODUCTS_RELATIONS if shape == "products" else _ORDERS_RELATIONS
    return [
        {
            "database": database,
            "index": index_name(shape, "pgsync"),
            "nodes": {
                "table": shape,
                "schema": SCHEMA,
                "columns": PRODUCTS_COLUMNS if shape == "products" else ORDERS_COLUMNS,
                "children": [_pgsync_node(r) for r in relations],
            },
        }
    ]
