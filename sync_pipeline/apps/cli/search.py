"""`sync-pipeline search`: one command that shows the index answers what it was synced for;
`sync-pipeline grants`: the least privilege it needs to do so."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from sync_pipeline.apps.cli import json_shapes
from sync_pipeline.apps.cli.output import EXIT_DRIFT, EXIT_OK
from sync_pipeline.apps.cli.session import Session, UsageError
from sync_pipeline.core.grants import es_grants, opensearch_grants, pg_grants, read_tables
from sync_pipeline.core.specs import SyncSpec
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
    session = Session.open(args, one=True, preflight=False)
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
