"""The other local search servers — Elasticsearch 8, OpenSearch 2 and 3 — started by the
project's own code (`services.up_search(kind)`) the way the default Elasticsearch 9 node is.

The integration tests start real nodes (nothing here calls down(): other tests may share
them); the rest check the settings and descriptions without a server.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from sync_pipeline_devtools import services
from sync_pipeline_devtools.settings import load

# kind -> (distribution, version) that `GET /` must report
EXPECTED = {
    "elasticsearch8": ("elasticsearch", "8.19.8"),
    "opensearch2": ("opensearch", "2.19.6"),
    "opensearch": ("opensearch", "3.3.2"),
}
INDEX = "sync-pipeline-search-servers-test"


def _call(url: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict, dict[str, str]]:
    """One JSON request (no proxy for 127.0.0.1): status, parsed body, headers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method=method)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


@pytest.fixture(scope="module")
def started() -> dict[str, str]:
    return {}  # kind -> URL, each node started once per module


def _up(kind: str, started: dict[str, str]) -> str:
    if kind not in started:
        began = time.monotonic()
        started[kind] = services.up_search(kind)
        print(f"{kind}: up_search took {time.monotonic() - began:.1f}s")
    return started[kind]


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_root_reports_the_distribution_and_version(kind: str, started: dict[str, str]) -> None:
    url = _up(kind, started)
    product, version = EXPECTED[kind]
    assert url == f"http://127.0.0.1:{load().search_port(kind)}"
    status, body, headers = _call(f"{url}/")
    if product == "opensearch":
        assert status == 200, body
        assert body["version"]["distribution"] == "opensearch"
        assert body["version"]["number"] == version
        return
    # Elasticsearch's integ-test zip lacks the rest-root module that serves `GET /` (405, allowing
    # only DELETE); a full distribution answers it: either way no version.distribution, and the
    # version is the node's
    assert headers.get("X-elastic-product") == "Elasticsearch"
    if status == 200:
        assert body["version"]["number"] == version and "distribution" not in body["version"]
    else:
        assert status == 405, body
    status, nodes, _ = _call(f"{url}/_nodes/_local?filter_path=nodes.*.version")
    assert status == 200 and [n["version"] for n in nodes["nodes"].values()] == [version]


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_up_search_twice_is_a_noop(kind: str, started: dict[str, str]) -> None:
    url = _up(kind, started)
    pid = services.search_pid(kind)
    assert pid is not None
    assert services.up_search(kind) == url
    assert services.search_pid(kind) == pid
    assert services.status()[kind].startswith(f"running on 127.0.0.1:{load().search_port(kind)}")


def test_down_with_a_target_stops_that_node_alone(started: dict[str, str]) -> None:
    _up("opensearch2", started)
    assert services.search_pid("opensearch2") is not None
    services.down_search("opensearch2")
    started.pop("opensearch2")  # the next test that needs it starts it again
    assert services.search_pid("opensearch2") is None
    assert services.status()["postgresql"].startswith("running on")


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_index_and_search_round_trip(kind: str, started: dict[str, str]) -> None:
    url = _up(kind, started)
    _call(f"{url}/{INDEX}", "DELETE")
    settings = {"settings": {"number_of_shards": 1, "number_of_replicas": 0}}
    mappings = {"properties": {"title": {"type": "text"}, "sku": {"type": "keyword"}, "n": {"type": "long"}}}
    status, body, _ = _call(f"{url}/{INDEX}", "PUT", {**settings, "mappings": mappings})
    assert status == 200, body
    for doc_id, doc in (
        ("1", {"title": "red shoe", "sku": "A-1", "n": 1}),
        ("2", {"title": "blue hat", "sku": "B-2", "n": 2}),
    ):
        status, body, _ = _call(f"{url}/{INDEX}/_doc/{doc_id}?refresh=true", "PUT", doc)
        assert status in (200, 201), body
    status, body, _ = _call(f"{url}/{INDEX}/_search", "POST", {"query": {"match": {"title": "shoe"}}})
    assert status == 200, body
    assert body["hits"]["total"]["value"] == 1
    assert body["hits"]["hits"][0]["_source"] == {"title": "red shoe", "sku": "A-1", "n": 1}
    status, body, _ = _call(f"{url}/{INDEX}/_search", "POST", {"query": {"term": {"sku": "B-2"}}})
    assert [hit["_id"] for hit in body["hits"]["hits"]] == ["2"]
    assert _call(f"{url}/{INDEX}", "DELETE")[0] == 200
