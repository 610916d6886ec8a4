"""The code location: assets, kinds, groups, jobs and windows generated from specs."""

from datetime import UTC, datetime

import dagster as dg

from sync_pipeline.core.spec.model import load_specs
from sync_pipeline.defs import build_definitions
from sync_pipeline.defs.partitions import partitions_for, window_for
from sync_pipeline_tests.support.paths import ROOT


def repo_specs():
    return load_specs(ROOT / "sync.yaml")


def test_definitions_snapshot_for_the_repository_spec():
    defs = build_definitions(repo_specs())
    graph = defs.resolve_asset_graph()
    keys = sorted(k.to_user_string() for k in graph.get_all_asset_keys())
    assert keys == ["products_changes", "products_documents", "products_extract", "products_index"]
    extract = graph.get(dg.AssetKey("products_extract"))
    index = graph.get(dg.AssetKey("products_index"))
    assert extract.kinds == {"postgres", "parquet"}
    assert index.kinds == {"elasticsearch"}
    assert {graph.get(k).group_name for k in graph.get_all_asset_keys()} == {"products"}
    assert graph.get(dg.AssetKey("products_changes")).partitions_def is None
    assert graph.get(dg.AssetKey("products_documents")).parent_keys == {dg.AssetKey("products_extract")}
    assert index.parent_keys == {dg.AssetKey("products_documents")}
    assert index.backfill_policy == dg.BackfillPolicy.single_run()
    assert {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys} == {
        (asset, check)
        for asset in ("products_index", "products_changes")
        for check in ("no_failed_documents", "no_dead_letters")
    } | {("products_index", "window_matches_source"), ("products_index", "mapping_matches_spec")}
    job = defs.resolve_job_def("products_sync")
    assert job.partitions_def == partitions_for(repo_specs()[0])
    assert defs.resolve_job_def("products_drain").partitions_def is None
    repository = defs.get_repository_def()
    assert sorted(s.name for s in repository.sensor_defs) == [
        "products_buffer_sensor",
        "products_catchup_sensor",
        "sync_freshness_alerts",
        "sync_quality_alerts",
        "sync_run_failure_alerts",
    ]
    assert [s.name for s in repository.schedule_defs] == ["products_window_schedule"]
    assert repository.get_schedule_def("products_window_schedule").job_name == "products_sync"


def test_every_job_runs_its_steps_in_the_run_process():
    # a process per step (Dagster's default executor) re-imports everything: 9 s per drain run
    defs = build_definitions(repo_specs())
    for name in ("products_sync", "products_drain", "products_rebuild"):
        assert defs.resolve_job_def(name).executor_def is dg.in_process_executor, name


def test_partitions_follow_the_spec_grain_and_include_the_open_window():
    spec = repo_specs()[0]
    partitions = partitions_for(spec)
    keys = partitions.get_partition_keys(current_time=datetime(2026, 10, 3, 12, tzinfo=UTC))
    assert keys == ["2026-10-01", "2026-10-02", "2026-10-03"]


def test_windows_first_owns_the_past_and_nulls_last_owns_the_future():
    spec = repo_specs()[0]
    partitions = partitions_for(spec)
    first = partitions.time_window_for_partition_key(partitions.get_first_partition_key())
    window, key = window_for(partitions, first.start, first.end)
    assert window.start is None and window.end == first.end and window.include_null_updated_at
    assert key == "20261001T0000_20261002T0000"

    last = partitions.get_last_partition_window()
    window, _ = window_for(partitions, last.start, last.end)
    assert window.start == last.start and window.end is None and not window.include_null_updated_at

    middle = partitions.time_window_for_partition_key("2026-10-05")
    window, _ = window_for(partitions, middle.start, middle.end)
    assert (window.start, window.end) == (middle.start, middle.end)


def test_a_start_off_the_grain_boundary_still_gives_the_first_window_the_past():
    from sync_pipeline.core.spec.model import parse_specs

    text = (
        (ROOT / "sync.yaml")
        .read_text()
        .replace("grain: day", "grain: week")
        .replace(
            'start: "2026-10-01"',
            'start: "2026-10-07"',  # a Wednesday
        )
    )
    partitions = partitions_for(parse_specs(text)[0])
    first = partitions.get_first_partition_window()
    assert first.start > datetime(2026, 10, 7, tzinfo=UTC)  # windows begin on the next boundary
    window, _ = window_for(partitions, first.start, first.end)
    assert window.start is None and window.include_null_updated_at
