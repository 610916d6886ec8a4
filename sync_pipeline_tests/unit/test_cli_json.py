"""The `--json` shapes (docs/cli.md), built from the result objects the text output prints, and
what `--json` says without a server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sync_pipeline.apps.cli import json_shapes
from sync_pipeline.apps.cli.parser import JSON_EXAMPLES, build_parser
from sync_pipeline.apps.cli.runner import HistoryRun, SyncSummary
from sync_pipeline.apps.cli.search import SearchHit, SearchResult, search_document
from sync_pipeline.core.documents.diff import Mismatch, VerifyReport
from sync_pipeline.core.load.bulk import LoadTotals
from sync_pipeline.core.load.counts import Counts
from sync_pipeline.core.report.run_totals import BatchRecord
from sync_pipeline.ops.health import BacklogStatus, CaptureIssue, DeadLetterStatus, HealthReport, IndexStatus
from sync_pipeline_tests.support.cli import cli
from sync_pipeline_tests.support.paths import ROOT


def test_an_error_with_json_leaves_stdout_empty_and_keeps_exit_2():
    result = cli("--config", str(ROOT / "sync.yaml"), "sync", "--spec", "products", "--json")
    assert result.returncode == 2 and result.stdout == ""
    assert "give --full, or --start" in result.stderr
    purge = cli("--config", str(ROOT / "sync.yaml"), "dead-letters", "purge", "--json")
    assert purge.returncode == 2 and "--json is for dead-letters list" in purge.stderr


def roundtrip(doc: dict) -> dict:
    """What a reader of stdout gets."""
    return json.loads(json_shapes.dumps(doc))


def test_every_command_with_json_has_a_versioned_schema_and_the_flag():
    assert set(JSON_EXAMPLES) == set(json_shapes.VERSIONS)
    for command in JSON_EXAMPLES:
        argv = {"search": ["search", "--spec", "s", "q"], "dead-letters": ["dead-letters", "list"]}.get(
            command, [command, "--spec", "s"] if command == "sync" else [command]
        )
        assert build_parser().parse_args([*argv, "--json"]).json is True
        assert build_parser().parse_args(argv).json is False
    assert json_shapes.schema("dead-letters") == "sync_pipeline.dead-letters/1"


def test_json_safe_gives_iso_utc_datetimes_and_no_nan():
    plus_two = timezone(timedelta(hours=2))
    doc = {
        "at": datetime(2026, 3, 1, 12, 0, tzinfo=plus_two),
        "naive": datetime(2026, 3, 1, 12, 0),
        "rates": [float("nan"), float("inf"), 1.5],
        "pair": (1, "a"),
    }
    assert roundtrip(doc) == {
        "at": "2026-03-01T10:00:00+00:00",
        "naive": "2026-03-01T12:00:00+00:00",
        "rates": [None, None, 1.5],
        "pair": [1, "a"],
    }


def test_verify_shape_with_drift_and_after_a_fix():
    drift = VerifyReport(
        spec="orders",
        index="orders",
        pg_count=10,
        es_count=9,
        missing=1,
        mismatched=1,
        missing_ids=["5"],
        mismatches=[Mismatch("7", ["name", "price"])],
        repaired=LoadTotals(Counts(indexed=2, deleted=0, failed=1, dead_lettered=1)),
    )
    clean = VerifyReport(spec="orders", index="orders", pg_count=10, es_count=10)
    doc = roundtrip(json_shapes.verify_document([drift], [clean], ok=True))
    assert doc["schema"] == "sync_pipeline.verify/1" and doc["ok"] is True
    (report,) = doc["reports"]
    assert report == {
        "spec": "orders",
        "index": "orders",
        "ok": False,
        "drift": 2,
        "postgres_count": 10,
        "index_count": 9,
        "missing": 1,
        "extra": 0,
        "mismatched": 1,
        "missing_ids": ["5"],
        "extra_ids": [],
        "mismatches": [{"id": "7", "fields": ["name", "price"]}],
        "mapping_differences": [],
        "fixed": {"indexed": 2, "deleted": 0, "failed": 2},
    }
    assert doc["after_fix"][0]["ok"] is True and doc["after_fix"][0]["fixed"] is None
    assert roundtrip(json_shapes.verify_document([clean], None, ok=True))["after_fix"] is None


def test_sync_and_flush_shapes_carry_the_run_summary():
    summary = SyncSummary(
        Counts(indexed=25, deleted=5, batches=2), 30, seconds=2.0, spec="orders", partitions="2026-02-01"
    )
    summary.success, summary.run_id, summary.wall_seconds = True, "abc", 4.0
    doc = roundtrip(json_shapes.runs_document("sync", [summary], ok=True))
    assert doc["schema"] == "sync_pipeline.sync/1"
    (run,) = doc["runs"]
    assert run == {
        "spec": "orders",
        "partitions": "2026-02-01",
        "run_id": "abc",
        "success": True,
        "error": None,
        "extracted": 30,
        "indexed": 25,
        "deleted": 5,
        "stale_skipped": 0,
        "conflicts": 0,
        "failed": 0,
        "dead_lettered": 0,
        "batches": 2,
        "claimed": 0,
        "load_seconds": 2.0,
        "wall_seconds": 4.0,
        "docs_per_second": 7.5,
        "load_docs_per_second": 15.0,
    }
    failed = SyncSummary(spec="orders", error="boom")
    flushed = roundtrip(json_shapes.runs_document("flush", [failed], ok=False))
    assert flushed["schema"] == "sync_pipeline.flush/1" and flushed["ok"] is False
    assert flushed["runs"][0]["error"] == "boom" and flushed["runs"][0]["docs_per_second"] == 0.0


def test_history_shape():
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    run = HistoryRun(
        run_id="r1",
        job="orders_drain",
        spec="orders",
        kind="drain",
        partitions="-",
        status="success",
        start=start,
        end=start + timedelta(seconds=2.5),
        totals={
            "batches": 1,
            "indexed": 3,
            "failed": 0,
            "stale_skipped": 1,
            "dead_lettered": 0,
            "deleted": 0,
        },
    )
    unfinished = HistoryRun("r2", "orders_sync", "orders", "sync", "2026-03-01", "started", start, None, {
        "batches": 0, "indexed": 0, "failed": 0, "stale_skipped": 0, "dead_lettered": 0})  # fmt: skip
    doc = roundtrip(json_shapes.history_document([run, unfinished]))
    assert doc["schema"] == "sync_pipeline.history/1" and doc["ok"] is True
    assert doc["runs"][0] == {
        "run_id": "r1",
        "job": "orders_drain",
        "spec": "orders",
        "kind": "drain",
        "partitions": "-",
        "status": "success",
        "start": "2026-03-01T12:00:00+00:00",
        "end": "2026-03-01T12:00:02.500000+00:00",
        "duration_seconds": 2.5,
        "batches": 1,
        "indexed": 3,
        "failed": 0,
        "stale_skipped": 1,
        "dead_lettered": 0,
    }
    assert doc["runs"][1]["end"] is None and doc["runs"][1]["duration_seconds"] is None
    assert "batches" not in doc  # only with --run ID --batches


def test_history_batches_shape():
    run = HistoryRun("r1", "orders_sync", "orders", "sync", "2026-03-01…2026-04-01", "success", None, None, {
        "batches": 2, "indexed": 9, "failed": 1, "stale_skipped": 0, "dead_lettered": 0})  # fmt: skip
    batches = [
        BatchRecord("orders_index", 1, Counts(indexed=5), seconds=0.25, docs_per_s=20.0),
        BatchRecord(
            "orders_index", 2, Counts(indexed=4, failed=1, stale_skipped=2), seconds=0.5, docs_per_s=14.0
        ),
    ]
    doc = roundtrip(json_shapes.history_document([run], batches))
    assert doc["schema"] == "sync_pipeline.history/1" and [r["run_id"] for r in doc["runs"]] == ["r1"]
    assert doc["batches"][1] == {
        "asset": "orders_index",
        "batch": 2,
        "partitions": "2026-03-01…2026-04-01",
        "indexed": 4,
        "deleted": 0,
        "stale_skipped": 2,
        "conflicts": 0,
        "failed": 1,
        "dead_lettered": 0,
        "seconds": 0.5,
        "docs_per_second": 14.0,
    }


def test_doctor_shape_numbers_nothing_and_marks_what_needs_action():
    report = HealthReport(
        capture=[
            CaptureIssue("gone", "public.t", "sync_pipeline_gone_t", "spec not in the file", ["DROP …"])
        ],
        backlog=[
            BacklogStatus("orders", True, 3, 0, 12.5),
            BacklogStatus("gone", False, 1, 0, None, "x", ["f"]),
        ],
        dead_letters=[DeadLetterStatus("orders", 2, ["sync-pipeline dead-letters replay --spec orders"])],
        indexes=[IndexStatus("orders", "orders", ["orders_v1"])],
    )
    doc = roundtrip(json_shapes.doctor_document(report))
    assert doc["schema"] == "sync_pipeline.doctor/1"
    assert doc["ok"] is False and doc["findings"] == 3
    assert doc["capture"] == [
        {
            "spec": "gone",
            "table": "public.t",
            "function": "sync_pipeline_gone_t",
            "problem": "spec not in the file",
            "needs_action": True,
            "fix": ["DROP …"],
        }
    ]
    assert doc["backlog"][0] == {
        "spec": "orders",
        "in_file": True,
        "pending": 3,
        "truncates": 0,
        "oldest_age_seconds": 12.5,
        "problem": None,
        "needs_action": False,
        "fix": [],
    }
    assert doc["dead_letters"][0]["count"] == 2 and doc["dead_letters"][0]["needs_action"] is True
    assert doc["indexes"] == [
        {
            "spec": "orders",
            "alias": "orders",
            "indices": ["orders_v1"],
            "missing": False,
            "needs_action": False,
            "fix": [],
        }
    ]
    assert doc["slots"] == []


def test_dead_letters_shape():
    row = {
        "id": 4,
        "spec": "orders",
        "partition": None,
        "run_id": "r1",
        "doc_id": "9",
        "document": {"secret": "not listed"},
        "error": {"type": "mapper_parsing_exception", "reason": "failed to parse"},
        "created_at": datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    }
    doc = roundtrip(json_shapes.dead_letters_document([row], limit=50))
    assert doc == {
        "schema": "sync_pipeline.dead-letters/1",
        "ok": True,
        "limit": 50,
        "dead_letters": [
            {
                "id": 4,
                "spec": "orders",
                "partition": None,
                "run_id": "r1",
                "doc_id": "9",
                "error": {"type": "mapper_parsing_exception", "reason": "failed to parse"},
                "created_at": "2026-03-01T12:00:00+00:00",
            }
        ],
    }


@pytest.mark.parametrize("hits", [[SearchHit("1", 2.5, {"name": ["<em>tea</em> cup"]})], []])
def test_search_shape(hits):
    result = SearchResult("products", "products", "tea", ["name", "tags"], len(hits), hits)
    doc = roundtrip(search_document(result, ok=bool(hits)))
    assert doc["schema"] == "sync_pipeline.search/1" and doc["ok"] is bool(hits)
    assert {k: doc[k] for k in ("spec", "index", "query", "fields", "total")} == {
        "spec": "products",
        "index": "products",
        "query": "tea",
        "fields": ["name", "tags"],
        "total": len(hits),
    }
    assert doc["hits"] == [{"id": h.id, "score": h.score, "highlight": h.highlight} for h in hits]


def test_a_confirmation_asks_on_stderr_so_stdout_stays_the_document(monkeypatch, capsys):
    import argparse
    import sys

    from sync_pipeline.apps.cli.session import confirm

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda *prompt: "y")
    confirm(argparse.Namespace(yes=False), "verify --fix would re-index or delete 2,000 documents")
    out, err = capsys.readouterr()
    assert out == "" and err == "verify --fix would re-index or delete 2,000 documents. Go on? [y/N] "
