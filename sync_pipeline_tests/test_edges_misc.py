"""Edges that drifted silently (issue 30, items 6, 7, 8, 12), each on the real servers: a hot
standby as the source, a naive updated_at west of UTC, a mapping change killed before its
re-send, and a large load into the live index."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_pipeline.apps.cli.runner import run_verify
from sync_pipeline.core.bulk import BatchResult
from sync_pipeline.core.windows import Window
from sync_pipeline.io.staging import StagingArea
from sync_pipeline.ops.sync_window import WindowResult, WindowRun, sync_window

from .conftest import CHAOS_RESULTS

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

WHEN = "2026-02-10 08:00:00+00"
EVERYTHING = Window(None, None, include_null_updated_at=True)


def _sync(scenario, spec, live, tmp_path: Path, window: Window = EVERYTHING, on_batch=None) -> WindowResult:
    run = WindowRun(
        spec, window, "w", live.pg_url, StagingArea(tmp_path), on_batch=on_batch, log=lambda _: None
    )
    return sync_window(run, scenario.es)


def _verified(spec, name: str, rows: int) -> None:
    (report,) = run_verify([spec], [spec])
    assert report.ok, report.lines()
    CHAOS_RESULTS.append((name, rows, report.drift, 0))


# --- 12: a large load never takes the live index's replicas ----------------------------------------


def test_a_full_sync_into_the_live_index_keeps_its_replicas_throughout(scenario, insert_rows, live, tmp_path):
    es = scenario.es
    insert_rows([1], WHEN)
    spec = scenario.spec()  # 50 rows a body
    _sync(scenario, spec, live, tmp_path)  # creates the index behind its alias
    es.indices.put_settings(index=scenario.index, settings={"index": {"number_of_replicas": 1}})
    insert_rows(range(2, 201), WHEN)
    seen: list[str] = []

    def observe(_: BatchResult) -> None:
        # between bodies, while drains may be writing to the same index
        found = es.indices.get_settings(index=scenario.index, name="index.number_of_replicas").body
        seen.extend(v["settings"]["index"]["number_of_replicas"] for v in found.values())

    result = _sync(scenario, spec, live, tmp_path, on_batch=observe)
    assert result.totals.batches >= 4 and len(seen) == result.totals.batches
    assert set(seen) == {"1"}, seen
    _verified(spec, "full sync into the live index (replicas kept)", 200)
