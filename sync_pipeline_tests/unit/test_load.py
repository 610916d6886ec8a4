"""Pure parts of the load: bulk actions, batching, retry policy."""

import orjson
import pytest

from sync_pipeline.core.load.bulk import BatchResult, BulkBody, entry_doc, iter_bodies, rebody
from sync_pipeline.core.load.counts import Counts
from sync_pipeline.core.spec.model import RetrySpec
from sync_pipeline.io.search import SearchApiError, SearchConnectionError
from sync_pipeline.io.search.indices import is_transient, with_backoff


def api_error(status: int) -> SearchApiError:
    return SearchApiError(status, {}, f"status {status}")


def test_documents_become_action_and_source_lines():
    doc = entry_doc({"_id": "7", "_op": "index", "_version": 12, "_source": {"a": "é"}})
    action, source = doc.split(b"\n", 1)
    assert orjson.loads(action) == {"index": {"_id": "7", "version": 12, "version_type": "external_gte"}}
    assert source == '{"a":"é"}\n'.encode()
    assert entry_doc({"_id": "7", "_op": "delete"}) == b'{"delete":{"_id":"7"}}\n'


def _lines(n: int, source: bytes = b'{"x":1}\n') -> list[bytes]:
    lines = []
    for i in range(n):
        if i % 3 == 2:
            lines.append(b'{"delete":{"_id":"%d"}}\n' % i)
        else:
            lines += [b'{"index":{"_id":"%d"}}\n' % i, source]
    return lines


def _ids(body: BulkBody) -> list[str]:
    return [next(iter(orjson.loads(body.doc(i)[0]).values()))["_id"] for i in range(len(body))]


def test_bodies_hold_at_most_max_docs_and_keep_every_document_once_in_order():
    bodies = list(iter_bodies(_lines(10), max_docs=4))
    assert [len(b) for b in bodies] == [4, 4, 2]
    assert [i for body in bodies for i in _ids(body)] == [str(i) for i in range(10)]
    assert [body.is_delete(i) for body in bodies for i in range(len(body))] == [i % 3 == 2 for i in range(10)]
    assert [body.doc(i)[1] is None for body in bodies for i in range(len(body))] == [
        i % 3 == 2 for i in range(10)
    ]
    assert b"".join(b.data for b in bodies) == b"".join(_lines(10))  # the bytes travel unchanged


def test_bodies_are_cut_by_bytes_but_an_oversized_document_still_travels_alone():
    big = b'{"x":"' + b"y" * 1000 + b'"}\n'
    bodies = list(iter_bodies(_lines(4, big), max_docs=100, max_bytes=2500))
    assert [len(b) for b in bodies] == [3, 1]  # two big documents and a small delete, then one more
    assert [len(b) for b in iter_bodies(_lines(2, big), max_docs=100, max_bytes=10)] == [1, 1]


def test_rebody_passes_bodies_within_the_limits_and_cuts_the_others():
    (whole,) = iter_bodies(_lines(10), max_docs=100)
    assert next(rebody([whole], max_docs=100)) is whole  # no copy when it already fits
    cut = list(rebody([whole], max_docs=4))
    assert [len(b) for b in cut] == [4, 4, 2] and [i for b in cut for i in _ids(b)] == _ids(whole)
    assert [len(b) for b in rebody([whole], max_docs=100, max_bytes=10)] == [1] * 10


def test_a_subset_of_a_body_is_those_documents_bytes():
    (body,) = iter_bodies(_lines(6), max_docs=100)
    part = body.subset([1, 2, 5])
    assert _ids(part) == ["1", "2", "5"] and part.deletes() == 2
    assert part.data == body.data[body.starts[1] : body.starts[3]] + body.data[body.starts[5] :]


def test_a_body_splits_into_consecutive_parts_holding_every_document_once():
    (body,) = iter_bodies(_lines(10), max_docs=100)
    parts = body.split(3)
    assert [len(p) for p in parts] == [3, 3, 4]
    assert [i for p in parts for i in _ids(p)] == _ids(body)
    assert b"".join(p.data for p in parts) == body.data
    assert sum(p.deletes() for p in parts) == body.deletes()
    assert [len(p) for p in body.split(20)] == [1] * 10  # never an empty part


def test_a_batch_sent_in_parts_counts_every_part_and_keeps_the_first_five_errors():
    whole = BatchResult(batch=4)
    first = BatchResult(
        batch=4, answered=Counts(indexed=5, stale_skipped=1), stale_ids=["a"], stale_versions={"a": 9}
    )
    first.errors = [{"n": i} for i in range(4)]
    second = BatchResult(batch=4, answered=Counts(indexed=2, deleted=3, failed=1, conflicts=1), seconds=0.5)
    second.errors = [{"n": i} for i in range(4, 8)]
    whole.absorb(first)
    whole.absorb(second)
    counts = (whole.indexed, whole.deleted, whole.stale_skipped, whole.failed, whole.conflicts)
    assert counts == (7, 3, 1, 1, 1)
    assert whole.stale_ids == ["a"] and whole.stale_versions == {"a": 9}
    assert [e["n"] for e in whole.errors] == [0, 1, 2, 3, 4] and whole.seconds == 0.5


def test_a_truncated_staged_file_is_an_error_not_a_silent_loss():
    with pytest.raises(ValueError, match="action line without its source"):
        list(iter_bodies([b'{"index":{"_id":"1"}}\n'], max_docs=10))


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_transient_statuses_are_retried(status):
    assert is_transient(api_error(status))


def test_client_errors_are_not_transient():
    assert not is_transient(api_error(400))
    assert not is_transient(ValueError("x"))


def test_backoff_retries_until_success_with_growing_capped_sleeps():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise api_error(503)
        return "ok"

    policy = RetrySpec(attempts=5, initial_seconds=1, max_backoff_seconds=3)
    assert with_backoff(flaky, policy, sleep=sleeps.append) == "ok"
    assert len(calls) == 4
    assert len(sleeps) == 3
    assert all(0 <= s <= cap for s, cap in zip(sleeps, [1, 2, 3], strict=True))


def test_backoff_gives_up_after_the_last_attempt():
    def down():
        raise SearchConnectionError("refused")

    with pytest.raises(SearchConnectionError):
        with_backoff(down, RetrySpec(attempts=3), sleep=lambda s: None)


def test_backoff_does_not_retry_permanent_errors():
    calls = []

    def bad():
        calls.append(1)
        raise SearchApiError(400, {"error": {"type": "mapper_parsing_exception"}}, "mapper_parsing_exception")

    with pytest.raises(SearchApiError):
        with_backoff(bad, RetrySpec(attempts=5), sleep=lambda s: None)
    assert calls == [1]


def test_backoff_stops_at_the_total_time_cap():
    now = [0.0]
    calls = []

    def always_503():
        calls.append(1)
        raise api_error(503)

    def sleep(seconds):
        now[0] += seconds

    policy = RetrySpec(attempts=50, initial_seconds=10, max_backoff_seconds=10, max_total_seconds=25)
    with pytest.raises(SearchApiError):
        with_backoff(always_503, policy, sleep=sleep, clock=lambda: now[0])
    assert now[0] <= 25 and len(calls) < 50
