"""What each search server accepts in a mapping, and the server itself as a value.

Elasticsearch and OpenSearch share most field types, but not all: Elasticsearch's `flattened` is
OpenSearch's `flat_object`; `match_only_text` and `wildcard` came to OpenSearch later than to
Elasticsearch; some types exist on one side only (`semantic_text`, `sparse_vector`, `version`,
`histogram` are Elasticsearch's; `knn_vector` is OpenSearch's k-NN plugin's). A spec is written
once; its mapping is emitted for the server at hand, and a type the server lacks is refused with
the field named, before any index exists — never sent for the server to reject halfway.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ELASTICSEARCH = "elasticsearch"
OPENSEARCH = "opensearch"
PRODUCT_NAMES = {ELASTICSEARCH: "Elasticsearch", OPENSEARCH: "OpenSearch"}


@dataclass(frozen=True)
class Server:
    """A search server: its distribution and version."""

    distribution: str  # ELASTICSEARCH | OPENSEARCH
    version: tuple[int, int, int]

    @property
    def major(self) -> int:
        return self.version[0]

    @property
    def is_opensearch(self) -> bool:
        return self.distribution == OPENSEARCH

    @property
    def label(self) -> str:
        return f"{PRODUCT_NAMES[self.distribution]} {'.'.join(map(str, self.version))}"

    def at_least(self, major: int, minor: int = 0) -> bool:
        return self.version[:2] >= (major, minor)


# the same type under another name on the other distribution (only where the parameters agree)
SAME_TYPE = {"flattened": "flat_object", "flat_object": "flattened"}
# type → {distribution: first version that has it}; a distribution not listed lacks the type
INTRODUCED: dict[str, dict[str, tuple[int, int]]] = {
    "flattened": {ELASTICSEARCH: (7, 3)},
    "flat_object": {OPENSEARCH: (2, 7)},
    "match_only_text": {ELASTICSEARCH: (7, 14), OPENSEARCH: (2, 12)},
    "wildcard": {ELASTICSEARCH: (7, 9), OPENSEARCH: (2, 15)},
    "unsigned_long": {ELASTICSEARCH: (7, 10), OPENSEARCH: (2, 8)},
    "semantic_text": {ELASTICSEARCH: (8, 15)},
    "sparse_vector": {ELASTICSEARCH: (8, 0)},
    "dense_vector": {ELASTICSEARCH: (7, 0)},
    "version": {ELASTICSEARCH: (7, 10)},
    "histogram": {ELASTICSEARCH: (7, 6)},
    "aggregate_metric_double": {ELASTICSEARCH: (7, 11)},
    "constant_keyword": {ELASTICSEARCH: (7, 7)},
    "knn_vector": {OPENSEARCH: (1, 0)},
}
HINTS = {
    ("dense_vector", OPENSEARCH): "OpenSearch's vectors are `knn_vector` (k-NN plugin, `dimension:`)",
    ("knn_vector", ELASTICSEARCH): "Elasticsearch's vectors are `dense_vector` (`dims:`)",
}


# the field types of Elasticsearch 8/9 and OpenSearch 2/3 and their common plugins: what a spec's
# `type:` is checked against for typos (a type close to one of these but not one is refused)
KNOWN_FIELD_TYPES = frozenset(
    {
        "text", "keyword", "match_only_text", "wildcard", "constant_keyword", "counted_keyword",
        "long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float",
        "unsigned_long", "boolean", "date", "date_nanos", "binary", "ip", "version",
        "object", "nested", "flattened", "flat_object", "passthrough", "join", "alias", "percolator",
        "integer_range", "long_range", "float_range", "double_range", "date_range", "ip_range",
        "geo_point", "geo_shape", "point", "shape", "xy_point", "xy_shape",
        "completion", "search_as_you_type", "token_count", "rank_feature", "rank_features",
        "dense_vector", "sparse_vector", "semantic_text", "knn_vector", "histogram",
        "aggregate_metric_double", "annotated_text", "murmur3", "icu_collation_keyword", "derived",
    }
)  # fmt: skip


def misspelled_type(kind: str) -> str | None:
    """The known field type `kind` is probably a typo of, or None (known, or nothing close: a
    plugin's own type, left to the server to accept before anything is written)."""
    if kind in KNOWN_FIELD_TYPES:
        return None
    close = difflib.get_close_matches(kind, sorted(KNOWN_FIELD_TYPES), n=1, cutoff=0.75)
    return close[0] if close else None


# a spec's dense_vector (Elasticsearch's parameters) as OpenSearch's k-NN plugin takes it: the
# lucene engine, the one that has every space type below, came with OpenSearch 2.2
VECTOR_SPACE_TYPES = {
    "cosine": "cosinesimil",
    "l2_norm": "l2",
    "dot_product": "innerproduct",
    "max_inner_product": "innerproduct",
}
LUCENE_KNN_SINCE = (2, 2)


def _knn_vector(node: Mapping[str, Any]) -> dict[str, Any]:
    space_type = VECTOR_SPACE_TYPES[node.get("similarity", "cosine")]
    return {
        "type": "knn_vector",
        "dimension": node["dims"],
        "method": {"name": "hnsw", "engine": "lucene", "space_type": space_type},
    }


# Elasticsearch 9.1 has the setting, 9.2 turns it on for new indices: vectors left out of _source
EXCLUDE_SOURCE_VECTORS_SINCE = (9, 1)


def _has_type(node: Mapping[str, Any], kind: str) -> bool:
    if node.get("type") == kind:
        return True
    children = [c for nesting in ("properties", "fields") for c in (node.get(nesting) or {}).values()]
    return any(_has_type(c, kind) for c in children if isinstance(c, Mapping))


def settings_for_server(
    settings: Mapping[str, Any], mapping: Mapping[str, Any], server: Server
) -> dict[str, Any]:
    """The index settings `server` needs for `mapping` (already for_server's): an OpenSearch
    index holding a knn_vector must be created with `index.knn: true`, or kNN queries fail; an
    Elasticsearch 9.1+ index keeps its vectors in `_source` as sent — verify compares _source with
    what PostgreSQL holds, and the vectors rebuilt from the HNSW graph come back rounded."""
    out = dict(settings)
    if server.is_opensearch and _has_type(mapping, "knn_vector"):
        out.setdefault("knn", True)
    if (
        not server.is_opensearch
        and server.at_least(*EXCLUDE_SOURCE_VECTORS_SINCE)
        and _has_type(mapping, "dense_vector")
    ):
        out.setdefault("mapping.exclude_source_vectors", False)
    return out


class UnsupportedMapping(ValueError):
    """The spec asks for a field type the server does not have."""


def _available(kind: str, server: Server) -> bool:
    since = INTRODUCED.get(kind)
    if since is None:
        return True  # a type both have (text, keyword, long, date_nanos, nested, ...)
    first = since.get(server.distribution)
    return first is not None and server.at_least(*first)


def _emit(kind: str, server: Server) -> str:
    if _available(kind, server):
        return kind
    other = SAME_TYPE.get(kind)
    return other if other and _available(other, server) else kind


def for_server(mapping: Mapping[str, Any], server: Server) -> dict[str, Any]:
    """`mapping` as `server` accepts it; UnsupportedMapping naming every field it cannot take."""
    problems: list[str] = []
    adapted = _walk(mapping, server, "", problems)
    if problems:
        raise UnsupportedMapping(f"{server.label} cannot hold " + "; ".join(problems))
    return adapted


def _walk(node: Mapping[str, Any], server: Server, path: str, problems: list[str]) -> dict[str, Any]:
    out = dict(node)
    kind = node.get("type")
    if kind == "dense_vector" and server.is_opensearch and "dims" in node:
        if server.at_least(*LUCENE_KNN_SINCE):
            return _knn_vector(node)
        problems.append(
            f"field '{path}' of type dense_vector (OpenSearch's knn_vector with the lucene engine needs "
            f"OpenSearch {'.'.join(map(str, LUCENE_KNN_SINCE))} or later)"
        )
        return out
    if isinstance(kind, str):
        emitted = _emit(kind, server)
        if not _available(emitted, server):
            hint = HINTS.get((kind, server.distribution))
            problems.append(f"field '{path or '(root)'}' of type {kind}" + (f" ({hint})" if hint else ""))
        out["type"] = emitted
    for nesting in ("properties", "fields"):
        children = node.get(nesting)
        if isinstance(children, Mapping):
            out[nesting] = {
                name: _walk(child, server, f"{path}.{name}" if path else name, problems)
                if isinstance(child, Mapping)
                else child
                for name, child in children.items()
            }
    return out
