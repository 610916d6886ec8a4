"""Vector fields: `type: dense_vector` with `dims` and `similarity`, mapped for the server at hand,
synced from a PostgreSQL `real[]` column, verified, and searched with `search --knn`.

The embedding is local and deterministic: eight floats from hashes of the title, computed in SQL.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from pydantic import ValidationError

from sync_pipeline.apps import cli
from sync_pipeline.apps.cli.search import knn_request
from sync_pipeline.core.search_dialect import (
    ELASTICSEARCH,
    OPENSEARCH,
    Server,
    for_server,
    settings_for_server,
)
from sync_pipeline.core.specs import parse_specs
from sync_pipeline.core.target import FieldSpec

ES9 = Server(ELASTICSEARCH, (9, 2, 4))
OS2 = Server(OPENSEARCH, (2, 19, 0))
VECTOR = {"type": "dense_vector", "dims": 8, "similarity": "cosine"}
# 8 floats in [-1, 1) from hashes of the title: the same title, the same vector, on any machine
EMBEDDING_SQL = (
    "ARRAY(SELECT ((hashtext(title || ':' || g) % 1000) / 1000.0)::real FROM generate_series(1, 8) g)"
)


def vector_spec_text(base: str, rule: str = "{type: dense_vector, dims: 8, similarity: cosine}") -> str:
    return base.replace("    fields:\n", f"    fields:\n      embedding: {rule}\n", 1)


# --- the spec ---------------------------------------------------------------------------------


def test_a_vector_field_takes_dims_and_similarity() -> None:
    rule = FieldSpec.model_validate(VECTOR)
    assert (rule.type, rule.dims, rule.similarity) == ("dense_vector", 8, "cosine")
    assert FieldSpec.model_validate({"type": "dense_vector", "dims": 3}).similarity == "cosine"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"type": "dense_vector"}, "dims"),
        ({"type": "dense_vector", "dims": 0}, "dims"),
        ({"type": "dense_vector", "dims": 5000}, "4096"),
        ({"type": "dense_vector", "dims": 8, "similarity": "cosinus"}, "cosine, dot_product"),
        ({"type": "keyword", "dims": 8}, "only for type: dense_vector"),
    ],
)
def test_wrong_dims_or_an_unknown_similarity_is_refused_with_the_field_named(
    rule: dict, message: str
) -> None:
    text = f"""
specs:
  - name: v
    source: {{table: v, primary_key: id, updated_at: updated_at}}
    target: {{index: v}}
    partitions: {{start: "2026-01-01"}}
    fields:
      embedding: {json.dumps(rule)}
"""
    with pytest.raises(ValueError, match="embedding") as refused:
        parse_specs(text, origin="test")
    assert message in str(refused.value)


def test_field_spec_alone_refuses_a_vector_without_dims() -> None:
    with pytest.raises(ValidationError, match="dims"):
        FieldSpec.model_validate({"type": "dense_vector"})


# --- the mapping, per server -------------------------------------------------------------------

ES_FIELD = {"type": "dense_vector", "dims": 8, "similarity": "cosine", "index": True}


def test_elasticsearch_keeps_dense_vector_with_dims_similarity_and_index() -> None:
    mapping = {"properties": {"embedding": ES_FIELD}}
    assert for_server(mapping, ES9)["properties"]["embedding"] == ES_FIELD


@pytest.mark.parametrize(
    ("similarity", "space_type"),
    [
        ("cosine", "cosinesimil"),
        ("l2_norm", "l2"),
        ("dot_product", "innerproduct"),
        ("max_inner_product", "innerproduct"),
    ],
)
def test_opensearch_gets_a_knn_vector_with_dimension_and_space_type(similarity: str, space_type: str) -> None:
    mapping = {"properties": {"embedding": {**ES_FIELD, "similarity": similarity}}}
    assert for_server(mapping, OS2)["properties"]["embedding"] == {
        "type": "knn_vector",
        "dimension": 8,
        "method": {"name": "hnsw", "engine": "lucene", "space_type": space_type},
    }


def test_opensearch_before_the_lucene_engine_refuses_the_vector_field_by_name() -> None:
    with pytest.raises(ValueError, match="embedding"):
        for_server({"properties": {"embedding": ES_FIELD}}, Server(OPENSEARCH, (2, 1, 0)))


def test_an_opensearch_index_with_a_vector_field_is_a_knn_index() -> None:
    with_vector = {"properties": {"title": {"type": "text"}, "embedding": ES_FIELD}}
    without = {"properties": {"title": {"type": "text"}}}
    base = {"number_of_shards": 1, "number_of_replicas": 0}
    # given the mapping as emitted for the server, as index creation does
    assert settings_for_server(base, for_server(with_vector, OS2), OS2) == {**base, "knn": True}
    assert settings_for_server(base, for_server(without, OS2), OS2) == base
    # Elasticsearch 9.1+ would leave vectors out of _source (rounded ones back on request): kept
    kept = {**base, "mapping.exclude_source_vectors": False}
    assert settings_for_server(base, for_server(with_vector, ES9), ES9) == kept
    assert settings_for_server(base, for_server(without, ES9), ES9) == base
    es8 = Server(ELASTICSEARCH, (8, 19, 0))
    assert settings_for_server(base, for_server(with_vector, es8), es8) == base


def test_the_knn_query_takes_each_servers_shape() -> None:
    vector = [0.1, 0.2]
    assert knn_request(ES9, "embedding", vector, 3) == {
        "knn": {"field": "embedding", "query_vector": vector, "k": 3, "num_candidates": 100},
        "size": 3,
    }
    assert knn_request(OS2, "embedding", vector, 3) == {
        "query": {"knn": {"embedding": {"vector": vector, "k": 3}}},
        "size": 3,
    }


# --- end to end, on the real search server -----------------------------------------------------


@pytest.mark.integration
def test_a_real_array_embedding_syncs_verifies_and_answers_knn(
    scenario, insert_rows, tmp_path, live, monkeypatch, capsys
) -> None:
    from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify

    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN embedding real[]")
    for i in range(1, 31):
        insert_rows([i], "2026-02-01 00:00:00+00", title=f"product {i} {'tea' if i % 2 else 'cup'}")
    scenario.execute(f"UPDATE {scenario.table} SET embedding = {EMBEDDING_SQL}")
    config = tmp_path / "sync.yaml"
    config.write_text(vector_spec_text(scenario.spec_text()))
    (spec,) = parse_specs(config.read_text(), origin=str(config))
    servers = Servers(live.pg_url, live.es_url)

    summary = run_sync([spec], spec, servers=servers)
    assert summary.success, summary.error
    assert summary.indexed == 30
    mapped = scenario.es.indices.get_mapping(index=scenario.index).body
    field = next(iter(mapped.values()))["mappings"]["properties"]["embedding"]
    assert (field["type"], field["dims"], field["similarity"], field["index"]) == (
        "dense_vector",
        8,
        "cosine",
        True,
    )
    (report,) = run_verify([spec], [spec], servers=servers)
    assert report.drift == 0, report

    # verify sees a vector that changed in PostgreSQL only (one float of eight)
    scenario.execute(f"UPDATE {scenario.table} SET embedding[3] = embedding[3] + 0.25 WHERE id = 11")
    (changed,) = run_verify([spec], [spec], servers=servers)
    assert (changed.drift, [m.doc_id for m in changed.mismatches]) == (1, ["11"])
    (fixed,) = run_verify([spec], [spec], fix=True, servers=servers)
    (clean,) = run_verify([spec], [spec], servers=servers)
    assert clean.drift == 0, (fixed, clean)

    with scenario.engine.connect() as conn:
        target = conn.exec_driver_sql(f"SELECT embedding FROM {scenario.table} WHERE id = 17").scalar_one()
    monkeypatch.setenv("SYNC_PG_URL", live.pg_url)
    monkeypatch.setenv("SYNC_ES_URL", live.es_url)
    argv = ["--config", str(config), "search", "--spec", spec.name, "--knn", "embedding"]
    code = cli.main([*argv, "--vector", json.dumps(target), "--k", "3", "--json"])
    found = json.loads(capsys.readouterr().out)
    assert code == 0, found
    assert [hit["id"] for hit in found["hits"]][:1] == ["17"] and len(found["hits"]) == 3
    assert found["hits"][0]["score"] >= found["hits"][1]["score"]

    assert cli.main([*argv, "--vector", "[0.1, 0.2]"]) == 2
    assert "embedding" in capsys.readouterr().err


@pytest.mark.integration
def test_an_embedding_computed_by_a_pandas_transform_syncs_verifies_and_answers_knn(
    scenario, insert_rows, tmp_path, live, monkeypatch, capsys
) -> None:
    """No vector column in PostgreSQL: the spec's transform computes one per row from the title."""
    from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify
    from sync_pipeline.io.transform import resolve

    for i in range(1, 31):
        insert_rows([i], "2026-02-01 00:00:00+00", title=f"product {i} {'tea' if i % 2 else 'cup'}")
    transform = "    transform: {pandas: 'sync_pipeline_tests.test_pandas_transform:embed'}\n"
    text = vector_spec_text(scenario.spec_text(extra=transform)).replace(
        "    fields:\n", "    fields:\n      facts: {type: flattened}\n", 1
    )
    config = tmp_path / "sync.yaml"
    config.write_text(text)
    (spec,) = parse_specs(text, origin=str(config))
    servers = Servers(live.pg_url, live.es_url)

    summary = run_sync([spec], spec, servers=servers)
    assert summary.success and summary.indexed == 30, summary.error
    doc = scenario.es.get(index=scenario.index, id="17")["_source"]
    assert len(doc["embedding"]) == 8 and doc["facts"]["words"] == ["product", "17", "tea"]
    (report,) = run_verify([spec], [spec], servers=servers)
    assert report.ok and report.pg_count == 30, report.lines()

    # the query vector is the transform's own for row 17: the nearest document is row 17
    import pandas as pd

    frame = pd.DataFrame({"id": [17], "title": [doc["title"]]})
    target = resolve(spec)  # the same function, as the sync ran it
    assert target is not None
    vector = [float(x) for x in target(pa.Table.from_pandas(frame)).column("embedding")[0].as_py()]
    assert vector == pytest.approx(doc["embedding"], rel=1e-6)  # float32s, sent in their shortest form
    monkeypatch.setenv("SYNC_PG_URL", live.pg_url)
    monkeypatch.setenv("SYNC_ES_URL", live.es_url)
    argv = ["--config", str(config), "search", "--spec", spec.name, "--knn", "embedding"]
    code = cli.main([*argv, "--vector", json.dumps(vector), "--k", "3", "--json"])
    found = json.loads(capsys.readouterr().out)
    assert code == 0, found
    assert [hit["id"] for hit in found["hits"]][:1] == ["17"] and len(found["hits"]) == 3


@pytest.mark.integration
def test_a_vector_field_on_a_column_that_holds_no_float_array_is_refused_at_bind(scenario) -> None:
    from sync_pipeline.core.sql import SourceError
    from sync_pipeline.ops.binding import bind

    text = scenario.spec_text().replace(
        "    fields:\n", "    fields:\n      tags: {type: dense_vector, dims: 2}\n", 1
    )
    (spec,) = parse_specs(text, origin="test")
    with pytest.raises(SourceError, match=r"fields\.tags\.type: column tags is text\[\], not real\[\]"):
        bind(scenario.engine, spec)


@pytest.mark.integration
def test_a_vector_of_the_wrong_length_is_a_dead_letter_and_the_rest_lands(
    scenario, insert_rows, tmp_path, live
) -> None:
    from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify

    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN embedding real[]")
    insert_rows(range(1, 11), "2026-02-01 00:00:00+00")
    scenario.execute(f"UPDATE {scenario.table} SET embedding = {EMBEDDING_SQL}")
    scenario.execute(f"UPDATE {scenario.table} SET embedding = embedding[1:7] WHERE id = 4")
    (spec,) = parse_specs(vector_spec_text(scenario.spec_text()), origin="test")
    servers = Servers(live.pg_url, live.es_url)

    summary = run_sync([spec], spec, servers=servers)
    assert (summary.success, summary.indexed, summary.dead_lettered) == (True, 9, 1), summary
    (report,) = run_verify([spec], [spec], servers=servers)
    assert (report.dead_letter_ids, report.es_count) == (["4"], 9), report


@pytest.mark.integration
@pytest.mark.parametrize("capture", ["triggers", "logical"])
def test_a_changed_vector_reaches_the_index_through_either_drain(
    scenario, insert_rows, live, capture: str
) -> None:
    import sqlalchemy as sa

    from sync_pipeline.apps.cli.runner import Servers, run_drain, run_sync, run_verify
    from sync_pipeline.ops.capture import install_capture, uninstall_capture
    from sync_pipeline.ops.drain import drain

    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN embedding real[]")
    insert_rows(range(1, 11), "2026-02-01 00:00:00+00")
    scenario.execute(f"UPDATE {scenario.table} SET embedding = {EMBEDDING_SQL}")
    text = vector_spec_text(scenario.spec_text(extra=f"    capture: {capture}"))
    (spec,) = parse_specs(text, origin="test")
    servers = Servers(live.pg_url, live.es_url)
    install_capture(scenario.engine, spec)
    try:
        assert run_sync([spec], spec, servers=servers).success
        if capture == "logical":
            drain(scenario.engine, scenario.es, spec)  # the slot's changes from before the sync
        scenario.execute(
            f"UPDATE {scenario.table} SET embedding = ARRAY[0.5, -0.25, 0.125, 1, 0, 0, 0, 0.75]::real[], "
            "updated_at = now() WHERE id = 5"
        )
        assert run_drain([spec], spec, servers=servers).success
        doc = scenario.es.get(index=scenario.index, id="5", _source_includes=["embedding"])
        assert doc["_source"]["embedding"] == [0.5, -0.25, 0.125, 1.0, 0.0, 0.0, 0.0, 0.75]
        (report,) = run_verify([spec], [spec], servers=servers)
        assert report.drift == 0, report
    finally:
        uninstall_capture(scenario.engine, spec)
        with scenario.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM public.sync_pipeline_buffer WHERE spec = :s"), {"s": spec.name})


@pytest.mark.integration
def test_a_rebuilt_index_keeps_its_vectors_and_verifies_clean(scenario, insert_rows, live) -> None:
    from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify
    from sync_pipeline.ops.rebuild import rebuild

    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN embedding real[]")
    insert_rows(range(1, 11), "2026-02-01 00:00:00+00")
    scenario.execute(f"UPDATE {scenario.table} SET embedding = {EMBEDDING_SQL}")
    (spec,) = parse_specs(vector_spec_text(scenario.spec_text()), origin="test")
    servers = Servers(live.pg_url, live.es_url)
    assert run_sync([spec], spec, servers=servers).success

    report = rebuild(scenario.engine, scenario.es, spec)
    assert report.new_index in scenario.es.indices.get_alias(name=scenario.index).body
    (after,) = run_verify([spec], [spec], servers=servers)
    assert (after.es_count, after.drift) == (10, 0), after
    with scenario.engine.connect() as conn:
        seven = conn.exec_driver_sql(f"SELECT embedding FROM {scenario.table} WHERE id = 7").scalar_one()
    body = knn_request(scenario.es.server, "embedding", seven, 1)
    assert [h["_id"] for h in scenario.es.search(index=scenario.index, **body)["hits"]["hits"]] == ["7"]


@pytest.mark.integration
def test_a_vector_field_added_to_an_index_created_without_its_setting_needs_a_rebuild(
    scenario, insert_rows, live
) -> None:
    """Elasticsearch 9.1+ keeps vectors in `_source` only in an index created so (OpenSearch: only
    an index created `knn` answers kNN): adding one in place would make every document drift."""
    from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify

    insert_rows(range(1, 11), "2026-02-01 00:00:00+00")
    servers = Servers(live.pg_url, live.es_url)
    (plain,) = parse_specs(scenario.spec_text(), origin="test")
    assert run_sync([plain], plain, servers=servers).success
    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN embedding real[]")
    scenario.execute(f"UPDATE {scenario.table} SET embedding = {EMBEDDING_SQL}, updated_at = now()")
    (spec,) = parse_specs(vector_spec_text(scenario.spec_text()), origin="test")
    needed = settings_for_server({}, for_server({"properties": {"embedding": VECTOR}}, scenario.es.server),
                                 scenario.es.server)  # fmt: skip
    added = run_sync([spec], spec, servers=servers)
    if needed:  # Elasticsearch 9.1+, OpenSearch
        assert not added.success
        setting = next(iter(needed))
        assert "embedding: new field" in added.error and f"index.{setting}" in added.error, added.error
        rebuilding = vector_spec_text(scenario.spec_text(extra="    on_mapping_change: rebuild"))
        (spec,) = parse_specs(rebuilding, origin="test")
        added = run_sync([spec], spec, servers=servers)
    assert added.success, added.error
    (report,) = run_verify([spec], [spec], servers=servers)
    assert report.ok and report.pg_count == 10, report.lines()
    doc = scenario.es.get(index=scenario.index, id="3", _source_includes=["embedding"])["_source"]
    assert len(doc["embedding"]) == 8
