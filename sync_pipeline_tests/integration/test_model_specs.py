"""Specs from SQLAlchemy models (`source.model`, io/models.py): derived, overridable, synced to 0
drift on the real servers, and checked against the live database by `validate`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
import sqlalchemy as sa

from sync_pipeline.apps import cli
from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.io.models import model_mismatches, parse_specs, spec_from_model
from sync_pipeline.io.search.indices import drop_target
from sync_pipeline_devtools.demo import seed_demo
from sync_pipeline_tests.conftest import indexed
from sync_pipeline_tests.support import model_shop
from sync_pipeline_tests.support.model_specs import EXAMPLE, LINES, lines_yaml

# --- on the real servers ---------------------------------------------------------------------------


@pytest.fixture()
def schema(pg, es) -> Iterator[str]:
    """A throwaway schema's name (the test creates it) and index, dropped after."""
    name = f"m_{uuid.uuid4().hex[:8]}"
    yield name
    with pg.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
    drop_target(es, name)


def synced_without_drift(spec: SyncSpec, live) -> None:
    servers = Servers(live.pg_url, live.es_url)
    summary = run_sync(spec, servers=servers)
    assert summary.success, summary.error
    (report,) = run_verify([spec], [spec], servers=servers)
    assert report.ok, report.lines()


def test_the_flask_examples_models_sync_to_no_drift(pg, es, live, schema):
    with pg.begin() as conn:
        seed_demo(conn, rows=30, schema=schema)  # the demo's tables, in the test's schema
    text = (
        (EXAMPLE / "sync.yaml")
        .read_text()
        .replace("- name: products", f"- name: {schema}")
        .replace("index: products", f"index: {schema}")
        .replace("grain: day", "grain: month")  # a few partitions, not one a day since October
        .replace('model: "shop.models:Product"', f'model: "shop.models:Product"\n      schema: {schema}')
    )
    (spec,) = parse_specs(text, "sync.yaml", base=EXAMPLE)
    assert spec.source.table == f"{schema}.products"
    with pg.connect() as conn:  # the example's models are the demo's tables, column for column
        assert model_mismatches(conn, spec) == []
    synced_without_drift(spec, live)
    docs = indexed(es, schema)
    with pg.connect() as conn:
        live_rows = conn.scalar(sa.text(f"SELECT count(*) FROM {schema}.products WHERE deleted_at IS NULL"))
    assert len(docs) == live_rows > 0
    assert any(d["tags"] for d in docs.values()) and any(d["reviews"] for d in docs.values())
    with_category = [d["category"] for d in docs.values() if d["category"]]
    assert with_category and all(set(category) == {"name", "name_zh"} for category in with_category)


def test_the_flask_examples_transform_embeds_products_for_knn_search(
    pg, es, live, schema, tmp_path, monkeypatch, capsys
):
    with pg.begin() as conn:
        seed_demo(conn, rows=30, schema=schema)
    text = (
        (EXAMPLE / "semantic.yaml")
        .read_text()
        .replace("- name: products_semantic", f"- name: {schema}")
        .replace("index: products_semantic", f"index: {schema}")
        .replace("grain: day", "grain: month")
        .replace('model: "shop.models:Product"', f'model: "shop.models:Product"\n      schema: {schema}')
    )
    (spec,) = parse_specs(text, "semantic.yaml", base=EXAMPLE)
    synced_without_drift(spec, live)  # verify runs the transform too: the same vectors
    docs = indexed(es, schema)
    assert docs and all(len(d["embedding"]) == 16 for d in docs.values())

    from shop.search import embeddings  # the example's package, imported beside its spec

    first = min(docs, key=int)
    product = docs[first]
    query = embeddings(pd.Series([f"{product['name']} {product['description'] or ''}"]))
    config = tmp_path / "semantic.yaml"
    config.write_text(text)
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("SYNC_PG_URL", live.pg_url)
    monkeypatch.setenv("SYNC_ES_URL", live.es_url)
    argv = ["--config", str(config), "search", "--spec", schema, "--knn", "embedding", "--k", "5", "--json"]
    assert cli.main([*argv, "--vector", json.dumps(query[0].tolist())]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    best = [hit["id"] for hit in hits if hit["score"] == hits[0]["score"]]
    assert first in best and hits[0]["score"] > hits[-1]["score"]


def create_shop(pg: sa.Engine, schema: str) -> None:
    with pg.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        model_shop.Base.metadata.create_all(conn.execution_options(schema_translate_map={None: schema}))
        conn.execute(sa.text(f"SET LOCAL search_path TO {schema}"))
        conn.execute(sa.text("INSERT INTO departments VALUES (1, 'Home'), (2, 'Garden')"))
        conn.execute(sa.text("INSERT INTO categories VALUES (10, 'Kitchen', 1), (20, 'Tools', 2)"))
        conn.execute(sa.text("INSERT INTO labels VALUES (1, 'fragile'), (2, 'gift')"))
        conn.execute(
            sa.text(
                "INSERT INTO order_lines SELECT o, l, o * l, CASE WHEN l = 1 THEN 10 ELSE 20 END, "
                "'2026-02-01+00', '2026-02-02+00' FROM generate_series(1, 40) o, generate_series(1, 3) l"
            )
        )
        conn.execute(sa.text("INSERT INTO line_labels VALUES (1, 1, 1), (1, 1, 2), (2, 3, 2)"))


def test_composite_key_depth_two_and_many_to_many_from_python_sync_to_no_drift(pg, es, live, schema):
    create_shop(pg, schema)
    spec = spec_from_model(
        model_shop.OrderLine,
        relations=["category.department", {"name": "labels", "columns": ["text"]}],
        name=schema,
        schema=schema,
        partitions={"grain": "month", "start": "2026-01-01"},
        batch_size=50,
    )
    assert spec.source.primary_key == ["order_id", "line_no"] and spec.source.updated_at == "changed"
    synced_without_drift(spec, live)
    docs = indexed(es, schema)
    assert len(docs) == 120
    first = next(d for d in docs.values() if (d["order_id"], d["line_no"]) == (1, 1))
    assert first["category"]["department"]["name"] == "Home"
    assert sorted(label["text"] for label in first["labels"]) == ["fragile", "gift"]


def test_validate_reports_a_column_the_model_maps_and_a_migration_renamed(
    pg, es, live, schema, tmp_path, capsys
):
    create_shop(pg, schema)
    config = tmp_path / "sync.yaml"
    config.write_text(lines_yaml("[category.department, labels]").replace("shop_x", schema))
    assert cli.main(["validate", "--config", str(config)]) == 0
    with pg.begin() as conn:  # the migration the models never saw
        conn.execute(sa.text(f"ALTER TABLE {schema}.order_lines RENAME COLUMN quantity TO qty"))
        conn.execute(sa.text(f"ALTER TABLE {schema}.departments RENAME COLUMN name TO title"))
        conn.execute(sa.text(f"ALTER TABLE {schema}.order_lines ALTER COLUMN created_at TYPE text"))
    capsys.readouterr()
    assert cli.main(["validate", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert (
        f"problem: model {LINES} maps column 'quantity' that table {schema}.order_lines lacks "
        "(renamed or dropped by a migration?)" in out
    )
    assert (
        f"model {LINES} → category.department maps column 'name' that table {schema}.departments lacks" in out
    )
    assert (
        f"model {LINES} maps column 'created_at' as DateTime (a timestamp) that table {schema}.order_lines "
        "holds as text" in out
    )
