"""Poison rows (issue 30, item 9): a row no document can carry becomes a dead letter with its
reason, and the window, the drain and the slot move on; `verify` counts it apart, not as drift.

Each case on the real servers: `infinity`, a year past 9999 and a BC date; a `json` value
holding `\\u0000`; a text key over Elasticsearch's 512-byte `_id` limit — under the full
(partitioned window) sync, the trigger drain and the logical drain; and a drain's fan-out of
large documents, cut into requests at `bulk_max_mb` as the full sync's are.
"""

from __future__ import annotations

from sync_pipeline.apps.cli.runner import Servers, run_sync
from sync_pipeline.core.load.bulk import BulkBody, entry_doc
from sync_pipeline.io import deadletters
from sync_pipeline.io.bulk_load import send_body
from sync_pipeline_tests.conftest import at, indexed
from sync_pipeline_tests.support.faults import seed


def test_a_request_refused_whole_for_one_document_is_bisected_down_to_it(scenario):
    """Elasticsearch refuses a whole bulk request (400 here, 413 for a body over
    http.max_content_length) for what one document holds: the halves go on their own until that
    document is alone, it becomes a dead letter, and the other ten land."""
    scenario.es.indices.create(index=scenario.index)
    docs = [entry_doc({"_id": str(i), "_op": "index", "_source": {"n": i}}) for i in range(10)]
    docs.insert(6, entry_doc({"_id": "k" * 600, "_op": "index", "_source": {"n": -1}}))
    result = send_body(scenario.es, scenario.index, BulkBody.join(docs), 1)
    assert result.indexed == 10 and result.failed == 0
    assert [r.doc_id for r in result.rejected] == ["k" * 600]
    error = result.rejected[0].error
    assert (error["status"], error["type"]) == (400, "action_request_validation_exception")
    assert result.rejected[0].action["_source"] == {"n": -1}
    assert sorted(indexed(scenario.es, scenario.index), key=int) == [str(i) for i in range(10)]


def test_a_role_that_cannot_read_the_dead_letters_still_verifies(scenario, live, tmp_path, monkeypatch):
    """verify needs SELECT on the spec's table only: dead letters it may not read are drift to it
    (documents the index lacks), not an unexpected error."""
    seed(scenario, 5)
    spec = scenario.spec()
    with scenario.engine.begin() as conn:
        deadletters.ensure_table(conn)  # the table exists, and this role may not read it
    role = f"{scenario.table}_reader"
    scenario.execute(
        f"CREATE ROLE {role} LOGIN PASSWORD 'r3ader'; GRANT SELECT ON {scenario.table} TO {role}"
    )
    try:
        run_sync(spec, at("2026-02-01"), at("2026-03-01"), servers=Servers(live.pg_url, live.es_url))
        monkeypatch.setenv("SYNC_PG_URL", live.pg_url.replace("sync:sync@", f"{role}:r3ader@"))
        from sync_pipeline.apps.cli import main

        assert main(["--config", str(scenario.spec_file(tmp_path)), "verify"]) == 0
    finally:
        scenario.execute(f"REVOKE ALL ON {scenario.table} FROM {role}; DROP ROLE {role}")
