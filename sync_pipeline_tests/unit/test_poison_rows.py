"""Poison rows (issue 30, item 9), the parts that need no server: a flagged row left out of the bulk
body, and a request refused for the index's sake not bisected into dead letters
(the windows, drains and slot on the real servers: integration/ and chaos/test_poison_rows.py)."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest

from sync_pipeline.core.documents.build import batch_to_bulk, build_plan
from sync_pipeline.core.load.bulk import BulkBody, entry_doc
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.core.sql.columns import ColumnInfo, arrow_schema
from sync_pipeline.core.sql.poison import UNREPRESENTABLE_COLUMN
from sync_pipeline.core.sql.statements import read_columns
from sync_pipeline.io.bulk_load import send_body
from sync_pipeline.io.search import SearchApiError


def test_a_flagged_row_is_left_out_of_the_body_unless_it_is_a_soft_delete():
    """The pure step: the reason column (as the read's SQL fills it) takes a row out of the body
    into `rejected`; a soft-deleted row still deletes; the delete of an over-long `_id` (never
    indexable, so already absent) is not sent, since it would fail the whole request."""
    spec = parse_specs(
        """
specs:
  - name: s
    source: {table: t, primary_key: id, updated_at: updated_at, soft_delete: deleted}
    target: {index: s}
    partitions: {start: "2026-01-01"}
"""
    )[0]
    columns = [ColumnInfo("id", "text"), ColumnInfo("due", "date"), ColumnInfo("deleted", "bool")]
    read = read_columns(columns)
    plan = build_plan(spec, read)
    rows = [
        {"id": "ok", "deleted": False},
        {"id": "bad", "deleted": False, UNREPRESENTABLE_COLUMN: '{"1": "infinity"}'},
        {"id": "gone", "deleted": True, UNREPRESENTABLE_COLUMN: '{"1": "infinity"}'},
        {"id": "x" * 600, "deleted": False},
        {"id": "y" * 600, "deleted": True},
    ]
    chunk = batch_to_bulk(pa.RecordBatch.from_pylist(rows, schema=arrow_schema(read)), plan)
    lines = chunk.body.data.decode().splitlines()
    assert [orjson.loads(line) for line in lines if '"_id"' in line] == [
        {"index": {"_id": "ok", "version": 0, "version_type": "external_gte"}},
        {"delete": {"_id": "gone", "version": 0, "version_type": "external_gte"}},
    ]
    assert [r.doc_id for r in chunk.rejected] == ["bad", "x" * 600]
    assert chunk.rejected[0].error["columns"] == {"due": "infinity"}
    assert "column 'due' holds 'infinity'" in chunk.rejected[0].error["reason"]
    assert "600 bytes" in chunk.rejected[1].error["reason"]


class _Refusing:
    """A search client whose every bulk request is refused as a whole with `error`."""

    def __init__(self, status: int, kind: str) -> None:
        self.status, self.kind, self.requests = status, kind, 0

    def bulk(self, **_: object):
        self.requests += 1
        raise SearchApiError(self.status, {"error": {"type": self.kind}}, f"{self.kind}: refused")


def test_a_request_refused_for_the_index_s_sake_is_not_bisected_into_dead_letters():
    """A closed index refuses every request with a 400 too: that is no document's fault, so the
    error propagates (the claim stays, the run fails) instead of dead-lettering every document."""
    docs = [entry_doc({"_id": str(i), "_op": "index", "_source": {"n": i}}) for i in range(8)]
    client = _Refusing(400, "index_closed_exception")
    with pytest.raises(SearchApiError, match="index_closed_exception"):
        send_body(client, "idx", BulkBody.join(docs), 1)  # type: ignore[arg-type]
    assert client.requests == 1
    too_large = _Refusing(413, "content_too_long")
    result = send_body(too_large, "idx", BulkBody.join(docs), 1)  # type: ignore[arg-type]
    assert len(result.rejected) == 8 and too_large.requests == 15  # every half, down to each one
