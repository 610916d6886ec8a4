"""Pure parts of the load: bulk actions, batching, retry policy."""

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError, BadRequestError
from elasticsearch import ConnectionError as ESConnectionError

from sync_pipeline.load import RetryPolicy, bulk_action, chunked, is_transient, with_backoff


def api_error(status: int) -> ApiError:
    meta = ApiResponseMeta(
        status=status,
        http_version="1.1",
        headers=HttpHeaders(),
        duration=0.0,
        node=NodeConfig("http", "h", 1),
    )
    return ApiError(message=f"status {status}", meta=meta, body={})


def test_index_and_delete_actions():
    assert bulk_action("i", {"_id": "7", "_op": "index", "_source": {"a": 1}}) == {
        "_op_type": "index",
        "_index": "i",
        "_id": "7",
        "_source": {"a": 1},
    }
    assert bulk_action("i", {"_id": "7", "_op": "delete"}) == {
        "_op_type": "delete",
        "_index": "i",
        "_id": "7",
    }


def test_chunked_covers_everything_once():
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked([], 3)) == []


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

    policy = RetryPolicy(attempts=5, base_seconds=1, cap_seconds=3)
    assert with_backoff(flaky, policy, sleep=sleeps.append) == "ok"
    assert len(calls) == 4
    assert len(sleeps) == 3
    assert all(0 <= s <= cap for s, cap in zip(sleeps, [1, 2, 3], strict=True))


def test_backoff_gives_up_after_the_last_attempt():
    def down():
        raise ESConnectionError("refused")

    with pytest.raises(ESConnectionError):
        with_backoff(down, RetryPolicy(attempts=3), sleep=lambda s: None)


def test_backoff_does_not_retry_permanent_errors():
    calls = []

    def bad():
        calls.append(1)
        raise BadRequestError(message="mapper_parsing_exception", meta=api_error(400).meta, body={})

    with pytest.raises(BadRequestError):
        with_backoff(bad, RetryPolicy(attempts=5), sleep=lambda s: None)
    assert calls == [1]


def test_backoff_stops_at_the_total_time_cap():
    now = [0.0]
    calls = []

    def always_503():
        calls.append(1)
        raise api_error(503)

    def sleep(seconds):
        now[0] += seconds

    policy = RetryPolicy(attempts=50, base_seconds=10, cap_seconds=10, max_total_seconds=25)
    with pytest.raises(ApiError):
        with_backoff(always_503, policy, sleep=sleep, clock=lambda: now[0])
    assert now[0] <= 25 and len(calls) < 50
