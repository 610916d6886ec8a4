"""A full sync's progress in the run's event log: aggregated batches, problems at once, and
every batch in one table at the end."""

import dagster as dg

from sync_pipeline.core import naming
from sync_pipeline.core.load.bulk import BatchResult, Rejected
from sync_pipeline.core.load.counts import Counts
from sync_pipeline.core.report.run_totals import fold_batches
from sync_pipeline.defs.reporting import BatchProgress

KEY = dg.AssetKey("s_index")


class _Context:
    def __init__(self) -> None:
        self.events: list[dg.AssetObservation] = []

    def log_event(self, event: dg.AssetObservation) -> None:
        self.events.append(event)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _progress(every: float = 10.0):
    context, clock = _Context(), _Clock()
    return BatchProgress(context, KEY, every_seconds=every, clock=clock), context.events, clock


def _meta(event: dg.AssetObservation) -> dict:
    return {k: v.value if hasattr(v, "value") else v for k, v in event.metadata.items()}


def test_the_first_batch_at_once_then_one_observation_per_interval():
    progress, events, clock = _progress()
    for number in range(1, 8):
        clock.now = number * 3.0  # 3, 6, …, 21 s
        progress(BatchResult(batch=number, answered=Counts(indexed=100), seconds=1.0))
    progress.flush()
    progress.flush()  # nothing left: no empty observation
    spans = [(_meta(e)["first_batch"], _meta(e)["batch"]) for e in events]
    assert spans == [(1, 1), (2, 5), (6, 7)]  # batch 5 at 15 s, 12 s after the first
    assert [_meta(e)["indexed"] for e in events] == [100, 400, 200]
    assert [_meta(e)["docs_so_far"] for e in events] == [100, 500, 700]
    assert _meta(events[1])["docs_per_s"] == round(400 / 12, 1)


def test_a_batch_with_a_problem_is_reported_alone_and_at_once():
    progress, events, clock = _progress()
    progress(BatchResult(batch=1, answered=Counts(indexed=10)))
    clock.now = 1.0
    progress(BatchResult(batch=2, answered=Counts(indexed=10)))
    rejected = Rejected("7", {"_op_type": "index", "_id": "7"}, {"reason": "mapper_parsing_exception"})
    progress(
        BatchResult(batch=3, answered=Counts(indexed=9), rejected=[rejected], errors=[{"reason": "bad"}])
    )
    progress(BatchResult(batch=4, answered=Counts(indexed=5, failed=5)))
    metas = [_meta(e) for e in events]
    assert [m["batch"] for m in metas] == [1, 2, 3, 4]  # batch 2 flushed before the bad one
    assert metas[2]["dead_lettered"] == 1 and metas[2]["first_error"] == '{"reason": "bad"}'
    assert metas[3]["failed"] == 5
    progress.flush()
    assert len(events) == 4


def test_finish_logs_every_batch_once_in_one_table_problems_included():
    progress, events, clock = _progress()
    for number in range(1, 5):
        clock.now = number * 3.0
        progress(BatchResult(batch=number, answered=Counts(indexed=100), seconds=0.5))
    progress(BatchResult(batch=5, answered=Counts(indexed=98, failed=2), seconds=0.5))
    progress.finish()
    progress.finish()  # called again (the step's `finally`): nothing more
    table = events[-1].metadata[naming.BATCH_TABLE]
    assert [e for e in events if naming.BATCH_TABLE in e.metadata] == [events[-1]]
    rows = [record.data for record in table.records]
    assert [r["batch"] for r in rows] == [1, 2, 3, 4, 5]
    assert sum(r["indexed"] for r in rows) == 498 and rows[-1]["failed"] == 2
    assert rows[0]["docs_per_s"] == 200.0  # 100 documents in 0.5 s
    assert [c.name for c in table.schema.columns] == list(naming.BATCH_FIELDS)


def test_finish_without_batches_logs_no_table():
    progress, events, _ = _progress()
    progress.finish()
    assert events == []


def test_a_runs_batches_come_from_its_table_or_its_single_observations():
    table_rows = [{"batch": 2, "indexed": 5, "seconds": 0.5}, {"batch": 1, "indexed": 7, "failed": 1}]
    observations = [
        ("s_index", {"batch": 1, "indexed": 7, "failed": 1}),  # a problem batch: also in the table
        ("s_index", {"batch": 2, "first_batch": 1, "batches": 2, "indexed": 12}),  # progress: a sum
        ("s_index", {naming.BATCH_TABLE: table_rows}),
        ("s_changes", {"batch": 1, "indexed": 3, "deleted": 1, "docs_per_s": 40.0}),
    ]
    batches = fold_batches(observations)
    assert [(b.asset, b.batch, b.indexed, b.failed) for b in batches] == [
        ("s_index", 1, 7, 1),  # the table's rows by batch number, the problem batch once
        ("s_index", 2, 5, 0),
        ("s_changes", 1, 3, 0),
    ]
    assert batches[2].deleted == 1 and batches[2].docs_per_s == 40.0 and batches[1].seconds == 0.5


def test_a_drains_batches_keep_their_order_when_rounds_number_them_again():
    rounds = [("s_changes", {"batch": n, "indexed": i}) for n, i in ((1, 4), (2, 3), (1, 9))]
    assert [(b.batch, b.indexed) for b in fold_batches(rounds)] == [(1, 4), (2, 3), (1, 9)]
