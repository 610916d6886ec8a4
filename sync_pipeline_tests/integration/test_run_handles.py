"""Ops hold handles their caller made: one engine per run, and a verdict on the target instead of
a rebuild hidden inside a sync (real servers)."""

from __future__ import annotations

import gc
import traceback

import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli import main
from sync_pipeline.apps.cli.runner import Servers, run_drain, run_sync
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io import metrics_log
from sync_pipeline.io.search.indices import backing_indices
from sync_pipeline.ops import binding, target
from sync_pipeline.ops.binding import bind
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline.ops.prepare import TargetNotReady, prepare_target
from sync_pipeline.ops.readying import rebuild_for
from sync_pipeline_tests.conftest import indexed

WHEN = "2026-02-10 08:00:00+00"
REBUILDS = "    on_mapping_change: rebuild"


def _title_type(es, index: str) -> str:
    (found,) = es.indices.get_mapping(index=index).body.values()
    return found["mappings"]["properties"]["title"]["type"]


def test_prepare_target_asks_for_a_rebuild_and_leaves_the_index_alone_until_its_caller_rebuilds(
    scenario, insert_rows, tmp_path
):
    insert_rows(range(1, 6), WHEN)
    assert (
        main(
            [
                "--config",
                str(scenario.spec_file(tmp_path, extra=REBUILDS)),
                "sync",
                "--spec",
                scenario.table,
                "--full",
            ]
        )
        == 0
    )
    es, engine = scenario.es, scenario.engine
    before = backing_indices(es, scenario.index)
    assert len(indexed(es, scenario.index)) == 5 and _title_type(es, scenario.index) == "text"
    keyword = scenario.spec_text(extra=REBUILDS).replace(
        "title: {cleanse: [trim, empty_to_null]}", "title: {type: keyword}"
    )
    spec = parse_specs(keyword, origin="test")[0]
    assert spec.fields["title"].type == "keyword"

    verdict = prepare_target(es, bind(engine, spec), engine)

    assert verdict.needs_rebuild and not verdict.ready
    assert verdict.conflict is not None and "title" in str(verdict.conflict)
    # nothing rebuilt, nothing written: the same index behind the alias, its mapping and documents
    assert backing_indices(es, scenario.index) == before
    assert _title_type(es, scenario.index) == "text" and len(indexed(es, scenario.index)) == 5

    notices: list[str] = []
    state = rebuild_for(engine, es, verdict, log=notices.append)  # the caller's decision

    assert (
        state.rebuilt
        and state.rebuilt not in before
        and backing_indices(es, scenario.index) == [state.rebuilt]
    )
    assert any("rebuilding" in n for n in notices)
    assert _title_type(es, scenario.index) == "keyword" and len(indexed(es, scenario.index)) == 5
    again = prepare_target(es, bind(engine, spec), engine)
    assert again.ready and again.state.lines == []


def test_a_cli_sync_makes_one_engine_binds_and_compares_once_and_disposes_of_the_engine(
    scenario, insert_rows, tmp_path, live, monkeypatch
):
    insert_rows(range(1, 31), WHEN)
    port = str(sa.engine.make_url(live.pg_url).port)
    engines: list[sa.Engine] = []
    binds: list[str] = []
    comparisons: list[str] = []
    create_engine, describe, compare = sa.create_engine, binding.describe_source, target.compare

    def counting_engine(url, *args, **kwargs):
        engine = create_engine(url, *args, **kwargs)
        if str(sa.engine.make_url(url).port) == port:  # not Dagster's own (SQLite) storage
            engines.append(engine)
        return engine

    def counting_describe(conn, spec):
        binds.append(spec.name)
        return describe(conn, spec)

    def counting_compare(bound, *args, **kwargs):
        # the mapping check (mapping_matches_spec) compares after the load by design: told apart
        callers = [frame.name for frame in traceback.extract_stack()]
        comparisons.append("check" if "mapping_matches_spec" in callers else callers[-2])
        return compare(bound, *args, **kwargs)

    monkeypatch.setattr(sa, "create_engine", counting_engine)
    monkeypatch.setattr(binding, "describe_source", counting_describe)
    monkeypatch.setattr(target, "compare", counting_compare)
    config = scenario.spec_file(tmp_path)
    assert main(["--config", str(config), "sync", "--spec", scenario.table, "--full"]) == 0
    assert len(indexed(scenario.es, scenario.index)) == 30
    assert len(engines) == 1, engines
    assert engines[0].pool.checkedin() == 0  # disposed when the command ended
    # the index exists now: the second sync compares its mapping, once (the preflight's
    # prepare_target), and the run reuses that verdict and its binding
    comparisons.clear()
    assert main(["--config", str(config), "sync", "--spec", scenario.table, "--full"]) == 0
    assert len(engines) == 2 and engines[1].pool.checkedin() == 0
    assert binds == [scenario.table] * 2, binds  # one per command: the load and its checks share it
    assert comparisons == ["reconcile_target", "check"], comparisons
    # a run started without the CLI's engine (a schedule's, the UI's) makes its own, disposed of
    # once the run is over
    (spec,) = parse_specs(scenario.spec_text(), origin="test")
    assert run_sync(spec, servers=Servers(live.pg_url, live.es_url)).success
    gc.collect()
    assert len(engines) == 3 and engines[2].pool.checkedin() == 0


def test_a_drain_meeting_a_conflict_stops_before_writing_and_its_asset_rebuilds_then_drains(
    scenario, insert_rows, tmp_path, live
):
    insert_rows(range(1, 6), WHEN)
    config = scenario.spec_file(tmp_path, extra=REBUILDS)
    assert main(["--config", str(config), "sync", "--spec", scenario.table, "--full"]) == 0
    before = backing_indices(scenario.es, scenario.index)
    keyword = scenario.spec_text(extra=REBUILDS).replace(
        "title: {cleanse: [trim, empty_to_null]}", "title: {type: keyword}"
    )
    spec = parse_specs(keyword, origin="test")[0]
    install_capture(scenario.engine, spec)
    try:
        scenario.execute(f"UPDATE {scenario.table} SET title = 'changed', updated_at = now() WHERE id = 3")
        # the op alone: the verdict, raised before any write, and the change still buffered
        with pytest.raises(TargetNotReady) as stopped:
            drain(scenario.engine, scenario.es, spec)
        assert stopped.value.verdict.needs_rebuild
        assert backing_indices(scenario.es, scenario.index) == before
        assert indexed(scenario.es, scenario.index)["3"]["title"] == "item 3 商品"
        # the drain asset (what `flush` and the sensor run) rebuilds, then drains
        summary = run_drain(spec, servers=Servers(live.pg_url, live.es_url))
        assert summary.success, summary.error
        after = backing_indices(scenario.es, scenario.index)
        assert after != before and len(after) == 1
        assert _title_type(scenario.es, scenario.index) == "keyword"
        assert indexed(scenario.es, scenario.index)["3"]["title"] == "changed"
        # the stop before writing is no failed drain: the metrics count the drains that ran, ok
        with scenario.engine.connect() as conn:
            drains = [t for t in metrics_log.totals(conn, 60) if (t.spec, t.op) == (spec.name, "drain")]
        assert len(drains) == 1 and drains[0].counters["runs"] >= 1
        assert drains[0].counters["failed_runs"] == 0
    finally:
        uninstall_capture(scenario.engine, spec)
