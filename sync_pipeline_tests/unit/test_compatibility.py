"""The same product on every supported search server.

`make test` runs the whole suite against Elasticsearch 9 and then the compatibility subset
(conftest.COMPATIBILITY_SUBSET: these tests and the listed ones elsewhere) against Elasticsearch
8, OpenSearch 2 and OpenSearch 3, each started by the project's own services (SYNC_LOCAL_SEARCH).
The first tests here need no server: how a server is recognised and what mapping it is given.
"""

from __future__ import annotations

import ast

import pytest

from sync_pipeline.core.mapping.dialect import (
    ELASTICSEARCH,
    OPENSEARCH,
    Server,
    UnsupportedMapping,
    for_server,
)
from sync_pipeline.io.search import UnsupportedServer
from sync_pipeline.io.search.server import check_wanted, identify
from sync_pipeline_tests.conftest import COMPATIBILITY_SUBSET, TESTS

ES9 = Server(ELASTICSEARCH, (9, 2, 4))
ES8 = Server(ELASTICSEARCH, (8, 19, 8))
OS2 = Server(OPENSEARCH, (2, 19, 6))
OS3 = Server(OPENSEARCH, (3, 3, 2))


def _root(number: str, distribution: str | None = None, tagline: str = "You Know, for Search") -> dict:
    version = {"number": number, **({"distribution": distribution} if distribution else {})}
    return {"name": "n", "version": version, "tagline": tagline}


# --- recognising the server (no server needed) ------------------------------------------------


@pytest.mark.parametrize(
    ("root", "headers", "expected"),
    [
        (_root("9.2.4"), {"X-elastic-product": "Elasticsearch"}, ES9),
        (_root("8.19.8"), {"X-elastic-product": "Elasticsearch"}, ES8),
        # OpenSearch reports the Elasticsearch tagline and a number a bare version check misreads
        (_root("3.3.2", "opensearch", "The OpenSearch Project: https://opensearch.org/"), {}, OS3),
        (_root("2.19.6", "opensearch"), {}, OS2),
    ],
    ids=["es9", "es8", "opensearch3", "opensearch2"],
)
def test_a_server_is_recognised_by_its_distribution_before_its_version(root, headers, expected):
    assert identify(root, headers, "http://h:9200") == expected


@pytest.mark.parametrize(
    ("root", "headers", "named"),
    [
        (_root("7.17.0"), {"X-elastic-product": "Elasticsearch"}, "Elasticsearch 7.17.0"),
        (_root("1.3.18", "opensearch"), {}, "OpenSearch 1.3.18"),
        (_root("9.0.0", "solr", tagline="x"), {}, "neither Elasticsearch nor OpenSearch"),
        ({"ok": True}, {}, "does not answer like Elasticsearch or OpenSearch"),
    ],
)
def test_an_unsupported_server_is_refused_in_one_line_naming_it(root, headers, named):
    with pytest.raises(UnsupportedServer, match=named) as caught:
        identify(root, headers, "http://h:9200")
    assert "\n" not in str(caught.value) and "http://h:9200" in str(caught.value)


def test_a_server_of_another_kind_than_the_setting_asks_for_is_refused():
    check_wanted(OS3, "auto", "http://h")
    check_wanted(OS3, "opensearch", "http://h")
    with pytest.raises(
        UnsupportedServer, match=r"SYNC_SEARCH_BACKEND=elasticsearch but .* is OpenSearch 3\.3\.2"
    ):
        check_wanted(OS3, "elasticsearch", "http://h")


# --- the mapping each server is given (no server needed) --------------------------------------

MAPPING = {
    "properties": {
        "attrs": {"type": "flattened"},
        "title": {"type": "text", "fields": {"raw": {"type": "match_only_text"}}},
        "sku": {"type": "wildcard"},
    }
}


def test_each_server_gets_its_own_name_for_the_same_field_type():
    assert for_server(MAPPING, ES9) == MAPPING
    on_opensearch = for_server(MAPPING, OS3)
    assert on_opensearch["properties"]["attrs"] == {"type": "flat_object"}
    assert on_opensearch["properties"]["title"]["fields"]["raw"]["type"] == "match_only_text"
    back = for_server({"properties": {"attrs": {"type": "flat_object"}}}, ES8)
    assert back["properties"]["attrs"]["type"] == "flattened"


OS_BEFORE_LUCENE_KNN = Server(OPENSEARCH, (2, 1, 0))


def test_a_type_the_server_lacks_is_refused_naming_every_field():
    old = Server(OPENSEARCH, (2, 11, 0))  # before match_only_text (2.12) and wildcard (2.15)
    with pytest.raises(UnsupportedMapping) as caught:
        for_server(MAPPING, old)
    message = str(caught.value)
    assert "OpenSearch 2.11.0" in message
    assert "'title.raw' of type match_only_text" in message and "'sku' of type wildcard" in message
    # a spec's dense_vector becomes a knn_vector (test_vectors.py), on an OpenSearch that has one
    with pytest.raises(UnsupportedMapping, match=r"'embedding' of type dense_vector .*knn_vector"):
        for_server({"properties": {"embedding": {"type": "dense_vector", "dims": 3}}}, OS_BEFORE_LUCENE_KNN)


def test_every_entry_of_the_compatibility_subset_names_a_test_that_exists():
    for entry in COMPATIBILITY_SUBSET:
        module, _, name = entry.partition("::")
        tree = ast.parse((TESTS / module).read_text(encoding="utf-8"))
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert not name or name in names, f"{entry} names no test"
