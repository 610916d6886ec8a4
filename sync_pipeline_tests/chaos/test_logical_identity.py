"""A spec keyed by a column that is not the table's replica identity (issue 30, item 3): under
logical capture, an UPDATE of the spec's key and a DELETE still reach the index."""

from __future__ import annotations

from sync_pipeline.apps.cli.runner import Servers, run_sync
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline_tests.conftest import indexed
from sync_pipeline_tests.support.faults import record

ROWS = 200


def test_a_spec_keyed_by_a_unique_column_other_than_the_primary_key(scenario, live):
    table = scenario.table
    scenario.execute(f"DROP TABLE {table}")
    scenario.execute(
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, sku text NOT NULL UNIQUE, title text, "
        "updated_at timestamptz)"
    )
    text = scenario.spec_text(extra="    capture: logical").replace("primary_key: id", "primary_key: sku")
    spec = parse_specs(text, origin="test")[0]
    assert spec.source.primary_key == ["sku"]
    install_capture(scenario.engine, spec)
    try:
        scenario.execute(
            f"INSERT INTO {table} (id, sku, title, updated_at) SELECT g, 'sku-' || g, 'item ' || g, "
            "timestamptz '2026-02-01 00:00:00+00' FROM generate_series(1, :n) g",
            {"n": ROWS},
        )
        summary = run_sync(spec, servers=Servers(live.pg_url, live.es_url))
        assert summary.success and summary.indexed == ROWS, summary.error
        drain(scenario.engine, scenario.es, spec)
        scenario.execute(f"UPDATE {table} SET sku = 'renamed-' || id WHERE id <= 20")  # the spec's key
        scenario.execute(f"DELETE FROM {table} WHERE id BETWEEN 21 AND 40")
        totals = drain(scenario.engine, scenario.es, spec)
        assert totals.failed == 0
        docs = indexed(scenario.es, scenario.index)
        assert "sku-1" not in docs and "renamed-1" in docs and "sku-21" not in docs, sorted(docs)[:5]
        assert len(docs) == ROWS - 20
        record("logical: spec keyed by a unique column, key updated and rows deleted", 40, spec)
    finally:
        scenario.engine.dispose()
        uninstall_capture(scenario.engine, spec)
