"""A full sync's progress in the run's event log: aggregated batches, problems at once."""

import dagster as dg

from sync_pipeline.core.bulk import BatchResult, Rejected
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
        progress(BatchResult(batch=number, indexed=100, seconds=1.0))
    progress.flush()
    progress.flush()  # nothing left: no empty observation
    spans = [(_meta(e)["first_batch"], _meta(e)["batch"]) for e in events]
    assert spans == [(1, 1), (2, 5), (6, 7)]  # batch 5 at 15 s, 12 s after the first
    assert [_meta(e)["indexed"] for e in events] == [100, 400, 200]
    assert [_meta(e)["docs_so_far"] for e in events] == [100, 500, 700]
    assert _meta(events[1])["docs_per_s"] == round(400 / 12, 1)


def test_a_batch_with_a_problem_is_reported_alone_and_at_once():
    progress, events, clock = _progress()
    progress(BatchResult(batch=1, indexed=10))
    clock.now = 1.0
    progress(BatchResult(batch=2, indexed=10))
    rejected = Rejected("7", {"_op_type": "index", "_id": "7"}, {"reason": "mapper_parsing_exception"})
    progress(BatchResult(batch=3, indexed=9, rejected=[rejected], errors=[{"reason": "bad"}]))
    progress(BatchResult(batch=4, indexed=5, failed=5))
    metas = [_meta(e) for e in events]
    assert [m["batch"] for m in metas] == [1, 2, 3, 4]  # batch 2 flushed before the bad one
    assert metas[2]["dead_lettered"] == 1 and metas[2]["first_error"] == '{"reason": "bad"}'
    assert metas[3]["failed"] == 5
    progress.flush()
    assert len(events) == 4
