"""Shared pieces of the benchmark: the servers, the seeded tables, the spec, the capture check.

Measuring a process (CPU, RSS, the result it prints) is bench/measure.py.

Everything here talks to the servers the project already uses (SYNC_PG_URL /
SYNC_ES_URL, else the local services). The benchmark owns exactly the table
`bench_products` and indexes whose names start with `bench_`.
"""

from __future__ import annotations

import functools
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
PYTHON = str(PROJECT_ROOT / ".venv" / "bin" / "python")
SYNC_PIPELINE = str(PROJECT_ROOT / ".venv" / "bin" / "sync-pipeline")

TABLE = "bench_products"
SPEC_NAME = "bench_products"
PIPELINE_INDEX = "bench_pipeline"  # the spec's target (an alias over bench_pipeline_v1)
# the small-document table (~250 B documents: 9 narrow columns), its spec and index
SMALL_TABLE = "bench_small"
SMALL_SPEC_NAME = "bench_small"
SMALL_INDEX = "bench_small_pipeline"
# pgbench's table: the shape of bench_products, its own size (--pgbench-rows)
PGBENCH_TABLE = "bench_pgbench"
PGBENCH_SPEC_NAME = "bench_pgbench"
DAYS_OF_HISTORY = 30  # updated_at spreads over the last 30 days (one partition per day)


# --- servers ----------------------------------------------------------------------------------


def server_urls() -> tuple[str, str]:
    """SYNC_PG_URL / SYNC_ES_URL, else the project's local services (started if needed)."""
    pg, es = os.environ.get("SYNC_PG_URL"), os.environ.get("SYNC_ES_URL")
    if pg and es:
        return pg, es
    from sync_pipeline_devtools import services

    urls = services.ensure_services()
    return pg or urls.pg_url, es or urls.es_url


def es_client(url: str, timeout: float = 300.0):
    """The product's own search client (io/search), so every backend is measured the same way."""
    from sync_pipeline.io.search import search_client

    return search_client(url, request_timeout=timeout)


@functools.lru_cache(maxsize=8)
def engine(url: str):
    """One engine per URL for the bench process (engine_for makes a new one per call: its caller
    owns it), so the many small setup queries share one pool."""
    from sync_pipeline.io.postgres import engine_for

    return engine_for(url)


def drop_bench_indexes(es, pattern: str = "bench_*") -> list[str]:
    """Delete every index (and with it every alias) matching `pattern`; never anything else."""
    assert pattern.startswith("bench_"), pattern
    names = sorted(es.indices.get(index=pattern, expand_wildcards="all", ignore_unavailable=True))
    for name in names:
        es.indices.delete(index=name, ignore_unavailable=True)
    return names


def server_env(pg_url: str, es_url: str) -> dict[str, str]:
    """This process's environment for a bench subprocess: the servers, and this checkout's
    packages first on the path (the CLI and `python -m bench.*` children import them)."""
    return {
        **os.environ,
        "SYNC_PG_URL": pg_url,
        "SYNC_ES_URL": es_url,
        "PYTHONPATH": str(PROJECT_ROOT),
        "PYTHONUNBUFFERED": "1",
    }


def run_dirs_env(config: Path, staging: Path, dagster_home: Path) -> dict[str, str]:
    """The variables that point one CLI or pipeline subprocess at its spec file, staging dir and
    DAGSTER_HOME (created here: Dagster refuses a DAGSTER_HOME that does not exist)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    return {"SYNC_CONFIG": str(config), "SYNC_STAGING_DIR": str(staging), "DAGSTER_HOME": str(dagster_home)}


def setup_env(args: Any) -> None:
    """The variables the pipeline reads, pointing at the benchmark's temp dirs."""
    os.environ["SYNC_CONFIG"] = str(args.config)
    os.environ["SYNC_STAGING_DIR"] = str(args.staging)
    os.environ["DAGSTER_HOME"] = str(args.dagster_home)
    Path(args.staging).mkdir(parents=True, exist_ok=True)
    Path(args.dagster_home).mkdir(parents=True, exist_ok=True)


# --- the seeded table ---------------------------------------------------------------------------

# ~0.5–1 KB per row as a JSON document: text (with non-ASCII), NUMERIC, integer, float,
# text[], JSONB and two timestamptz columns. Generated inside PostgreSQL (one INSERT … SELECT
# over generate_series, like sync_pipeline_devtools/demo.py), deterministic through setseed.
# Numeric and timestamp columns are NOT NULL so that the naive baseline (which has no
# cleansing at all) can load every row: NULL numerics become NaN and NULL timestamps NaT in
# its DataFrame, which Elasticsearch or the client refuse.
TABLE_DDL = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
    id          bigint PRIMARY KEY,
    sku         text NOT NULL,
    name        text NOT NULL,
    description text,
    category    text NOT NULL,
    brand       text,
    price       numeric(12, 2) NOT NULL,
    stock       integer NOT NULL,
    rating      double precision NOT NULL,
    weight_kg   double precision NOT NULL,
    tags        text[],
    attributes  jsonb,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
"""

_SENTENCES = [
    [
        "Hand-made from recycled materials",
        "适合日常使用，品质保证",
        "Designed in Lisbon and assembled in Porto",
        "A bestseller for the third year running",
        "Made to last with a five-year warranty",
        "轻便耐用，适合户外旅行",
        "Certified organic and fair-trade sourced",
        "Compact enough for the smallest kitchen",
        "Ships in 24h — 快速发货",
        "Limited edition «classic» design",
    ],
    [
        "with a matte ceramic finish that resists stains",
        "with stainless-steel fittings and a silicone seal",
        "featuring a quick-release clip and a padded strap",
        "built around a low-noise brushless motor",
        "using water-based inks and FSC paper",
        "采用环保材料制作，无异味",
        "with reinforced seams and YKK zippers",
        "in a gift box with a handwritten card",
        "with a detachable USB-C cable and a 2-year battery",
        "that folds flat for storage",
    ],
    [
        "Dishwasher safe; hand washing keeps the colour longer.",
        "Wipe clean with a damp cloth.",
        "Compatible with every model released since 2019.",
        "Includes spare parts and a printed manual in six languages.",
        "使用前请仔细阅读说明书。",
        "Not suitable for children under three years.",
        "Assembly takes about ten minutes with the included tool.",
        "Refills are sold separately in packs of four.",
        "Store in a cool, dry place away from direct sunlight.",
        "Über 10.000 zufriedene Kunden in Europa.",
    ],
    [
        "Our customers rate it highly for comfort and value,",
        "Reviewers praise the sturdy build and the clean look,",
        "It pairs well with the rest of the collection,",
        "Professional chefs and home cooks both recommend it,",
        "This version improves the grip and the balance,",
        "The new colourway was chosen by our community,",
        "每一件产品都经过严格的质量检测，",
        "Thanks to the modular design it can be repaired easily,",
        "The packaging is fully recyclable and plastic-free,",
        "It was awarded a design prize in 2024,",
    ],
    [
        "and it comes with free returns within 30 days.",
        "and spare parts stay available for ten years.",
        "and the price includes shipping to most countries.",
        "and a portion of every sale supports local makers.",
        "and we offer engraving at no extra cost.",
        "并且提供三十天无理由退货服务。",
        "and it is covered by our lifetime repair promise.",
        "and it has been tested for over 10,000 cycles.",
        "and it fits in a standard carry-on bag.",
        "and it can be personalised on request.",
    ],
]


def _sentence_sql(column: str, step: int, arrays: list[list[str]]) -> str:
    parts = []
    for i, options in enumerate(arrays):
        literal = "ARRAY[" + ", ".join("'" + o.replace("'", "''") + "'" for o in options) + "]"
        parts.append(f"({literal})[1 + (({column} / {step**i}) * {7 + 2 * i} + {i}) % {len(options)}]")
    return " || ' ' || ".join(parts)


SEED_SQL = f"""
SELECT setseed(0.42);
INSERT INTO {TABLE} (id, sku, name, description, category, brand, price, stock, rating, weight_kg,
                     tags, attributes, created_at, updated_at)
SELECT
    g,
    'SKU-' || lpad(g::text, 9, '0'),
    (ARRAY['Ceramic Mug', '青花瓷茶杯', 'Café Crème Grinder', '龙井绿茶 250g', 'Notebook A5',
           '儿童积木', 'Trail Runner Shoes', 'Garden Hose 15 m', 'Über-Kabel USB-C', '紫砂壶',
           'Cast Iron Skillet 28 cm', 'Merino Wool Beanie'])[1 + (g % 12)]
        || ' ' || (ARRAY['Classic', 'Pro', 'Mini', 'XL', 'Eco', '经典款', 'Sport', 'Max'])[1 + (g / 12) % 8]
        || ' #' || g,
    CASE WHEN g % 50 = 0 THEN NULL ELSE
        {_sentence_sql("g", 10, _SENTENCES)} || ' ' || {_sentence_sql("(g / 7)", 10, _SENTENCES[::-1])}
    END,
    (ARRAY['Kitchen', 'Books', 'Electronics', 'Garden', 'Toys', 'Sports', 'Tea', 'Stationery',
           'Outdoor', 'Home', 'Beauty', 'Music'])[1 + (g / 3) % 12],
    CASE WHEN g % 11 = 0 THEN NULL
         ELSE (ARRAY['Acme', 'Globex', 'Initech', '华为', 'Umbrella', 'Soylent', 'Hooli', 'Vandelay',
                     'Stark', 'Wayne', '小米', 'Duff'])[1 + (g / 5) % 12] END,
    round((random() * 500 + 0.5)::numeric, 2),
    (random() * 1000)::int,
    round((random() * 5)::numeric, 2)::float8,
    round((random() * 20)::numeric, 3)::float8,
    CASE WHEN g % 13 = 0 THEN NULL
         ELSE ARRAY['new', (ARRAY['sale', '热卖', 'eco', 'gift', 'bestseller', 'limited'])[1 + (g % 6)],
                    (ARRAY['red', 'blue', 'green', 'black', 'white'])[1 + (g / 6) % 5]] END,
    CASE WHEN g % 19 = 0 THEN NULL
         ELSE jsonb_build_object(
             'color', (ARRAY['red', '蓝色', 'green', 'noir', 'white', 'grey'])[1 + (g % 6)],
             'material', (ARRAY['ceramic', 'steel', 'wool', 'bamboo', 'plastic'])[1 + (g / 2) % 5],
             'dimensions', jsonb_build_object('w', g % 50, 'h', (g % 30) + 0.5, 'd', g % 7),
             'origin', (ARRAY['PT', 'CN', 'DE', 'VN', 'MX'])[1 + (g / 4) % 5],
             'warranty_months', 12 * (1 + g % 5),
             'certifications', jsonb_build_array('CE', 'RoHS')) END,
    now() - interval '400 days' + (g % 1000) * interval '1 hour',
    -- minute resolution over the last {DAYS_OF_HISTORY} days: many rows share each updated_at
    date_trunc('minute', now() - (random() * {DAYS_OF_HISTORY}) * interval '1 day')
FROM generate_series(1, CAST(:rows AS bigint)) AS g;
CREATE INDEX {TABLE}_updated_at_id ON {TABLE} (updated_at, id);
ANALYZE {TABLE};
"""


# The small-document table: 9 narrow columns (integers, numerics, a date, short text),
# ~250 B per document as bulk NDJSON. Same rules as above: generate_series inside PostgreSQL,
# deterministic, updated_at over the last DAYS_OF_HISTORY days.
SMALL_DDL = f"""
DROP TABLE IF EXISTS {SMALL_TABLE};
CREATE TABLE {SMALL_TABLE} (
    id          bigint PRIMARY KEY,
    account_id  integer NOT NULL,
    quantity    integer NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    discount    numeric(5, 2) NOT NULL,
    order_date  date NOT NULL,
    status      text NOT NULL,
    code        text NOT NULL,
    updated_at  timestamptz NOT NULL
);
"""

SMALL_SEED_SQL = f"""
SELECT setseed(0.42);
INSERT INTO {SMALL_TABLE} (id, account_id, quantity, amount, discount, order_date, status, code, updated_at)
SELECT
    g,
    1 + (g * 7919) % 250000,
    1 + (g % 40),
    round((random() * 900 + 1)::numeric, 2),
    round((random() * 30)::numeric, 2),
    date '2024-01-01' + (g % 700)::int,
    (ARRAY['new', 'paid', 'shipped', 'delivered', 'returned', 'cancelled'])[1 + (g / 3) % 6],
    'ORD-' || lpad(g::text, 9, '0'),
    date_trunc('minute', now() - (random() * {DAYS_OF_HISTORY}) * interval '1 day')
FROM generate_series(1, CAST(:rows AS bigint)) AS g;
CREATE INDEX {SMALL_TABLE}_updated_at_id ON {SMALL_TABLE} (updated_at, id);
ANALYZE {SMALL_TABLE};
"""


def seed_statements(table: str = TABLE) -> list[str]:
    """The DDL + seed statements of `table`: bench_products' shape under any name, or bench_small."""
    if table == SMALL_TABLE:
        text = SMALL_DDL + SMALL_SEED_SQL
    else:
        text = (TABLE_DDL + SEED_SQL).replace(TABLE, table)
    return [s for s in text.split(";\n") if s.strip()]


def seed_table(pg_url: str, rows: int, table: str = TABLE) -> float:
    """(Re)create and fill `table` (default bench_products) in SQL (generate_series); returns seconds."""
    import sqlalchemy as sa

    started = time.perf_counter()
    with engine(pg_url).begin() as conn:
        for statement in seed_statements(table):
            conn.execute(sa.text(statement), {"rows": rows} if ":rows" in statement else {})
    return time.perf_counter() - started


def table_stats(pg_url: str, table: str = TABLE) -> dict[str, Any]:
    import sqlalchemy as sa

    with engine(pg_url).connect() as conn:
        count, avg_bytes = conn.execute(
            sa.text(f"SELECT count(*), avg(pg_column_size(t.*)) FROM {table} t")
        ).one()
        total = conn.execute(sa.text(f"SELECT pg_total_relation_size('{table}')")).scalar()
    return {
        "rows": int(count),
        "avg_row_bytes_pg": round(float(avg_bytes or 0), 1),
        "table_bytes": int(total),
    }


def drop_table(pg_url: str) -> None:
    """Every table the bench owns."""
    import sqlalchemy as sa

    with engine(pg_url).begin() as conn:
        for table in (TABLE, SMALL_TABLE, PGBENCH_TABLE):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}_removed"))


def partitions_start() -> str:
    """First daily window: the seeded updated_at values all fall after it."""
    return (datetime.now(UTC) - timedelta(days=DAYS_OF_HISTORY + 2)).strftime("%Y-%m-%d")


def spec_yaml(
    index: str = PIPELINE_INDEX,
    name: str = SPEC_NAME,
    batch_size: int = 5000,
    reconcile: str = "count",
    sensor: dict[str, Any] | None = None,
    table: str = TABLE,
    capture: str | None = None,
    schedule: dict[str, Any] | None = None,
    header: bool = True,
    transform: str | None = None,
) -> str:
    """The spec the pipeline scenarios sync: `table` (bench_products) → `index`.

    capture None leaves the spec's default (triggers) unwritten, so the spec loads on a build
    without the `capture` key; header False returns the spec's lines alone (several specs in
    one file); transform: a function of bench/transforms.py, run on every batch."""
    lines = [
        *(["specs:"] if header else []),
        f"  - name: {name}",
        "    source:",
        f"      table: {table}",
        "      primary_key: id",
        "      updated_at: updated_at",
        "    target:",
        f"      index: {index}",
        "    partitions:",
        "      grain: day",
        f'      start: "{partitions_start()}"',
        f"    batch_size: {batch_size}",
        f"    reconcile: {reconcile}",
        # the bench launches every run it measures; nothing may sync on its own meanwhile
        "    schedule: " + json.dumps(schedule or {"catch_up": False}),
    ]
    if capture:
        lines.append(f"    capture: {capture}")
    if transform:
        lines.append(f'    transform: {{pandas: "bench.transforms:{transform}"}}')
    if table == SMALL_TABLE:
        lines += ["    fields:", "      status: {type: keyword}", "      code: {type: keyword}"]
    else:
        lines += [
            "    fields:",
            "      sku: {type: keyword}",
            "      category: {type: keyword}",
            "      brand: {type: keyword}",
            "      name: {cleanse: [trim]}",
        ]
        if transform == "realistic":  # the fields it computes
            lines += ["      name_slug: {type: keyword}", "      in_stock: {type: boolean}"]
    if sensor:
        lines.append("    buffer_sensor: " + json.dumps(sensor))
    return "\n".join(lines) + "\n"


def load_spec(path: Path, name: str | None = None):
    from sync_pipeline.core.spec.model import get_spec, load_specs

    specs = load_specs(path)
    if name is None:
        name = SPEC_NAME if any(s.name == SPEC_NAME for s in specs) else specs[0].name
    return specs, get_spec(specs, name)
