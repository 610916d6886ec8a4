"""Vector fields: `type: dense_vector` with `dims` and `similarity`, mapped for the server at hand
and queried in each server's shape, without a server (synced and searched: integration/)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from sync_pipeline.apps.cli.search import knn_request
from sync_pipeline.core.mapping.dialect import (
    ELASTICSEARCH,
    OPENSEARCH,
    Server,
    for_server,
    settings_for_server,
)
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.core.spec.target import FieldSpec
from sync_pipeline_tests.support.vectors import VECTOR

ES9 = Server(ELASTICSEARCH, (9, 2, 4))
OS2 = Server(OPENSEARCH, (2, 19, 0))


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
