"""`sync-pipeline search`: one command that shows the index answers what it was synced for (words
over its text fields, or `--knn` over a vector field);
`sync-pipeline grants`: the least privilege it needs to do so."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from sync_pipeline.apps.cli import json_shapes
from sync_pipeline.apps.cli.output import EXIT_DRIFT, EXIT_OK
from sync_pipeline.apps.cli.session import Session, UsageError
from sync_pipeline.core.cdc.grants import es_grants, opensearch_grants, pg_grants, read_tables
from sync_pipeline.core.mapping.dialect import Server
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.io.postgres import sqlalchemy_url
from sync_pipeline.io.search import SearchTarget

MAX_FRAGMENT = 120


def text_fields(properties: dict[str, Any], prefix: str = "") -> list[str]:
    """Every `text` field of a mapping, dotted, multi-fields of type text included; nested
    objects left out (they need a nested query, and a top-level multi_match would silently find
    nothing in them)."""
    found: list[str] = []
    for name, prop in properties.items():
        path = f"{prefix}{name}"
        if prop.get("type") == "text":
            found.append(path)
        found += [
            f"{path}.{sub}" for sub, inner in prop.get("fields", {}).items() if inner.get("type") == "text"
        ]
        if "properties" in prop and prop.get("type") != "nested":
            found += text_fields(prop["properties"], path + ".")
    return found


@dataclass(frozen=True)
class SearchHit:
    id: str
    score: float | None
    highlight: dict[str, list[str]]


@dataclass(frozen=True)
class SearchResult:
    spec: str
    index: str
    query: str
    fields: list[str]
    total: int
    hits: list[SearchHit]


def find(es: SearchTarget, spec: SyncSpec, query: str, size: int) -> SearchResult:
    """A multi-match over the index's text fields, with highlights. UsageError when there is no
    index or nothing to search."""
    index = spec.target.index
    if not es.indices.exists(index=index):
        raise UsageError(
            f"index '{index}' of spec '{spec.name}' does not exist: run `sync-pipeline sync` first"
        )
    mapping = next(iter(es.indices.get_mapping(index=index).body.values()))["mappings"]
    fields = text_fields(mapping.get("properties", {}))
    if not fields:
        raise UsageError(f"index '{index}' has no text field to search")
    response = es.search(
        index=index,
        query={"multi_match": {"query": query, "fields": fields}},
        highlight={"fields": {f: {} for f in fields}, "fragment_size": MAX_FRAGMENT},
        size=size,
        track_total_hits=True,
    )
    hits = response["hits"]
    return SearchResult(
        spec=spec.name,
        index=index,
        query=query,
        fields=fields,
        total=hits["total"]["value"],
        hits=[
            SearchHit(id=hit["_id"], score=hit["_score"], highlight=dict(hit.get("highlight", {})))
            for hit in hits["hits"]
        ],
    )


VECTOR_TYPES = {"dense_vector": "dims", "knn_vector": "dimension"}
MAX_CANDIDATES = 10_000  # Elasticsearch's limit on num_candidates


def knn_request(server: Server, field: str, vector: list[float], k: int) -> dict[str, Any]:
    """The body of a kNN search for the `k` nearest documents: Elasticsearch's top-level `knn`
    search option (candidates per shard: 10 × k, at least 100, for recall), OpenSearch's `knn`
    query (its k-NN plugin)."""
    if server.is_opensearch:
        return {"query": {"knn": {field: {"vector": vector, "k": k}}}, "size": k}
    candidates = min(MAX_CANDIDATES, max(100, 10 * k))
    return {"knn": {"field": field, "query_vector": vector, "k": k, "num_candidates": candidates}, "size": k}


def parse_vector(text: str) -> list[float]:
    """`--vector '[0.1, 0.2, …]'`: a JSON array of finite numbers; UsageError otherwise."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise UsageError(f"--vector must be a JSON array of numbers such as '[0.1, 0.2]', not {text[:80]!r}")
    return [float(v) for v in value]


def find_nearest(es: SearchTarget, spec: SyncSpec, field: str, vector: list[float], k: int) -> SearchResult:
    """The `k` documents nearest to `vector` in the vector field `field`. UsageError when the index
    does not exist, the field is not a vector field of it, or the vector's length is not its own."""
    index = spec.target.index
    if not es.indices.exists(index=index):
        raise UsageError(
            f"index '{index}' of spec '{spec.name}' does not exist: run `sync-pipeline sync` first"
        )
    mapping = next(iter(es.indices.get_mapping(index=index).body.values()))["mappings"]
    prop = mapping.get("properties", {}).get(field, {})
    kind = prop.get("type")
    if kind not in VECTOR_TYPES:
        vectors = sorted(n for n, p in mapping.get("properties", {}).items() if p.get("type") in VECTOR_TYPES)
        raise UsageError(
            f"--knn {field}: index '{index}' has no vector field '{field}' "
            f"(its vector fields: {', '.join(vectors) or 'none'})"
        )
    dims = prop.get(VECTOR_TYPES[kind])
    if dims is not None and dims != len(vector):
        raise UsageError(
            f"--knn {field}: the field holds {dims}-dimensional vectors, --vector has {len(vector)}"
        )
    response = es.search(index=index, **knn_request(es.server, field, vector, k), track_total_hits=True)
    hits = response["hits"]
    return SearchResult(
        spec=spec.name,
        index=index,
        query=f"knn {field} k={k}",
        fields=[field],
        total=hits["total"]["value"],
        hits=[SearchHit(id=hit["_id"], score=hit["_score"], highlight={}) for hit in hits["hits"]],
    )


def result_lines(result: SearchResult) -> list[str]:
    """A header line, then one line per hit with its highlighted fragments."""
    lines = [f"{result.spec}: '{result.query}' → {result.total:,} hits (fields: {', '.join(result.fields)})"]
    for hit in result.hits:
        highlights = "; ".join(
            f"{field}: {' … '.join(fragments)}" for field, fragments in hit.highlight.items()
        )
        lines.append(f"  {hit.score or 0.0:6.2f}  _id {hit.id}  {highlights}")
    return lines


def search_lines(es: SearchTarget, spec: SyncSpec, query: str, size: int) -> list[str]:
    return result_lines(find(es, spec, query, size))


def search_document(result: SearchResult, ok: bool) -> dict[str, Any]:
    """`sync_pipeline.search/1` (docs/cli.md)."""
    return json_shapes.document(
        "search",
        ok,
        spec=result.spec,
        index=result.index,
        query=result.query,
        fields=list(result.fields),
        total=result.total,
        hits=[{"id": h.id, "score": h.score, "highlight": h.highlight} for h in result.hits],
    )


def cmd_search(args: argparse.Namespace) -> int:
    if args.knn:
        if args.vector is None or args.query is not None:
            raise UsageError("--knn FIELD takes --vector '[...]' and no query words")
        vector = parse_vector(args.vector)
    elif args.query is None or args.vector is not None:
        raise UsageError("give the words to look for, or --knn FIELD --vector '[...]'")
    if args.knn and args.k < 1:
        raise UsageError(f"--k must be at least 1, not {args.k}")
    session = Session.open(args, one=True, preflight=False)
    if args.knn:
        result = find_nearest(session.es(), session.spec, args.knn, vector, args.k)
    else:
        result = find(session.es(), session.spec, args.query, args.size)
    code = EXIT_OK if result.hits else EXIT_DRIFT
    if args.json:
        json_shapes.emit(search_document(result, code == EXIT_OK))
    else:
        print("\n".join(result_lines(result)))
    return code


def cmd_grants(args: argparse.Namespace) -> int:
    """Printed from the spec alone: an administrator runs it before the servers are reachable."""
    session = Session.open(args, one=True, servers=False)
    spec = session.spec
    role = args.es_role or f"sync_pipeline_{spec.name}"
    # printed for the kind of server asked for (--for, else SYNC_SEARCH_BACKEND), never guessed
    kind = args.search_for or session.settings.es.backend
    if kind == "opensearch":
        print(opensearch_grants(spec, role, session.settings.es.username or "sync_pipeline"))
    else:
        print(es_grants(spec, role))
        if kind == "auto":
            print("# for OpenSearch's security plugin: sync-pipeline grants --for opensearch")
    print()
    database = make_url(sqlalchemy_url(session.settings.pg_url)).database if session.settings.pg_url else None
    print(pg_grants(spec, read_tables(spec), args.pg_role, database, with_stats=args.with_stats))
    return EXIT_OK
