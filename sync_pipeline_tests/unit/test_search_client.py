"""The search client's requests as sent (no server: the transport is a recorder of requests,
standing in for the network only — every call is also made against real servers elsewhere)."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest

from sync_pipeline.core.mapping.dialect import ELASTICSEARCH, Server
from sync_pipeline.io.search import SearchApiError, SearchNotFound, UnsupportedServer
from sync_pipeline.io.search.client import SearchClient
from sync_pipeline.io.search.server import identify


class Recorder:
    def __init__(self, status: int = 200, body: object = None) -> None:
        self.sent: list[tuple[str, str, bytes | None, dict]] = []
        self.status, self.body = status, body if body is not None else {"ok": True}
        self.options: list[dict] = []  # the transport options of each request (its retries)

    def perform_request(self, method, target, body=None, headers=None, **options):
        self.sent.append((method, target, body, dict(headers or {})))
        self.options.append(options)
        return SimpleNamespace(meta=SimpleNamespace(status=self.status, headers={}), body=self.body)


def client(recorder: Recorder, signer=None) -> SearchClient:
    es = SearchClient(recorder, "http://h:9200", signer=signer)
    es._server = Server(ELASTICSEARCH, (9, 2, 4))  # as if identified: the recorder has no `GET /`
    return es


def test_keywords_go_to_the_url_or_the_body_as_the_rest_api_wants_them():
    sent = Recorder()
    client(sent).search(
        index="shop products", query={"match_all": {}}, size=2, track_total_hits=False, filter_path="hits"
    )
    method, target, body, headers = sent.sent[0]
    assert (method, target) == ("POST", "/shop%20products/_search?filter_path=hits")
    assert orjson.loads(body) == {"query": {"match_all": {}}, "size": 2, "track_total_hits": False}
    assert headers["content-type"] == "application/json"  # no compatibility media type


def test_put_mapping_sends_meta_as_underscore_meta_and_booleans_as_words():
    sent = Recorder()
    es = client(sent)
    es.indices.put_mapping(index="i", meta={"k": 1}, properties={"a": {"type": "keyword"}})
    es.indices.delete(index="i_v1", ignore_unavailable=True)
    assert orjson.loads(sent.sent[0][2]) == {"_meta": {"k": 1}, "properties": {"a": {"type": "keyword"}}}
    assert sent.sent[1][:3] == ("DELETE", "/i_v1?ignore_unavailable=true", None)


def test_bulk_bytes_travel_untouched_as_ndjson():
    sent = Recorder(body={"errors": False, "items": []})
    body = b'{"index":{"_id":"1"}}\n{"a":1}\n'
    client(sent).bulk(operations=body, index="i", filter_path="errors")
    method, target, data, headers = sent.sent[0]
    assert (method, target, data) == ("POST", "/i/_bulk?filter_path=errors", body)
    assert headers["content-type"] == "application/x-ndjson"


def test_bulk_requests_have_no_transport_retries_of_their_own_other_calls_keep_them():
    """io/bulk_load retries a bulk request within the load's budget: transport retries under it
    would multiply its attempts and its time past `retry.max_total_seconds`."""
    sent = Recorder(body={"errors": False, "items": []})
    es = client(sent)
    es.bulk(operations=b'{"delete":{"_id":"1"}}\n', index="i")
    es.count(index="i")
    assert sent.options == [{"max_retries": 0}, {}]


def test_an_error_status_raises_with_the_servers_reason_and_a_missing_index_is_not_found():
    with pytest.raises(SearchApiError, match="mapper_parsing_exception: bad field") as caught:
        client(Recorder(400, {"error": {"type": "mapper_parsing_exception", "reason": "bad field"}})).count(
            index="i"
        )
    assert caught.value.status_code == 400 and caught.value.error_type == "mapper_parsing_exception"
    with pytest.raises(SearchNotFound):
        client(Recorder(404, {"error": {"type": "index_not_found_exception", "reason": "no"}})).count(
            index="i"
        )
    assert client(Recorder(404, b"")).indices.exists(index="i") is False


def test_a_signer_signs_the_exact_bytes_sent():
    seen = []

    def signer(method, target, headers, body):
        seen.append((method, target, body))
        return {"authorization": "AWS4-HMAC-SHA256 test"}

    sent = Recorder()
    client(sent, signer).count(index="i", query={"term": {"a": 1}})
    method, target, body, headers = sent.sent[0]
    assert seen == [(method, target, body)] and headers["authorization"] == "AWS4-HMAC-SHA256 test"


def test_aws_settings_sign_every_request_for_the_domains_region(monkeypatch):
    import hashlib

    from sync_pipeline import settings
    from sync_pipeline.io.search import search_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    options = settings.load({"SYNC_SEARCH_AUTH": "aws-sigv4", "SYNC_AWS_REGION": "eu-west-1"}).es
    es = search_client("https://search-shop-abc.eu-west-1.es.amazonaws.com", options=options)
    sent = Recorder()
    es.transport = sent

    es.count(index="products", query={"match_all": {}})

    _, target, body, headers = sent.sent[0]
    assert target == "/products/_count"
    assert "Credential=AKIDEXAMPLE/" in headers["authorization"]
    assert "/eu-west-1/es/aws4_request" in headers["authorization"]
    assert headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()


def test_serverless_targets_are_refused_in_one_line_naming_why():
    from sync_pipeline import settings

    with pytest.raises(settings.SettingsError) as caught:
        settings.load({"SYNC_SEARCH_AUTH": "aws-sigv4", "SYNC_AWS_REGION": "x", "SYNC_AWS_SERVICE": "aoss"})
    assert "Serverless is not supported" in str(caught.value) and "external_gte" in str(caught.value)
    assert "\n" not in str(caught.value)
    root = {"version": {"number": "8.11.0", "build_flavor": "serverless"}, "tagline": "You Know, for Search"}
    with pytest.raises(UnsupportedServer, match="Elastic Cloud Serverless at http://h is not supported"):
        identify(root, {}, "http://h")


def test_aws_signing_refuses_other_credentials_and_a_missing_region():
    from sync_pipeline import settings

    with pytest.raises(settings.SettingsError, match="unset SYNC_ES_API_KEY"):
        settings.load({"SYNC_SEARCH_AUTH": "aws-sigv4", "SYNC_AWS_REGION": "x", "SYNC_ES_API_KEY": "k"})
    with pytest.raises(settings.SettingsError, match="needs the region"):
        settings.load({"SYNC_SEARCH_AUTH": "aws-sigv4"})
    with pytest.raises(settings.SettingsError, match="SYNC_SEARCH_BACKEND must be one of"):
        settings.load({"SYNC_SEARCH_BACKEND": "solr"})
