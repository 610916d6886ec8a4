"""`retry.max_total_seconds` bounds a whole load's retrying, not each request's: a load whose
documents the server keeps refusing stops retrying once the spec's total is spent."""

from __future__ import annotations

import time
import uuid

import pytest

from sync_pipeline.core.load.bulk import BulkBody, action_line
from sync_pipeline.core.spec.model import RetrySpec
from sync_pipeline.io.bulk_load import load_bulk

BODIES, DOCS_PER_BODY = 5, 3
CAP_SECONDS = 1.0


def _bodies() -> list[BulkBody]:
    return [
        BulkBody.join(action_line("index", f"{body}-{doc}", 1) + b'{"n":1}\n' for doc in range(DOCS_PER_BODY))
        for body in range(BODIES)
    ]


@pytest.fixture()
def write_blocked_index(es):
    """A real index refusing every document with a cluster block (what the disk flood-stage
    watermark does): a refusal the load retries per document until it gives up."""
    index = f"t_block_{uuid.uuid4().hex[:10]}"
    es.indices.create(index=index, settings={"number_of_replicas": 0})
    es.indices.put_settings(index=index, settings={"index.blocks.write": True})
    yield index
    es.indices.put_settings(index=index, settings={"index.blocks.write": None})
    es.indices.delete(index=index)


def test_a_load_refused_document_by_document_stops_retrying_at_the_total_cap(es, write_blocked_index):
    policy = RetrySpec(
        attempts=50, initial_seconds=0.2, max_backoff_seconds=0.2, max_total_seconds=CAP_SECONDS
    )
    started = time.monotonic()
    totals = load_bulk(es, write_blocked_index, _bodies(), concurrency=1, retry=policy)
    elapsed = time.monotonic() - started
    assert (totals.batches, totals.failed, totals.indexed) == (BODIES, BODIES * DOCS_PER_BODY, 0)
    # one body's last request may still be under way when the budget runs out: a second of slack,
    # where a cap per request would take about BODIES x CAP_SECONDS
    assert elapsed < CAP_SECONDS + 1.0, f"retried for {elapsed:.1f}s against a total cap of {CAP_SECONDS}s"
