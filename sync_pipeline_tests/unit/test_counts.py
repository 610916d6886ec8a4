"""The load counters, spelled once (core/load/counts.py): what adds, what a document counts in, and
the names and orders the run history, the CLI and the alerts show them under."""

from __future__ import annotations

import dataclasses

import pytest

from sync_pipeline.core import naming
from sync_pipeline.core.load.bulk import BatchResult, LoadTotals, Rejected
from sync_pipeline.core.load.counts import ALERT_ORDER, COUNTERS, PER_BATCH, RUN_ORDER, Counts
from sync_pipeline.core.report.run_totals import fold_batches, fold_materializations


def test_counts_add_counter_by_counter_and_every_document_counts_once():
    total = Counts(indexed=3, deleted=1, batches=1) + Counts(
        stale_skipped=2, failed=1, conflicts=1, batches=1
    )
    assert total == Counts(indexed=3, deleted=1, stale_skipped=2, conflicts=1, failed=1, batches=2)
    assert (total.written, total.docs) == (4, 8)


def test_counts_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Counts().indexed = 1  # type: ignore[misc]


def test_a_batchs_dead_letters_are_its_rejected_documents_and_a_load_counts_the_batch():
    rejected = Rejected("7", {"_op_type": "index", "_id": "7"}, {"reason": "mapper_parsing_exception"})
    batch = BatchResult(batch=1, answered=Counts(indexed=4, failed=1), rejected=[rejected])
    assert (batch.indexed, batch.failed, batch.dead_lettered, batch.docs) == (4, 1, 1, 6)
    totals = LoadTotals()
    totals.add(batch)
    totals.add(batch)
    assert totals.counts == Counts(indexed=8, failed=2, dead_lettered=2, batches=2)
    with pytest.raises(AttributeError):
        totals.indexed = 0  # type: ignore[misc]


def test_marking_conflicts_moves_stale_documents_to_conflicts():
    batch = BatchResult(batch=1, answered=Counts(stale_skipped=3), stale_ids=["a", "b", "c"])
    batch.mark_conflicts({"b", "z"})
    assert (batch.stale_skipped, batch.conflicts, batch.stale_ids) == (2, 1, ["a", "c"])


def test_the_names_and_orders_shown_to_users_are_unchanged():
    assert COUNTERS == (
        "indexed",
        "deleted",
        "stale_skipped",
        "conflicts",
        "failed",
        "dead_lettered",
        "batches",
    )
    assert sorted(ALERT_ORDER) == sorted(COUNTERS) and sorted((*RUN_ORDER, "batches")) == sorted(COUNTERS)
    assert ALERT_ORDER == (
        "batches",
        "indexed",
        "deleted",
        "failed",
        "stale_skipped",
        "conflicts",
        "dead_lettered",
    )
    assert PER_BATCH == ("indexed", "deleted", "stale_skipped", "conflicts", "failed", "dead_lettered")
    batch_table = ("batch", "indexed", "deleted", "stale_skipped", "conflicts", "failed", "dead_lettered")
    assert (*batch_table, "seconds", "docs_per_s") == naming.BATCH_FIELDS


def test_a_runs_totals_fold_each_load_assets_counters_once():
    metadata = {"indexed": 5, "failed": 1, "batches": 2, "claimed": 3, "seconds": 1.5, "index": "orders"}
    totals = fold_materializations(
        [("orders_extract", {naming.ROW_COUNT: 6}), ("orders_index", metadata), ("orders_index", metadata)]
    )
    assert totals.counts == Counts(indexed=5, failed=1, batches=2)
    assert (totals.extracted, totals.claimed, totals.seconds) == (6, 3, 1.5)


def test_a_recorded_batch_reads_its_counters_from_its_metadata():
    (record,) = fold_batches(
        [("orders_index", {"batch": 4, "indexed": 9, "dead_lettered": 1, "seconds": 0.5})]
    )
    assert (record.batch, record.counts, record.seconds) == (4, Counts(indexed=9, dead_lettered=1), 0.5)
