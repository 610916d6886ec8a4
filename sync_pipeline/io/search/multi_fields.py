"""Multi-fields that documents lack though they hold the parent field.

A multi-field added to a live mapping covers only the documents indexed after it, and their
`_source` is the same either way: comparing documents with rows cannot see the gap.
Elasticsearch can: a document that holds the parent field but not its sub-field was indexed
before the sub-field existed (a mapping change whose re-send never ran).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.io.search.indices import matching_ids
from sync_pipeline.io.search.port import SearchTarget

# a sub-field with these may leave a value out on purpose: its absence proves nothing
_MAY_SKIP = ("ignore_above", "ignore_malformed")


def checkable(mappings: dict[str, Any]) -> list[tuple[str, str]]:
    """(parent path, sub-field path) of every multi-field that indexes each value of its parent.
    Fields inside `nested` objects are left out: each level would need a nested query."""
    found: list[tuple[str, str]] = []

    def walk(properties: dict[str, Any], prefix: str) -> None:
        for name, prop in properties.items():
            path = f"{prefix}{name}"
            if prop.get("type") == "nested":
                continue
            walk(prop.get("properties") or {}, f"{path}.")
            for sub, definition in (prop.get("fields") or {}).items():
                if definition.get("index", True) is not False and not any(k in definition for k in _MAY_SKIP):
                    found.append((path, f"{path}.{sub}"))

    walk(mappings.get("properties") or {}, "")
    return found


def _lacking(parent: str, sub: str) -> dict[str, Any]:
    return {"bool": {"filter": [{"exists": {"field": parent}}], "must_not": [{"exists": {"field": sub}}]}}


def multi_field_gaps(
    es: SearchTarget, spec: SyncSpec, repair: Callable[[str], None] | None = None
) -> list[str]:
    """One line per multi-field some documents lack; with `repair`, each such document's _id is
    handed to it (verify --fix re-sends it from its row: the same `_source`, now indexed whole)."""
    index = spec.target.index
    found = es.indices.get_mapping(index=index).body
    pairs = sorted({pair for entry in found.values() for pair in checkable(entry.get("mappings") or {})})
    lines, lacking = [], []
    for parent, sub in pairs:
        count = int(es.count(index=index, query=_lacking(parent, sub))["count"])
        if count:
            lacking.append(_lacking(parent, sub))
            fix = "" if repair else ": verify --fix re-sends them"
            lines.append(
                f"{sub}: missing from {count} documents that hold {parent} (indexed before the "
                f"multi-field was added, and not re-sent since{fix})"
            )
    if repair is not None and lacking:
        # each document once, however many of its multi-fields it lacks
        for doc_id in matching_ids(es, spec, {"bool": {"should": lacking, "minimum_should_match": 1}}):
            repair(doc_id)
    return lines
