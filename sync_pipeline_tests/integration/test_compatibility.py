"""The same product on every supported search server.

`make test` runs the whole suite against Elasticsearch 9 and then the compatibility subset
(conftest.COMPATIBILITY_SUBSET: these tests and the listed ones elsewhere) against Elasticsearch
8, OpenSearch 2 and OpenSearch 3, each started by the project's own services (SYNC_LOCAL_SEARCH).
The first tests here need no server: how a server is recognised and what mapping it is given.
"""

from __future__ import annotations

import os

import pytest

from sync_pipeline.apps.cli.runner import run_sync, run_verify
from sync_pipeline.core.mapping.dialect import (
    ELASTICSEARCH,
    OPENSEARCH,
)
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io.search import search_client
from sync_pipeline.io.search.indices import backing_indices, index_meta
from sync_pipeline_tests.conftest import Scenario

# --- against the server of this run (SYNC_LOCAL_SEARCH) ---------------------------------------

# read at collection, before the `live` fixture exports the local servers' URLs
USERS_SERVER = "SYNC_ES_URL" in os.environ
# what the project's own services start for each SYNC_LOCAL_SEARCH value
EXPECTED = {
    "elasticsearch": (ELASTICSEARCH, 9),
    "elasticsearch8": (ELASTICSEARCH, 8),
    "opensearch2": (OPENSEARCH, 2),
    "opensearch": (OPENSEARCH, 3),
}


def test_the_server_of_this_run_is_the_one_asked_for(live):
    server = search_client(live.es_url).server
    kind = os.environ.get("SYNC_LOCAL_SEARCH", "elasticsearch")
    if USERS_SERVER:
        pytest.skip("SYNC_ES_URL points at a server of the user's: nothing to compare with")
    assert (server.distribution, server.major) == EXPECTED[kind]


def test_a_json_column_typed_flattened_syncs_as_the_servers_own_type(scenario: Scenario, insert_rows, es):
    insert_rows(range(1, 6), "2026-02-01 00:00:00+00")
    text = scenario.spec_text() + "      payload: {type: flattened}\n"
    spec = parse_specs(text, origin="test")[0]

    summary = run_sync(spec)

    assert summary.success and summary.indexed == 5
    mapping = next(iter(es.indices.get_mapping(index=scenario.index).values()))["mappings"]
    expected = "flat_object" if es.server.is_opensearch else "flattened"
    assert mapping["properties"]["payload"]["type"] == expected
    (report,) = run_verify([spec], [spec])
    assert report.ok, report.lines()


def test_a_field_type_the_server_lacks_stops_the_sync_before_any_index_exists(
    scenario: Scenario, insert_rows, es
):
    insert_rows(range(1, 3), "2026-02-01 00:00:00+00")
    lacking = "version" if es.server.is_opensearch else "knn_vector"  # no parameters needed
    text = scenario.spec_text() + f"      payload: {{type: {lacking}}}\n"
    spec = parse_specs(text, origin="test")[0]

    summary = run_sync(spec)

    assert not summary.success
    assert f"'payload' of type {lacking}" in (summary.error or "")
    assert not es.indices.exists(index=scenario.index)


def test_an_index_the_sync_creates_is_marked_as_sync_pipelines_own(scenario: Scenario, insert_rows, es):
    """What the demo (and any clean-up) checks before deleting an index: a sync's own index says
    so from its creation on, also when the run that created it died right after."""
    insert_rows(range(1, 3), "2026-02-01 00:00:00+00")
    spec = scenario.spec()

    assert run_sync(spec).success

    (index,) = backing_indices(es, scenario.index)
    assert index_meta(es, index)["spec"] == spec.name


def test_verify_reads_every_document_that_follows_a_run_of_deleted_ones_in_a_segment(
    scenario: Scenario, insert_rows, es
):
    """verify (and a rebuild's repair passes) read the index in key order, a page at a time with
    search_after. Documents deleted from a segment still hold their place in it until a merge;
    a long run of them must not hide the live document after the run. OpenSearch 3.3 did hide
    it: key 3000 below, and the rebuild test's last key after its writer deleted 2700-2999."""
    insert_rows(range(1, 3001), "2026-02-01 00:00:00+00")
    spec = scenario.spec(batch_size="200")  # verify's pages: 200 documents
    assert run_sync(spec).success
    # the whole key range in one segment, as a merge leaves it
    es.perform("POST", f"/{scenario.index}/_forcemerge", {"max_num_segments": "1"})
    scenario.execute(f"DELETE FROM {scenario.table} WHERE id BETWEEN 2000 AND 2999")
    insert_rows(range(10_001, 10_301), "2026-02-02 00:00:00+00")  # later keys, in a segment of their own
    (fixed,) = run_verify([spec], [spec], fix=True)
    assert fixed.repaired.deleted == 1000 and fixed.repaired.indexed == 300
    assert es.exists(index=scenario.index, id="3000")  # only a read can miss it

    (report,) = run_verify([spec], [spec])

    assert report.ok and report.es_count == report.pg_count == 2300, report.lines()
