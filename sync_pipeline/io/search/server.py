"""Which search server is at the other end: its distribution and version, read once from `GET /`.

Elasticsearch and OpenSearch answer `GET /` alike; OpenSearch says so in `version.distribution`.
The distribution is decided first and the version only then, because OpenSearch 2 and 3 report
numbers (2.19, 3.3) that a bare "7.14 or later means Elasticsearch" check misreads. The settings
may name the backend (SYNC_SEARCH_BACKEND): a server of another kind is then refused, never used
as if it were the one asked for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sync_pipeline.core.mapping.dialect import ELASTICSEARCH, OPENSEARCH, PRODUCT_NAMES, Server
from sync_pipeline.io.search.errors import UnsupportedServer

# the majors the compatibility suite runs against (README's matrix says the same)
SUPPORTED_MAJORS = {ELASTICSEARCH: (8, 9), OPENSEARCH: (2, 3)}
_NUMBER = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def _version(number: Any, where: str) -> tuple[int, int, int]:
    match = _NUMBER.match(str(number or ""))
    if not match:
        raise UnsupportedServer(f"the search server at {where} reports no version number ({number!r})")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def identify(root: Mapping[str, Any], headers: Mapping[str, str], where: str) -> Server:
    """The server that answered `GET /` with `root` (its body) and `headers`; UnsupportedServer
    for anything that is neither a supported Elasticsearch nor a supported OpenSearch."""
    version = root.get("version") if isinstance(root, Mapping) else None
    if not isinstance(version, Mapping):
        raise UnsupportedServer(f"the server at {where} does not answer like Elasticsearch or OpenSearch")
    lowered = {k.lower(): v for k, v in headers.items()}
    if str(version.get("distribution", "")).lower() == OPENSEARCH:
        server = Server(OPENSEARCH, _version(version.get("number"), where))
    elif lowered.get("x-elastic-product") == "Elasticsearch" or root.get("tagline") == "You Know, for Search":
        if version.get("build_flavor") == "serverless":
            # it takes no shard, replica or refresh settings, which every load sets: refused
            # until the suite can run against it
            raise UnsupportedServer(
                f"Elastic Cloud Serverless at {where} is not supported: {supported_text()}"
            )
        server = Server(ELASTICSEARCH, _version(version.get("number"), where))
    else:
        raise UnsupportedServer(
            f"the server at {where} is neither Elasticsearch nor OpenSearch "
            f"(distribution {version.get('distribution')!r}, version {version.get('number')!r})"
        )
    if server.major not in SUPPORTED_MAJORS[server.distribution]:
        raise UnsupportedServer(f"{server.label} at {where} is not supported: {supported_text()}")
    return server


def supported_text() -> str:
    return "sync_pipeline supports " + ", ".join(
        f"{PRODUCT_NAMES[d]} {' and '.join(map(str, majors))}" for d, majors in SUPPORTED_MAJORS.items()
    )


def check_wanted(server: Server, wanted: str, where: str) -> None:
    """Refuse a server of another distribution than SYNC_SEARCH_BACKEND names ("auto": any)."""
    if wanted not in ("auto", server.distribution):
        raise UnsupportedServer(
            f"SYNC_SEARCH_BACKEND={wanted} but the server at {where} is {server.label}: "
            "point SYNC_ES_URL at the right cluster, or set SYNC_SEARCH_BACKEND=auto"
        )
