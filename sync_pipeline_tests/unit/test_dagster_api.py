"""sync_pipeline.apps.dagster_api without a Dagster: URL resolution and redaction, and the progress
report built from a run's observations (the real webserver and daemon: integration/)."""

from __future__ import annotations

import json

import pytest

from sync_pipeline.apps import dagster_api
from sync_pipeline.apps.dagster_api import reports


def test_url_resolution_and_redaction(monkeypatch):
    monkeypatch.delenv("SYNC_DAGSTER_URL", raising=False)
    assert dagster_api.resolve_url() == "http://127.0.0.1:3000"
    monkeypatch.setenv("SYNC_DAGSTER_URL", "https://dagster.internal:8443/prefix/")
    assert dagster_api.resolve_url() == "https://dagster.internal:8443/prefix"
    assert dagster_api.resolve_url("http://other:3000") == "http://other:3000"
    assert dagster_api.redact_url("https://u:p%40ss@h:1/x?token=t#f") == "https://u:***@h:1/x"
    with pytest.raises(dagster_api.DagsterApiError, match="invalid Dagster webserver URL"):
        dagster_api.run_report("ftp://host", "x")


def _observation(asset: str, table: list[dict] | None = None, **numbers: int) -> dict:
    """An ObservationEvent as logsForRun returns it (the shape the integration tests read)."""
    entries = [{"__typename": "IntMetadataEntry", "label": k, "intRepr": str(v)} for k, v in numbers.items()]
    if table is not None:
        records = {"records": [json.dumps(row) for row in table]}
        entries.append({"__typename": "TableMetadataEntry", "label": "batch_table", "table": records})
    return {"__typename": "ObservationEvent", "assetKey": {"path": [asset]}, "metadataEntries": entries}


def _sums(report: dict) -> tuple[int, int, int]:
    return report["totals"]["batches"], report["totals"]["indexed"], report["totals"]["failed"]


def test_a_loading_sync_reports_its_progress_until_its_batch_table_lists_every_batch():
    run = {"runId": "r", "jobName": "shop_sync", "status": "STARTED", "tags": []}
    loading = [
        _observation("shop_index", batch=1, first_batch=1, batches=1, indexed=50),
        _observation("shop_index", batch=2, failed=3, indexed=47),  # a batch with a problem, at once
        _observation("shop_index", batch=4, first_batch=3, batches=2, indexed=90),
    ]
    report = reports._summarise(run, loading)
    assert [(b["batch"], b["batches"]) for b in report["batches"]] == [(1, 1), (2, 1), (4, 2)]
    assert _sums(report) == (4, 187, 3)

    rows = [
        {"batch": 4, "indexed": 40, "failed": 0},  # concurrent requests end out of order
        {"batch": 1, "indexed": 50, "failed": 0},
        {"batch": 3, "indexed": 50, "failed": 0},
        {"batch": 2, "indexed": 47, "failed": 3},
    ]
    ended = [*loading, _observation("shop_index", table=rows)]
    report = reports._summarise({**run, "status": "SUCCESS"}, ended)
    assert [(b["batch"], b["indexed"], b["failed"], b["batches"]) for b in report["batches"]] == [
        (1, 50, 0, 1),
        (2, 47, 3, 1),
        (3, 50, 0, 1),
        (4, 40, 0, 1),
    ]
    assert _sums(report) == (4, 187, 3)
