"""pandas transforms as the documents stage (issue 26, item 1): `transform: {pandas: "m:f"}` runs
once per batch on every path that builds documents — the window sync, both drains, verify and
its fix, dead-letter replay, rebuild — so verify sees what the sync wrote; a batch it raises on
is bisected down to the failing rows (dead letters with the exception); a field it returns with
no mapping is refused before any run; without a transform, pandas is never imported.
"""

from __future__ import annotations

import pytest

from sync_pipeline.apps import cli
from sync_pipeline.apps.cli.runner import run_drain, run_sync, run_verify
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.core.sql.statements import SourceError
from sync_pipeline.io import deadletters
from sync_pipeline.ops.binding import bind
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.rebuild import rebuild
from sync_pipeline.ops.replay import replay
from sync_pipeline_tests.conftest import indexed
from sync_pipeline_tests.support.pandas_transform import HERE


def _spec_text(scenario, function: str, extra: str = "") -> str:
    text = scenario.spec_text(extra=f"    transform: {{pandas: '{HERE}:{function}'}}\n{extra}")
    return text.replace("    fields:\n", "    fields:\n      title_slug: {type: keyword}\n")


def _spec(scenario, function: str = "clean", capture: str = "triggers"):
    return parse_specs(_spec_text(scenario, function, f"    capture: {capture}"), origin="test")[0]


def test_a_field_the_transform_returns_without_a_mapping_is_refused_at_validate(scenario, tmp_path, capsys):
    spec = _spec(scenario, "unmapped")
    with pytest.raises(SourceError, match="field 'shouting' it returns has no mapping"):
        bind(scenario.engine, spec)
    config = tmp_path / "sync.yaml"
    config.write_text(_spec_text(scenario, "unmapped"))
    assert cli.main(["validate", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert (
        f"spec '{scenario.table}': 1 problem" in out and "field 'shouting' it returns has no mapping" in out
    )
    config.write_text(_spec_text(scenario, "clean"))
    assert cli.main(["validate", "--config", str(config)]) == 0


def test_sync_drain_verify_fix_and_rebuild_go_through_the_transform(scenario, insert_rows, es):
    insert_rows(range(1, 41), "2026-02-01 00:00:00+00")
    spec = _spec(scenario)
    install_capture(scenario.engine, spec)
    try:
        assert run_sync(spec).success
        docs = indexed(es, scenario.index)
        assert docs["5"]["title"] == "ITEM 5 商品" and docs["5"]["title_slug"] == "item-5-商品"
        (report,) = run_verify([spec], [spec])
        assert report.ok and report.pg_count == 40, report.lines()

        table = scenario.table
        scenario.execute(f"UPDATE {table} SET title = 'changed here', updated_at = now() WHERE id = 7")
        insert_rows([41], "2026-02-02 00:00:00+00", title="new one")
        assert run_drain(spec).success
        docs = indexed(es, scenario.index)
        assert docs["7"]["title_slug"] == "changed-here" and docs["41"]["title"] == "NEW ONE"

        es.update(index=scenario.index, id="12", doc={"title_slug": "tampered"}, refresh=True)
        (fixing,) = run_verify([spec], [spec], fix=True)
        assert fixing.mismatched == 1 and fixing.repaired.indexed == 1
        assert indexed(es, scenario.index)["12"]["title_slug"] == "item-12-商品"

        report = rebuild(scenario.engine, es, spec)
        assert report.new_index == f"{scenario.index}_v2"
        (after,) = run_verify([spec], [spec])
        assert after.ok and after.pg_count == 41, after.lines()
    finally:
        uninstall_capture(scenario.engine, spec)


def test_a_logical_drain_goes_through_the_transform(scenario, insert_rows, es):
    insert_rows(range(1, 21), "2026-02-01 00:00:00+00")
    spec = _spec(scenario, capture="logical")
    install_capture(scenario.engine, spec)
    try:
        assert run_sync(spec).success
        scenario.execute(f"UPDATE {scenario.table} SET title = 'by slot', updated_at = now() WHERE id = 3")
        assert run_drain(spec).success
        assert indexed(es, scenario.index)["3"]["title_slug"] == "by-slot"
        (report,) = run_verify([spec], [spec])
        assert report.ok and report.pg_count == 20, report.lines()
    finally:
        uninstall_capture(scenario.engine, spec)


def test_rows_the_transform_raises_on_are_dead_letters_and_replay_once_fixed(scenario, insert_rows, es):
    insert_rows(range(1, 31), "2026-02-01 00:00:00+00")
    scenario.execute(f"UPDATE {scenario.table} SET title = 'boom' WHERE id IN (4, 17)")
    spec = _spec(scenario, "fragile")
    summary = run_sync(spec)
    assert summary.success and summary.indexed == 28 and summary.dead_lettered == 2
    with scenario.engine.begin() as conn:
        letters = {d["doc_id"]: d["error"] for d in deadletters.list_dead_letters(conn, spec.name, 50)}
    assert sorted(letters) == ["17", "4"]
    assert letters["4"]["type"] == "transform_failed"
    assert letters["4"]["exception"] == {"type": "ValueError", "message": "no bombs in titles"}
    (report,) = run_verify([spec], [spec])
    assert report.drift == 0 and report.dead_letters == 2, report.lines()

    scenario.execute(f"UPDATE {scenario.table} SET title = 'defused' WHERE id IN (4, 17)")
    assert replay(scenario.engine, es, spec) == (2, 0)
    assert indexed(es, scenario.index)["17"]["title_slug"] == "defused"
    (after,) = run_verify([spec], [spec])
    assert after.ok and after.pg_count == 30, after.lines()
