"""The fan-out drain section: one category shared by N products is renamed, and the drain that
re-indexes every product built from it is timed beside the full sync of the same documents.

    .venv/bin/python -m bench.fanout [--products N] [--profile PATH]

Schema `bench_fanout`: `categories` (two rows) and `products` (N rows of ~300 B, every one in
category 1), a spec with the category as a many-to-one relation (its name in every document),
triggers on both tables. Each measurement runs in its own subprocess as the CLI does (the sync
job, then the drain job in-process: `sync-pipeline sync`, `sync-pipeline flush`), so its wall
clock and peak RSS are its own. Reported: docs/s of each, the drain's × the full sync's rate
(target ≥ 0.5×), the drain's peak RSS, and whether every document carries the new name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import common, measure

SCHEMA = "bench_fanout"
INDEX = "bench_fanout"
TARGET_RATIO = 0.5  # the drain's docs/s at least this × the full sync's (issue 27)
RENAMED = "Tea & Teaware (renamed)"

SEED_SQL = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE TABLE {SCHEMA}.categories (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE {SCHEMA}.products (
    id          bigint PRIMARY KEY,
    sku         text NOT NULL,
    name        text NOT NULL,
    description text,
    price       numeric(10, 2) NOT NULL,
    stock       integer NOT NULL,
    category_id int REFERENCES {SCHEMA}.categories,
    updated_at  timestamptz NOT NULL
);
INSERT INTO {SCHEMA}.categories VALUES (1, 'Tea'), (2, 'Coffee');
INSERT INTO {SCHEMA}.products
SELECT g, 'SKU-' || lpad(CAST(g AS text), 8, '0'), 'Product ' || g,
       repeat('A loose-leaf blend, hand-picked and slowly dried. ', 4 + g % 3),
       (g % 9000) / 100.0 + 1, g % 500, 1, now() - interval '1 hour'
FROM generate_series(1, %(products)s) AS g;
CREATE INDEX ON {SCHEMA}.products (category_id);
ANALYZE {SCHEMA}.products;
"""


def partitions_start() -> str:
    """Two days before today: the products (updated an hour ago) fill one of three daily windows,
    so the full sync is timed on its loads, not on empty partitions."""
    return (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")


def spec_yaml() -> str:
    return f"""specs:
  - name: {INDEX}
    source:
      table: {SCHEMA}.products
      primary_key: id
      updated_at: updated_at
      relations:
        - {{name: category, table: {SCHEMA}.categories, kind: many_to_one, on: {{id: category_id}},
            columns: [name]}}
    target: {{index: {INDEX}}}
    partitions: {{grain: day, start: "{partitions_start()}"}}
    batch_size: 5000
    schedule: {{catch_up: false}}
    fields:
      sku: {{type: keyword}}
"""


def seed(pg_url: str, products: int) -> float:
    import sqlalchemy as sa

    started = time.perf_counter()
    with common.engine(pg_url).begin() as conn:
        if _has_buffer(conn):
            conn.execute(sa.text("DELETE FROM public.sync_pipeline_buffer WHERE spec = :s"), {"s": INDEX})
        for statement in SEED_SQL.replace("%(products)s", str(int(products))).split(";\n"):
            if statement.strip():
                conn.execute(sa.text(statement))
    return time.perf_counter() - started


def _has_buffer(conn) -> bool:
    import sqlalchemy as sa

    return conn.execute(sa.text("SELECT to_regclass('public.sync_pipeline_buffer') IS NOT NULL")).scalar_one()


def run(pg_url: str, es_url: str, products: int, log=print, profile: str | None = None) -> dict[str, Any]:
    """Seed, full-sync, install capture, rename, drain; the section's figures."""
    tmp = Path(tempfile.mkdtemp(prefix="sync-bench-fanout-"))
    config = tmp / "sync.yaml"
    config.write_text(spec_yaml())
    env = common.server_env(pg_url, es_url) | common.run_dirs_env(config, tmp / "staging", tmp / "dagster")
    es = common.es_client(es_url)
    es.indices.delete(index=INDEX, ignore_unavailable=True)
    log(f"fan-out: seeding {products:,} products sharing one category")
    seeded = seed(pg_url, products)
    timeout = 300 + products * 0.01
    full = measure.run_measured([common.PYTHON, "-m", "bench.fanout", "--phase", "sync"], env, timeout)
    if full["rc"] != 0:
        return {"error": "full sync failed: " + full["output_tail"][-1500:]}
    _install_and_rename(pg_url, config)
    phase = ["--phase", "drain", *(["--profile", profile] if profile else [])]
    drained = measure.run_measured([common.PYTHON, "-m", "bench.fanout", *phase], env, timeout)
    if drained["rc"] != 0:
        return {"error": "drain failed: " + drained["output_tail"][-1500:]}
    renamed = es.count(index=INDEX, query={"match_phrase": {"category.name": "Teaware"}})["count"]
    _uninstall(pg_url, config)
    es.indices.delete(index=INDEX, ignore_unavailable=True)
    full_rate = products / full["result"]["seconds"]
    drain_rate = products / drained["result"]["seconds"]
    ratio = round(drain_rate / full_rate, 3)
    result = {
        "products": products,
        "seed_seconds": round(seeded, 1),
        "full_sync": {
            **full["result"],
            "docs_per_s": round(full_rate, 1),
            "peak_rss_mb": full["peak_rss_mb"],
        },
        "drain": {
            **drained["result"],
            "docs_per_s": round(drain_rate, 1),
            "peak_rss_mb": drained["peak_rss_mb"],
            "cpu_s": drained["cpu_s"],
        },
        "renamed_docs": renamed,
        "complete": renamed == products and drained["result"].get("indexed") == products,
        "x_full_sync": ratio,
        "target_x_full_sync": TARGET_RATIO,
        "met": ratio >= TARGET_RATIO,
    }
    log(
        f"  full sync {full_rate:,.0f} docs/s, fan-out drain {drain_rate:,.0f} docs/s = {ratio}× "
        f"(target ≥ {TARGET_RATIO}×), drain peak RSS {drained['peak_rss_mb']} MB, "
        f"{renamed:,}/{products:,} renamed"
    )
    return result


def _install_and_rename(pg_url: str, config: Path) -> None:
    import sqlalchemy as sa

    from sync_pipeline.ops.capture import install_capture

    _, spec = common.load_spec(config)
    engine = common.engine(pg_url)
    install_capture(engine, spec)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {SCHEMA}.categories SET name = :n WHERE id = 1"), {"n": RENAMED})


def _uninstall(pg_url: str, config: Path) -> None:
    import sqlalchemy as sa

    from sync_pipeline.ops.capture import uninstall_capture

    _, spec = common.load_spec(config)
    engine = common.engine(pg_url)
    uninstall_capture(engine, spec)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))


def _phase(name: str, profile: str | None) -> None:
    """One measured run in this subprocess: the sync job or the drain job, as the CLI runs them."""
    from sync_pipeline.apps.cli.runner import run_drain, run_sync

    _, spec = common.load_spec(Path(os.environ["SYNC_CONFIG"]))
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    started = time.perf_counter()
    summary = run_sync(spec) if name == "sync" else run_drain(spec)
    seconds = time.perf_counter() - started
    if profiler is not None:
        profiler.stop()
        Path(profile).write_text(profiler.output_text(unicode=True, show_all=False))
    if not summary.success:
        print(f"{name} failed: {summary.error}", file=sys.stderr)
        sys.exit(1)
    measure.emit_result(
        {
            "seconds": round(seconds, 3),
            "indexed": summary.indexed,
            "batches": summary.batches,
            "failed": summary.failed,
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--products", type=int, default=100_000, help="products sharing the category (100,000)"
    )
    parser.add_argument("--profile", help="write a pyinstrument profile of the drain to this file")
    parser.add_argument("--phase", choices=["sync", "drain"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        _phase(args.phase, args.profile)
        return 0
    pg_url, es_url = common.server_urls()
    result = run(pg_url, es_url, args.products, lambda line: print(line, file=sys.stderr), args.profile)
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
