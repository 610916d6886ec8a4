"""Documents built from several tables, kept right whichever table changes (real servers).

A normalised shop schema per test (departments ← categories ← products → reviews, products ↔
tags through product_tags), a spec that declares the relations, a full sync, triggers on every
table, changes, a drain — and every test ends with verify reporting 0 drift, nested content
compared too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli.runner import Servers, run_drain, run_sync, run_verify
from sync_pipeline.core.spec.model import SyncSpec, parse_specs
from sync_pipeline.core.sql.statements import SourceError
from sync_pipeline.io.search.indices import drop_target
from sync_pipeline.ops import progress
from sync_pipeline.ops.capture import (
    CaptureError,
    install_capture,
    uninstall_capture,
)
from sync_pipeline.ops.drain import drain
from sync_pipeline_tests.conftest import indexed


@dataclass
class Shop:
    schema: str
    engine: sa.Engine
    es: object
    servers: Servers

    def execute(self, *statements: str) -> None:
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))

    def spec_text(
        self, extra_fields: str = "", batch_size: int = 50, source_extra: str = "", capture: str = "triggers"
    ) -> str:
        s = self.schema
        return f"""
capture: {capture}
specs:
  - name: {s}
    source:
      table: {s}.products
      primary_key: id
      updated_at: updated_at
{source_extra}
      relations:
        - name: category
          table: {s}.categories
          kind: many_to_one
          on: {{id: category_id}}
          columns: [name]
          relations:
            - {{name: department, table: {s}.departments, kind: many_to_one, on: {{id: department_id}},
                columns: [name]}}
        - name: reviews
          table: {s}.reviews
          kind: one_to_many
          on: {{product_id: id}}
          nested: true
        - name: tags
          table: {s}.tags
          kind: many_to_many
          through: {{table: {s}.product_tags, on: {{product_id: id}}, to: {{tag_id: id}}}}
          columns: [label]
    target: {{index: {s}}}
    partitions: {{grain: month, start: "2026-01-01"}}
    batch_size: {batch_size}
    fields:
      reviews.body: {{cleanse: [trim, empty_to_null]}}
{extra_fields}
"""

    def spec(self, **kwargs) -> SyncSpec:
        return parse_specs(self.spec_text(**kwargs), origin="test")[0]

    def docs(self) -> dict[str, dict]:
        return indexed(self.es, self.schema)

    def assert_no_drift(self, spec: SyncSpec) -> None:
        (report,) = run_verify([spec], [spec], servers=self.servers)
        assert report.ok, report.lines()


@pytest.fixture()
def shop(pg, es, live) -> Iterator[Shop]:
    s = f"r_{uuid.uuid4().hex[:8]}"
    shop = Shop(s, pg, es, Servers(live.pg_url, live.es_url))
    shop.execute(
        f"CREATE SCHEMA {s}",
        f"CREATE TABLE {s}.departments (id int PRIMARY KEY, name text)",
        f"""CREATE TABLE {s}.categories (id int PRIMARY KEY, name text,
            department_id int REFERENCES {s}.departments)""",
        f"""CREATE TABLE {s}.products (id bigint PRIMARY KEY, name text,
            category_id int REFERENCES {s}.categories, price numeric(10, 2), updated_at timestamptz)""",
        f"""CREATE TABLE {s}.reviews (id int PRIMARY KEY, product_id bigint, stars int, body text,
            created_at timestamptz, helpful int DEFAULT 0)""",
        f"CREATE TABLE {s}.tags (id int PRIMARY KEY, label text)",
        f"CREATE TABLE {s}.product_tags (product_id bigint, tag_id int, PRIMARY KEY (product_id, tag_id))",
        f"INSERT INTO {s}.departments VALUES (1, 'Home'), (2, 'Outdoor')",
        f"INSERT INTO {s}.categories VALUES (10, 'Kitchen', 1), (20, 'Garden', 2)",
        f"""INSERT INTO {s}.products SELECT g, 'product ' || g, CASE WHEN g % 2 = 0 THEN 10 ELSE 20 END,
            1.50, '2026-02-01+00' FROM generate_series(1, 20) AS g""",
        f"""INSERT INTO {s}.reviews VALUES (1, 1, 5, 'great', '2026-01-01 10:00+01'),
            (2, 1, 3, '  fine  ', '2026-01-02+00'), (3, 2, 1, 'bad', NULL)""",
        f"INSERT INTO {s}.tags VALUES (1, 'eco'), (2, 'gift')",
        f"INSERT INTO {s}.product_tags VALUES (1, 1), (1, 2), (2, 2)",
    )
    yield shop
    with pg.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {s} CASCADE"))
    drop_target(es, s)


@pytest.fixture(params=["triggers", "logical"])
def synced(shop: Shop, request) -> Iterator[SyncSpec]:
    """The shop fully synced, its changes captured by triggers on every table of the documents
    or by a replication slot. Capture first, then the full sync: nothing falls between them."""
    spec = shop.spec(capture=request.param)
    install_capture(shop.engine, spec)
    summary = run_sync(spec, servers=shop.servers)
    assert summary.success and summary.indexed == 20, summary.error
    if spec.capture == "logical":
        drain(shop.engine, shop.es, spec)  # what the slot holds from before the sync: re-reads
    yield spec
    uninstall_capture(shop.engine, spec)
    with shop.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM public.sync_pipeline_buffer WHERE spec = :s"), {"s": spec.name})


def test_a_document_carries_its_related_rows_as_objects_and_arrays(shop, synced):
    doc = shop.docs()["1"]
    assert doc["category"] == {"name": "Garden", "department": {"name": "Outdoor"}}
    # ordered by the review's key; cleansing rules apply inside (dotted field names)
    assert [r["id"] for r in doc["reviews"]] == [1, 2]
    assert doc["reviews"][1]["body"] == "fine"
    assert doc["reviews"][0]["created_at"] == "2026-01-01T09:00:00.000000Z"  # UTC, like root fields
    assert doc["tags"] == [{"label": "eco"}, {"label": "gift"}]
    assert shop.docs()["3"]["reviews"] == [] and shop.docs()["3"]["tags"] == []
    mapping = shop.es.indices.get_mapping(index=shop.schema).body
    properties = next(iter(mapping.values()))["mappings"]["properties"]
    assert properties["reviews"]["type"] == "nested"
    assert properties["category"]["properties"]["department"]["properties"]["name"]["type"] == "text"
    shop.assert_no_drift(synced)


def shelf(frame: pd.DataFrame) -> pd.DataFrame:
    """A pandas transform over related rows: what it gets of a relation is its JSON text."""
    categories = [json.loads(text) if isinstance(text, str) else None for text in frame["category"]]
    reviews = [json.loads(text) if isinstance(text, str) else [] for text in frame["reviews"]]
    return frame.assign(
        department=[(c.get("department") or {}).get("name") if c else None for c in categories],
        stars=[sum(r["stars"] or 0 for r in rows) for rows in reviews],
    )


@pytest.mark.parametrize("capture", ["triggers", "logical"])
def test_a_transform_over_related_rows_follows_child_and_grandchild_changes(shop, capture):
    computed = "      department: {type: keyword}\n      stars: {type: integer}\n"
    text = shop.spec_text(extra_fields=computed, capture=capture).replace(
        "    target:",
        "    transform: {pandas: 'sync_pipeline_tests.integration.test_relations:shelf'}\n    target:",
        1,
    )
    spec = parse_specs(text, origin="test")[0]
    install_capture(shop.engine, spec)
    try:
        assert run_sync(spec, servers=shop.servers).indexed == 20
        if capture == "logical":
            drain(shop.engine, shop.es, spec)  # what the slot holds from before the sync: re-reads
        docs = shop.docs()
        assert (docs["1"]["department"], docs["1"]["stars"]) == ("Outdoor", 8)
        assert docs["2"]["department"] == "Home"
        shop.execute(
            f"UPDATE {shop.schema}.departments SET name = 'Outside' WHERE id = 2",  # two levels up
            f"UPDATE {shop.schema}.reviews SET stars = 4 WHERE id = 3",  # a child
        )
        drain(shop.engine, shop.es, spec)
        docs = shop.docs()
        assert {docs[str(i)]["department"] for i in range(1, 21, 2)} == {"Outside"}
        assert (docs["2"]["stars"], docs["2"]["department"]) == (4, "Home")
        shop.assert_no_drift(spec)
    finally:
        uninstall_capture(shop.engine, spec)


def test_child_insert_update_and_delete_reach_their_parents(shop, synced):
    shop.execute(
        f"INSERT INTO {shop.schema}.reviews (id, product_id, stars, body) VALUES (9, 3, 4, 'new')",
        f"UPDATE {shop.schema}.reviews SET stars = 2 WHERE id = 3",
        f"DELETE FROM {shop.schema}.reviews WHERE id = 2",
    )
    totals = drain(shop.engine, shop.es, synced)
    docs = shop.docs()
    assert [r["id"] for r in docs["3"]["reviews"]] == [9]
    assert docs["2"]["reviews"][0]["stars"] == 2
    assert [r["id"] for r in docs["1"]["reviews"]] == [1]
    assert totals.failed == totals.conflicts == 0
    shop.assert_no_drift(synced)


def test_a_child_moved_to_another_parent_updates_both(shop, synced):
    shop.execute(f"UPDATE {shop.schema}.reviews SET product_id = 4 WHERE id = 1")
    drain(shop.engine, shop.es, synced)
    docs = shop.docs()
    assert [r["id"] for r in docs["1"]["reviews"]] == [2]
    assert [r["id"] for r in docs["4"]["reviews"]] == [1]
    shop.assert_no_drift(synced)


def test_a_join_table_row_added_and_removed(shop, synced):
    shop.execute(f"INSERT INTO {shop.schema}.product_tags VALUES (5, 1)")
    drain(shop.engine, shop.es, synced)
    assert shop.docs()["5"]["tags"] == [{"label": "eco"}]
    shop.execute(f"DELETE FROM {shop.schema}.product_tags WHERE product_id = 1 AND tag_id = 2")
    drain(shop.engine, shop.es, synced)
    assert shop.docs()["1"]["tags"] == [{"label": "eco"}]
    shop.execute(f"UPDATE {shop.schema}.tags SET label = 'Eco' WHERE id = 1")  # the far side of the join
    drain(shop.engine, shop.es, synced)
    assert shop.docs()["5"]["tags"] == [{"label": "Eco"}]
    shop.assert_no_drift(synced)


def test_a_grandchild_change_reaches_the_documents_two_levels_up(shop, synced):
    shop.execute(f"UPDATE {shop.schema}.departments SET name = 'Outside' WHERE id = 2")
    drain(shop.engine, shop.es, synced)
    docs = shop.docs()
    assert all(docs[str(i)]["category"]["department"]["name"] == "Outside" for i in range(1, 21, 2))
    assert all(docs[str(i)]["category"]["department"]["name"] == "Home" for i in range(2, 21, 2))
    # a category moved to another department: its products follow
    shop.execute(f"UPDATE {shop.schema}.categories SET department_id = 2 WHERE id = 10")
    drain(shop.engine, shop.es, synced)
    assert shop.docs()["2"]["category"]["department"]["name"] == "Outside"
    shop.assert_no_drift(synced)


def test_a_deleted_root_row_deletes_its_document_and_unread_columns_change_nothing(shop, synced):
    shop.execute(
        f"DELETE FROM {shop.schema}.product_tags WHERE product_id = 7",
        f"DELETE FROM {shop.schema}.products WHERE id = 7",
    )
    drain(shop.engine, shop.es, synced)
    assert "7" not in shop.docs()
    # categories are read for their name (and joined by id/department_id): other columns'
    # updates are not even buffered
    shop.execute(
        f"ALTER TABLE {shop.schema}.categories ADD COLUMN notes text",
        f"UPDATE {shop.schema}.categories SET notes = 'seasonal'",
    )
    with shop.engine.connect() as conn:
        pending = conn.execute(
            sa.text("SELECT count(*) FROM public.sync_pipeline_buffer WHERE spec = :s"), {"s": synced.name}
        ).scalar_one()
    assert pending == 0
    shop.assert_no_drift(synced)


def test_a_rename_fanning_out_to_ten_thousand_parents_goes_in_bounded_batches(shop):
    s = shop.schema
    shop.execute(
        f"""INSERT INTO {s}.products SELECT g, 'bulk ' || g, 10, 2.00, '2026-03-01+00'
            FROM generate_series(1000, 10999) AS g"""
    )
    spec = shop.spec(batch_size=1000)
    assert run_sync(spec, servers=shop.servers).success
    install_capture(shop.engine, spec)
    try:
        shop.execute(f"UPDATE {s}.categories SET name = 'Cooking' WHERE id = 10")
        seen, reported = [], []
        heard = lambda event, data: reported.append(data["docs"]) if event == "batch" else None  # noqa: E731
        with progress.listening(heard):
            totals = drain(shop.engine, shop.es, spec, on_batch=lambda b: seen.append(b.batch))
        # one claimed entry, resolved to 10,010 documents in batches of at most batch_size rows,
        # several bodies in flight, each batch counted once and in order
        assert totals.claimed == 1 and totals.indexed == 10_010
        assert seen == list(range(1, len(seen) + 1)) and len(seen) >= 11
        # the CLI's progress (apps/cli/progress.py) hears every batch, as a full sync's
        assert sum(reported) == 10_010 and max(reported) <= 1000 and len(reported) == len(seen)
        count = shop.es.count(index=s, query={"match": {"category.name": "Cooking"}})["count"]
        assert count == 10_010
        shop.assert_no_drift(spec)
    finally:
        uninstall_capture(shop.engine, spec)


@pytest.mark.parametrize("capture", ["triggers", "logical"])
def test_a_fan_out_drain_failing_mid_way_confirms_nothing_and_the_next_drain_completes_it(shop, capture):
    s = shop.schema
    shop.execute(
        f"""INSERT INTO {s}.products SELECT g, 'bulk ' || g, 10, 2.00, '2026-03-01+00'
            FROM generate_series(1000, 3999) AS g"""
    )
    spec = shop.spec(batch_size=500, capture=capture)
    install_capture(shop.engine, spec)  # capture first, then the full sync: nothing falls between
    try:
        assert run_sync(spec, servers=shop.servers).success
        if capture == "logical":
            drain(shop.engine, shop.es, spec)  # what the slot holds from before the sync: re-reads
        shop.execute(f"UPDATE {s}.categories SET name = 'Cooking' WHERE id = 10")
        written: list[int] = []

        def dies_after_three_batches(batch) -> None:
            written.append(batch.docs)
            if len(written) == 3:
                raise RuntimeError("drain killed mid-way")

        with pytest.raises(RuntimeError, match="killed mid-way"):
            drain(shop.engine, shop.es, spec, on_batch=dies_after_three_batches)
        shop.es.indices.refresh(index=s)
        renamed = shop.es.count(index=s, query={"match": {"category.name": "Cooking"}})["count"]
        assert 0 < renamed < 3010  # part of the fan-out was written before the drain died
        if capture == "triggers":
            with shop.engine.connect() as conn:
                pending = conn.execute(
                    sa.text("SELECT count(*) FROM public.sync_pipeline_buffer WHERE spec = :s"),
                    {"s": spec.name},
                ).scalar_one()
            assert pending == 1  # the rename is still buffered: not confirmed
        totals = drain(shop.engine, shop.es, spec)
        assert totals.claimed >= 1 and totals.indexed >= 3010  # the slot handed the rename out again
        count = shop.es.count(index=s, query={"match": {"category.name": "Cooking"}})["count"]
        assert count == 3010
        shop.assert_no_drift(spec)
    finally:
        uninstall_capture(shop.engine, spec)
        with shop.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM public.sync_pipeline_buffer WHERE spec = :s"), {"s": spec.name})


def test_an_update_that_keeps_updated_at_survives_rematerialising_its_old_partition(shop, synced):
    import dagster as dg

    from sync_pipeline.core import naming
    from sync_pipeline.defs import build_definitions
    from sync_pipeline.defs.resources import resources_for
    from sync_pipeline.settings import load

    resources = resources_for(load(), pg_url=shop.servers.pg_url, es_url=shop.servers.es_url)
    job = build_definitions([synced], resources).resolve_job_def(naming.sync_job(synced.name))
    instance = dg.DagsterInstance.ephemeral()
    assert job.execute_in_process(partition_key="2026-02-01", instance=instance).success  # stages it

    shop.execute(f"UPDATE {shop.schema}.products SET name = 'renamed' WHERE id = 1")  # updated_at as it was
    summary = run_drain(synced, servers=shop.servers)
    assert summary.success and shop.docs()["1"]["name"] == "renamed"
    # the index asset alone re-sends the partition's staged NDJSON, read before the update
    result = job.execute_in_process(
        partition_key="2026-02-01",
        asset_selection=[dg.AssetKey(naming.index_asset(synced.name))],
        instance=instance,
    )
    assert result.success
    materialization = result.asset_materializations_for_node(naming.sync_multi_asset(synced.name))[0]
    assert materialization.metadata["stale_skipped"].value >= 1  # refused as an older read's
    assert shop.docs()["1"]["name"] == "renamed"
    shop.assert_no_drift(synced)


def test_updated_at_moved_backward_is_still_applied(shop, synced):
    shop.execute(
        f"UPDATE {shop.schema}.products SET name = 'earlier', "
        "updated_at = updated_at - interval '1 hour' WHERE id = 2"
    )
    summary = run_drain(synced, servers=shop.servers)
    assert summary.success and summary.stale_skipped == 0 and summary.conflicts == 0
    assert shop.docs()["2"]["name"] == "earlier"
    shop.assert_no_drift(synced)


def test_an_older_read_arriving_after_a_drain_of_a_child_change_is_refused(shop, synced):
    """A backfill whose read overlaps a drain: its documents reach Elasticsearch last, but were
    read first, so they lose to the drain's."""
    from sync_pipeline.core.documents.build import batch_to_bulk
    from sync_pipeline.core.load.bulk import rebody
    from sync_pipeline.core.windows import Window
    from sync_pipeline.io.bulk_load import load_bulk
    from sync_pipeline.io.postgres import libpq_url, stream_window
    from sync_pipeline.ops.binding import bind

    bound = bind(shop.engine, synced)
    pages = stream_window(
        libpq_url(shop.servers.pg_url), synced, bound.columns, Window(None, None, True), 100, bound.relations
    )
    old_read = [batch_to_bulk(page, bound.plan).body for page in pages]  # the backfill's read, held
    shop.execute(f"UPDATE {shop.schema}.reviews SET body = 'edited' WHERE id = 3")
    drain(shop.engine, shop.es, synced)
    late = load_bulk(shop.es, shop.schema, rebody(old_read, 100))
    shop.es.indices.refresh(index=shop.schema)
    assert late.stale_skipped >= 1
    assert shop.docs()["2"]["reviews"][0]["body"] == "edited"
    shop.assert_no_drift(synced)


def test_install_refuses_a_spec_that_names_a_missing_column_and_installs_nothing(shop):
    text = shop.spec_text().replace("columns: [label]", "columns: [label, colour]")
    spec = parse_specs(text)[0]
    with pytest.raises((CaptureError, SourceError)) as caught:
        install_capture(shop.engine, spec)
    assert "colour" in str(caught.value) and "tags" in str(caught.value)
    with shop.engine.connect() as conn:
        installed = conn.execute(
            sa.text("SELECT count(*) FROM pg_proc WHERE proname LIKE :p"),
            {"p": f"sync_pipeline_{spec.name}%"},
        ).scalar_one()
    assert installed == 0


def test_writes_to_every_watched_table_work_after_install_and_after_uninstall(shop):
    s = shop.schema
    spec = shop.spec()
    writes = [
        f"INSERT INTO {s}.departments VALUES (3, 'Toys')",
        f"INSERT INTO {s}.categories VALUES (30, 'Blocks', 3)",
        f"INSERT INTO {s}.products VALUES (100, 'new', 30, 1, now())",
        f"INSERT INTO {s}.reviews (id, product_id, stars) VALUES (100, 100, 5)",
        f"INSERT INTO {s}.tags VALUES (3, 'kids')",
        f"INSERT INTO {s}.product_tags VALUES (100, 3)",
        f"UPDATE {s}.products SET name = 'newer' WHERE id = 100",
        f"UPDATE {s}.reviews SET stars = 4 WHERE id = 100",
        f"DELETE FROM {s}.product_tags WHERE product_id = 100",
        f"DELETE FROM {s}.reviews WHERE id = 100",
        f"DELETE FROM {s}.products WHERE id = 100",
        f"DELETE FROM {s}.tags WHERE id = 3",
        f"DELETE FROM {s}.categories WHERE id = 30",
        f"DELETE FROM {s}.departments WHERE id = 3",
    ]
    tables = install_capture(shop.engine, spec).tables
    assert len(tables) == 6
    shop.execute(*writes)
    # a column the spec reads, dropped behind our back: the user's writes still work
    shop.execute(f"ALTER TABLE {s}.reviews DROP COLUMN body", f"UPDATE {s}.reviews SET stars = 1")
    assert len(uninstall_capture(shop.engine, spec)) == 6
    assert uninstall_capture(shop.engine, spec) == []  # idempotent
    shop.execute(*writes)
    with shop.engine.connect() as conn:
        left = conn.execute(
            sa.text("SELECT count(*) FROM pg_trigger WHERE tgname LIKE :p"),
            {"p": f"sync_pipeline_{spec.name}%"},
        ).scalar_one()
    assert left == 0


def test_capture_errors_name_the_table_and_column(shop):
    shop.execute(f"ALTER TABLE {shop.schema}.product_tags RENAME COLUMN tag_id TO tag")
    spec = shop.spec()
    with pytest.raises((CaptureError, SourceError)) as caught:
        install_capture(shop.engine, spec)
    message = str(caught.value)
    assert f"{shop.schema}.product_tags" in message and "tag_id" in message
