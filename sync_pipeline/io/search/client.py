"""One HTTP client for every supported search server: the handful of REST calls sync_pipeline
makes, spoken as plain JSON over the Elastic transport.

Why not the vendors' clients: elasticsearch-py 9 sends `compatible-with=9`, which Elasticsearch 8
refuses, and refuses any server that is not Elasticsearch; opensearch-py takes `body=` where
elasticsearch-py takes keywords, so two clients would mean every call written twice. The calls
below are the same REST API on Elasticsearch 8 and 9 and OpenSearch 2 and 3 when sent as plain
`application/json` (no compatibility media type), so one client serves all four, over
elastic_transport — the connection pool, TLS and retries elasticsearch-py itself is built on.
Differences between servers (mapping types, Serverless) are decided from `server`, read once.

Methods keep elasticsearch-py's names and keywords (`es.indices.refresh(index=...)`), so code
and tests read as they always have; responses are dicts (`.body` is the dict itself).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

import orjson
from elastic_transport import Transport

from sync_pipeline.core.mapping.dialect import Server
from sync_pipeline.io.search.errors import SearchApiError, api_error
from sync_pipeline.io.search.server import check_wanted, identify

# signs a request (method, target, headers, body) → headers to add (SigV4 for AWS)
Signer = Callable[[str, str, Mapping[str, str], bytes | None], Mapping[str, str]]

# keywords that travel in the URL; everything else a method takes goes in the JSON body
_URL_PARAMS = frozenset(
    {
        "allow_no_indices", "expand_wildcards", "filter_path", "ignore_unavailable", "refresh",
        "routing", "timeout", "version", "version_type", "wait_for_status", "wait_for_active_shards",
        "if_seq_no", "if_primary_term", "op_type", "preference", "request_cache", "flat_settings",
        "include_defaults", "metric", "level", "master_timeout", "cluster_manager_timeout",
    }
)  # fmt: skip
# keywords whose JSON name has a leading underscore (as elasticsearch-py maps them)
_UNDERSCORED = {"meta": "_meta", "source": "_source", "routing_field": "_routing"}


class Response(dict):
    """A response body; `.body` is itself, as elasticsearch-py's responses have one."""

    @property
    def body(self) -> Response:
        return self


def _path(*parts: str | Iterable[str] | None) -> str:
    out = []
    for part in parts:
        if part is None:
            continue
        if not isinstance(part, str):
            part = ",".join(part)
        out.append(part if part.startswith("_") else quote(part, safe=",*"))
    return "/" + "/".join(out)


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def _split(kwargs: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    params, body = {}, {}
    for key, value in kwargs.items():
        if value is None:
            continue
        if key in _URL_PARAMS:
            params[key] = _param(value)
        else:
            body[_UNDERSCORED.get(key, key)] = value
    return params, body


class SearchClient:
    """The search target's REST calls (see the module's docstring); thread-safe."""

    def __init__(
        self,
        transport: Transport,
        where: str,
        *,
        wanted: str = "auto",
        signer: Signer | None = None,
    ) -> None:
        self.transport = transport
        self.where = where  # the server's URL as it may be shown (no password)
        self.wanted = wanted
        self.signer = signer
        self._server: Server | None = None
        self._lock = threading.Lock()
        self.indices = _Indices(self)
        self.nodes = _Nodes(self)
        self.cluster = _Cluster(self)

    # --- the server ---------------------------------------------------------------------------

    @property
    def server(self) -> Server:
        """The distribution and version at the other end, asked once (`GET /`)."""
        if self._server is None:
            with self._lock:
                if self._server is None:
                    server = identify(*self._root(), self.where)
                    check_wanted(server, self.wanted, self.where)
                    self._server = server
        return self._server

    def _root(self) -> tuple[Any, Mapping[str, str]]:
        """`GET /`'s body and headers. A node without the root endpoint (Elasticsearch's
        integ-test distribution has no `rest-root` module) is asked its own node info instead."""
        try:
            headers, root = self._raw("GET", "/")
            return root, headers
        except SearchApiError as exc:
            if exc.status_code not in (400, 404, 405):
                raise
        fields = "nodes.*.version,nodes.*.build_flavor"
        headers, found = self._raw("GET", f"/_nodes/_local?filter_path={fields}")
        node = next(iter((found or {}).get("nodes", {}).values()), {})
        return {"version": {"number": node.get("version"), "build_flavor": node.get("build_flavor")}}, headers

    def check(self) -> Server:
        """The server, identified (UnsupportedServer for one we do not support), and answering
        for its cluster's health: what a command checks before it starts."""
        server = self.server
        self.cluster.health()
        return server

    def close(self) -> None:
        self.transport.close()

    # --- requests -----------------------------------------------------------------------------

    def _raw(
        self, method: str, target: str, body: bytes | None = None, ndjson: bool = False, retried: bool = True
    ) -> tuple[Mapping[str, str], Any]:
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/x-ndjson" if ndjson else "application/json"
        if self.signer is not None:
            headers.update(self.signer(method, target, headers, body))
        # not `retried`: the caller retries within its own budget (io/bulk_load.py), so the
        # transport's retries must not multiply its attempts and time
        options = {} if retried else {"max_retries": 0}
        response = self.transport.perform_request(method, target, body=body, headers=headers, **options)
        status = response.meta.status
        if status >= 400 and not (method == "HEAD" and status == 404):
            raise api_error(status, response.body)
        return response.meta.headers, response.body if method != "HEAD" else status < 300

    def perform(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        ndjson: bool = False,
        retried: bool = True,
    ) -> Any:
        target = path + (
            "?" + "&".join(f"{k}={quote(v, safe=',*')}" for k, v in params.items()) if params else ""
        )
        data = body if body is None or isinstance(body, bytes) else orjson.dumps(body)
        _, result = self._raw(method, target, data, ndjson, retried)
        return Response(result) if isinstance(result, dict) else result

    def _call(self, method: str, path: str, kwargs: Mapping[str, Any], body_allowed: bool = True) -> Any:
        params, body = _split(kwargs)
        return self.perform(method, path, params, body if body_allowed and body else None)

    # --- documents ----------------------------------------------------------------------------

    def bulk(
        self, *, operations: bytes | Iterable[Mapping[str, Any]], index: str | None = None, **kw: Any
    ) -> Any:
        if not isinstance(operations, bytes):
            operations = b"".join(orjson.dumps(op) + b"\n" for op in operations)
        params, _ = _split(kw)
        return self.perform("POST", _path(index, "_bulk"), params, operations, ndjson=True, retried=False)

    def count(self, *, index: str, **kw: Any) -> Response:
        return self._call("POST", _path(index, "_count"), kw)

    def search(self, *, index: str, **kw: Any) -> Response:
        return self._call("POST", _path(index, "_search"), kw)

    def get(self, *, index: str, id: str, **kw: Any) -> Response:
        return self._call("GET", _path(index, "_doc", id), kw, body_allowed=False)

    def exists(self, *, index: str, id: str, **kw: Any) -> bool:
        return self._call("HEAD", _path(index, "_doc", id), kw, body_allowed=False)

    def index(self, *, index: str, document: Mapping[str, Any], id: str | None = None, **kw: Any) -> Response:
        params, _ = _split(kw)
        if id is None:
            return self.perform("POST", _path(index, "_doc"), params, dict(document))
        return self.perform("PUT", _path(index, "_doc", str(id)), params, dict(document))

    def update(self, *, index: str, id: str, **kw: Any) -> Response:
        return self._call("POST", _path(index, "_update", str(id)), kw)

    def delete(self, *, index: str, id: str, **kw: Any) -> Response:
        return self._call("DELETE", _path(index, "_doc", str(id)), kw, body_allowed=False)


class _Namespace:
    def __init__(self, client: SearchClient) -> None:
        self._client = client


class _Indices(_Namespace):
    def exists(self, *, index: str, **kw: Any) -> bool:
        return self._client._call("HEAD", _path(index), kw, body_allowed=False)

    def exists_alias(self, *, name: str, index: str | None = None, **kw: Any) -> bool:
        return self._client._call("HEAD", _path(index, "_alias", name), kw, body_allowed=False)

    def get_alias(self, *, name: str | None = None, index: str | None = None, **kw: Any) -> Response:
        return self._client._call("GET", _path(index, "_alias", name), kw, body_allowed=False)

    def get(self, *, index: str, **kw: Any) -> Response:
        return self._client._call("GET", _path(index), kw, body_allowed=False)

    def create(self, *, index: str, **kw: Any) -> Response:
        return self._client._call("PUT", _path(index), kw)

    def delete(self, *, index: str, **kw: Any) -> Response:
        return self._client._call("DELETE", _path(index), kw, body_allowed=False)

    def refresh(self, *, index: str, **kw: Any) -> Response:
        return self._client._call("POST", _path(index, "_refresh"), kw, body_allowed=False)

    def get_mapping(self, *, index: str, **kw: Any) -> Response:
        return self._client._call("GET", _path(index, "_mapping"), kw, body_allowed=False)

    def put_mapping(self, *, index: str, **kw: Any) -> Response:
        return self._client._call("PUT", _path(index, "_mapping"), kw)

    def get_settings(self, *, index: str, name: str | Iterable[str] | None = None, **kw: Any) -> Response:
        return self._client._call("GET", _path(index, "_settings", name), kw, body_allowed=False)

    def put_settings(self, *, index: str, settings: Mapping[str, Any], **kw: Any) -> Response:
        params, _ = _split(kw)
        return self._client.perform("PUT", _path(index, "_settings"), params, dict(settings))

    def update_aliases(self, *, actions: list[Mapping[str, Any]], **kw: Any) -> Response:
        return self._client._call("POST", "/_aliases", {**kw, "actions": actions})

    def analyze(self, *, index: str | None = None, **kw: Any) -> Response:
        return self._client._call("POST", _path(index, "_analyze"), kw)


class _Nodes(_Namespace):
    def stats(self, *, metric: str | Iterable[str] | None = None, **kw: Any) -> Response:
        return self._client._call("GET", _path("_nodes", "stats", metric), kw, body_allowed=False)

    def info(self, *, metric: str | Iterable[str] | None = None, **kw: Any) -> Response:
        return self._client._call("GET", _path("_nodes", metric), kw, body_allowed=False)


class _Cluster(_Namespace):
    def health(self, *, index: str | None = None, **kw: Any) -> Response:
        return self._client._call("GET", _path("_cluster", "health", index), kw, body_allowed=False)

    def put_settings(self, **kw: Any) -> Response:
        return self._client._call("PUT", "/_cluster/settings", kw)
