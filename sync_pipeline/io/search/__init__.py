"""The search target: one port for every supported search server.

`SearchTarget` is what `ops/` types against; `search_client` builds the one implementation
(`client.SearchClient`, plain REST over elastic_transport, for Elasticsearch 8/9 and OpenSearch
2/3), and `server` says which server it found. Nothing outside `io/` imports a search client
library (test_architecture.py).
"""

from __future__ import annotations

from sync_pipeline.core.mapping.dialect import ELASTICSEARCH, OPENSEARCH, Server
from sync_pipeline.io.search.client import SearchClient
from sync_pipeline.io.search.connect import connection_problem, search_client
from sync_pipeline.io.search.errors import (
    SearchApiError,
    SearchConnectionError,
    SearchConnectionTimeout,
    SearchNotFound,
    SearchTlsError,
    UnsupportedServer,
)
from sync_pipeline.io.search.port import SearchTarget

__all__ = [
    "ELASTICSEARCH",
    "OPENSEARCH",
    "SearchApiError",
    "SearchClient",
    "SearchConnectionError",
    "SearchConnectionTimeout",
    "SearchNotFound",
    "SearchTarget",
    "SearchTlsError",
    "Server",
    "UnsupportedServer",
    "connection_problem",
    "search_client",
]
