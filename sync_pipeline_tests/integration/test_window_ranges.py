"""A window too large for one statement is read as key ranges, resumably (issue 27, item 5).

Every row of these tables shares one updated_at (a bulk import), so the whole table is one
window. With `partitions.range_rows` below its size the window is read as several key ranges,
each one statement; a run stopped after some ranges resumes with the range after the last one
Elasticsearch acknowledged (recorded in the index's `_meta`), and a drain's change applied
while the ranges are read keeps its version.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sync_pipeline.core.load.bulk import BatchResult
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.core.windows import Window
from sync_pipeline.defs.assets import load_window
from sync_pipeline.io.search.indices import index_meta, write_index
from sync_pipeline.io.staging import StagingArea
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline.ops.sync_window import WindowResult, WindowRun
from sync_pipeline.ops.verify import verify_spec
from sync_pipeline.ops.window_ranges import RANGES_KEY
from sync_pipeline_tests.conftest import indexed

IMPORTED_AT = "2026-02-01T00:00:00+00:00"


class Interrupted(RuntimeError):
    """Stands for the process dying in the middle of a range."""


def ranged(spec_text: str, range_rows: int) -> str:
    return spec_text.replace("grain: month", f"grain: month\n      range_rows: {range_rows}", 1)


def run_window(scenario, spec, tmp_path, on_batch=None, log=None) -> WindowResult:
    lines = log if log is not None else []
    run = WindowRun(
        spec,
        Window(None, None, include_null_updated_at=True),
        "all",
        scenario.engine,
        StagingArea(tmp_path),
        on_batch=on_batch,
        log=lines.append,
    )
    return load_window(run, scenario.es)


def stop_at_batch(number: int, then=None):
    """An on_batch hook that runs `then` (or dies) when the `number`th batch was acknowledged."""
    seen = []

    def hook(batch: BatchResult) -> None:
        seen.append(batch)
        if len(seen) == number:
            if then is None:
                raise Interrupted(f"killed after batch {number}")
            then()

    return hook


def records(es, index: str) -> dict:
    return index_meta(es, write_index(es, index) or index).get(RANGES_KEY) or {}


def verified(scenario, spec) -> int:
    with scenario.engine.connect() as conn:
        return verify_spec(conn, scenario.es, spec).drift


def test_a_single_timestamp_window_above_range_rows_syncs_whole_in_several_ranges(
    scenario, insert_rows, tmp_path
):
    insert_rows(range(1, 1001), IMPORTED_AT)
    spec = parse_specs(ranged(scenario.spec_text(), 300), origin="test")[0]
    log: list[str] = []
    result = run_window(scenario, spec, tmp_path, log=log)
    confirmed = [line for line in log if "key range" in line and "confirmed" in line]
    assert len(confirmed) == 4, log  # 300 + 300 + 300 + 100
    assert result.extracted.rows == 1000 and result.totals.indexed == 1000
    assert set(indexed(scenario.es, scenario.index)) == {str(i) for i in range(1, 1001)}
    assert records(scenario.es, scenario.index) == {}  # a whole window leaves no record
    assert verified(scenario, spec) == 0
    # the staged documents hold every range's, for a re-run of the index stage alone
    assert sum(1 for _ in (tmp_path / spec.name / "all.ndjson").open("rb")) == 2 * 1000


def test_a_window_at_most_range_rows_is_still_one_statement(scenario, insert_rows, tmp_path):
    insert_rows(range(1, 301), IMPORTED_AT)
    spec = parse_specs(ranged(scenario.spec_text(), 300), origin="test")[0]
    log: list[str] = []
    result = run_window(scenario, spec, tmp_path, log=log)
    assert result.totals.indexed == 300
    assert not [line for line in log if "key range" in line], log


def test_a_run_killed_in_a_later_range_resumes_after_the_last_confirmed_range(
    scenario, insert_rows, tmp_path
):
    insert_rows(range(1, 1001), IMPORTED_AT)
    spec = parse_specs(ranged(scenario.spec_text(), 300), origin="test")[0]
    # batch_size 50: six batches per range; the 14th is the second of the third range
    with pytest.raises(Interrupted):
        run_window(scenario, spec, tmp_path, on_batch=stop_at_batch(14))
    record = records(scenario.es, scenario.index)["all"]
    assert (record["ranges"], record["rows"], record["after"]) == (2, 600, ["600"])

    resumed = run_window(scenario, spec, tmp_path)
    # the resumed run read and indexed the last two ranges only, not the 600 rows confirmed
    assert resumed.extracted.rows == 400
    assert (resumed.extracted.resumed_ranges, resumed.extracted.key_ranges) == (2, 2)
    assert resumed.totals.indexed == 400
    assert set(indexed(scenario.es, scenario.index)) == {str(i) for i in range(1, 1001)}
    assert records(scenario.es, scenario.index) == {}
    assert verified(scenario, spec) == 0

    # a later run of the window (nothing left to resume) reads it whole again
    assert run_window(scenario, spec, tmp_path).extracted.rows == 1000


def test_a_record_of_another_shape_of_documents_is_not_resumed(scenario, insert_rows, tmp_path):
    insert_rows(range(1, 701), IMPORTED_AT)
    spec = parse_specs(ranged(scenario.spec_text(), 300), origin="test")[0]
    with pytest.raises(Interrupted):
        run_window(scenario, spec, tmp_path, on_batch=stop_at_batch(8))
    assert records(scenario.es, scenario.index)["all"]["ranges"] == 1
    # the same window, but documents of another shape: what the record vouches for is not them
    changed = ranged(scenario.spec_text(), 300).replace("[trim, empty_to_null]", "[trim]")
    other = parse_specs(changed, origin="test")[0]
    assert run_window(scenario, other, tmp_path).extracted.rows == 700


@pytest.fixture()
def composite(scenario):
    table = f"{scenario.table}_c"
    scenario.execute(
        f"CREATE TABLE {table} (region text, code int, title text, updated_at timestamptz, "
        "PRIMARY KEY (region, code))"
    )
    # text keys whose orders differ by collation, and quotes and backslashes a literal must carry
    regions = ["a", "B", "b", "é", "Z", "O'Brien", "back\\slash", "ü-umlaut", "zz"]
    # and a '%' in every key: a bound's literal must not be read as a placeholder ('%%' kept as two)
    regions = [f"{region}%" for region in regions] + ["100%%"]
    rows = [
        {"region": region, "code": code, "title": f"{region} {code}"}
        for region in regions
        for code in range(1, 12)
    ]
    scenario.execute(
        f"INSERT INTO {table} (region, code, title, updated_at) "
        f"VALUES (:region, :code, :title, '{IMPORTED_AT}')",
        rows,
    )
    text = f"""
specs:
  - name: {table}
    source:
      table: {table}
      primary_key: [region, code]
      updated_at: updated_at
    target:
      index: {table}
    partitions:
      grain: month
      start: "2026-01-01"
      range_rows: 20
    batch_size: 5
"""
    yield parse_specs(text, origin="test")[0], len(rows)
    scenario.execute(f"DROP TABLE IF EXISTS {table}")
    from sync_pipeline.io.search.indices import drop_target

    drop_target(scenario.es, table)


def test_a_composite_text_key_is_read_by_ranges_and_resumed(scenario, composite, tmp_path):
    spec, total = composite
    # batch_size 5: four batches per range of 20; the 13th is the first of the fourth range
    with pytest.raises(Interrupted):
        run_window(scenario, spec, tmp_path, on_batch=stop_at_batch(13))
    record = records(scenario.es, spec.target.index)["all"]
    assert (record["ranges"], record["rows"]) == (3, 60)
    resumed = run_window(scenario, spec, tmp_path)
    assert resumed.extracted.rows == total - 60 and resumed.totals.indexed == total - 60
    assert len(indexed(scenario.es, spec.target.index)) == total
    assert verified(scenario, spec) == 0


def test_a_drain_between_and_during_ranges_keeps_its_version(scenario, insert_rows, tmp_path):
    insert_rows(range(1, 401), IMPORTED_AT)
    spec = parse_specs(ranged(scenario.spec_text(), 200), origin="test")[0]
    install_capture(scenario.engine, spec)
    try:

        def change_and_drain() -> None:
            # the second range's statement has begun (its first batch was acknowledged): row 5
            # (first range, confirmed) and row 400 (this range, its old copy not sent yet) change,
            # and a drain applies both before the range sends row 400's copy
            with scenario.engine.begin() as conn:
                conn.execute(
                    sa.text(f"UPDATE {scenario.table} SET title = 'changed ' || id WHERE id IN (5, 400)")
                )
            drain(scenario.engine, scenario.es, spec)

        # batch_size 50: four batches per range; the 5th is the first of the second range
        result = run_window(scenario, spec, tmp_path, on_batch=stop_at_batch(5, then=change_and_drain))
    finally:
        uninstall_capture(scenario.engine, spec)
    docs = indexed(scenario.es, scenario.index)
    assert docs["5"]["title"] == "changed 5"
    assert docs["400"]["title"] == "changed 400"
    # the range's copy of row 400, read before the change, was refused as older than the drain's
    assert result.totals.stale_skipped >= 1
    first = scenario.es.get(index=scenario.index, id="5")["_version"]
    last = scenario.es.get(index=scenario.index, id="400")["_version"]
    assert first == last  # both written by the drain's one read
    assert verified(scenario, spec) == 0


def test_a_query_source_holding_a_percent_sign_is_read_by_ranges(scenario, composite, tmp_path):
    spec, total = composite
    table = spec.source.table
    text = f"""
specs:
  - name: {table}
    source:
      query: "SELECT * FROM {table} WHERE region LIKE '%'"
      primary_key: [region, code]
      updated_at: updated_at
    target:
      index: {table}
    partitions:
      grain: month
      start: "2026-01-01"
      range_rows: 20
    batch_size: 5
"""
    query_spec = parse_specs(text, origin="test")[0]
    log: list[str] = []
    result = run_window(scenario, query_spec, tmp_path, log=log)
    assert result.extracted.rows == total and result.totals.indexed == total
    assert len([line for line in log if "key range" in line and "confirmed" in line]) == -(-total // 20)
    assert verified(scenario, query_spec) == 0
