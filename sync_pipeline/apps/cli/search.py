"""`sync-pipeline search`: one command that shows the index answers what it was synced for."""

from __future__ import annotations

import argparse
from typing import Any

from sync_pipeline.apps.cli.output import EXIT_DRIFT, EXIT_OK
from sync_pipeline.apps.cli.session import Session, UsageError

MAX_FRAGMENT = 120


def text_fields(properties: dict[str, Any], prefix: str = "") -> list[str]:
    """Every `text` field of a mapping, dotted; nested objects left out (they need a nested
    query, and a top-level multi_match would silently find nothing in them)."""
    found: list[str] = []
    for name, prop in properties.items():
        path = f"{prefix}{name}"
        if prop.get("type") == "text":
            found.append(path)
        elif "properties" in prop and prop.get("type") != "nested":
            found += text_fields(prop["properties"], path + ".")
    return found


def cmd_search(args: argparse.Namespace) -> int:
    session = Session.open(args, one=True, preflight=False)
    spec = session.spec
    es = session.es()
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
        query={"multi_match": {"query": args.query, "fields": fields}},
        highlight={"fields": {f: {} for f in fields}, "fragment_size": MAX_FRAGMENT},
        size=args.size,
        track_total_hits=True,
    )
    hits = response["hits"]
    print(f"{spec.name}: '{args.query}' → {hits['total']['value']:,} hits (fields: {', '.join(fields)})")
    for hit in hits["hits"]:
        highlights = "; ".join(
            f"{field}: {' … '.join(fragments)}" for field, fragments in hit.get("highlight", {}).items()
        )
        print(f"  {hit['_score']:6.2f}  _id {hit['_id']}  {highlights}")
    return EXIT_OK if hits["hits"] else EXIT_DRIFT
