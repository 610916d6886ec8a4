"""The spec's index as the spec says it should be: created, compared, changed in place.

Every use case that writes calls `reconcile_target` first: a missing index is created
from the spec's mapping; an existing one is compared with it (core/mapping/diff.py).
What Elasticsearch can change in place is applied and reported; anything else stops
the caller before its first write, with the fields, the old and new definitions, and
the command that fixes it. ops/prepare.py adds the rebuild a spec may ask for instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.documents.index_mapping import index_mapping, index_settings, inferred_from_values
from sync_pipeline.core.mapping.dialect import Server, UnsupportedMapping, for_server, settings_for_server
from sync_pipeline.core.mapping.diff import Change, MappingDiff, conflict_message, diff_mappings
from sync_pipeline.core.sql.statements import SourceError
from sync_pipeline.io.search import SearchApiError, SearchNotFound, SearchTarget
from sync_pipeline.io.search.indices import META_KEY, ensure_index, with_backoff
from sync_pipeline.ops.binding import Bound, target_mapping


class MappingConflict(SourceError):
    """The index's mapping disagrees with the spec's in a way Elasticsearch cannot change in
    place; nothing was written. `conflicts` lists the fields."""

    def __init__(self, message: str, conflicts: list[Change]) -> None:
        super().__init__(message)
        self.conflicts = conflicts


class MappingRefused(SourceError):
    """Elasticsearch refused the spec's mapping or settings (an unknown analyzer, a parameter
    the field's type does not take); nothing was created or changed."""


@dataclass
class TargetState:
    created: bool = False
    applied: list[str] = field(default_factory=list)  # in-place changes, described
    rebuilt: str | None = None  # the index a rebuild swapped in (ops/prepare.py)
    index: str | None = None  # the concrete index compared
    meta: dict[str, Any] = field(default_factory=dict)  # sync_pipeline's entry in its `_meta`

    @property
    def lines(self) -> list[str]:
        return [*(["created the index from the spec's mapping"] if self.created else []), *self.applied]


# which distribution or plugin provides the analysis components users most often ask for
PROVIDED_BY = {
    **dict.fromkeys(
        (
            "cjk",
            "english",
            "french",
            "german",
            "pattern",
            "fingerprint",
            "snowball",
            "cjk_bigram",
            "cjk_width",
            "asciifolding",
            "stemmer",
            "ngram",
            "edge_ngram",
            "whitespace",
            "keyword",
            "letter",
            "classic",
            "trim",
            "uppercase",
            "word_delimiter_graph",
            "synonym",
        ),
        "the analysis-common module (in every Elasticsearch distribution except the integ-test zip)",
    ),
    "smartcn": "the analysis-smartcn plugin (bin/elasticsearch-plugin install analysis-smartcn)",
    "smartcn_tokenizer": "the analysis-smartcn plugin (bin/elasticsearch-plugin install analysis-smartcn)",
    **dict.fromkeys(
        ("icu_analyzer", "icu_tokenizer", "icu_normalizer", "icu_folding"),
        "the analysis-icu plugin (bin/elasticsearch-plugin install analysis-icu)",
    ),
}


def refusal(spec: str, server: str, where: str, exc: SearchApiError) -> MappingRefused:
    error = exc.body.get("error", {}) if isinstance(exc.body, dict) else {}
    reason = (error.get("caused_by") or {}).get("reason") or error.get("reason") or str(exc)
    hints = [f"'{name}' comes with {origin}" for name, origin in PROVIDED_BY.items() if f"[{name}]" in reason]
    return MappingRefused(
        f"spec '{spec}': {server} refused {where}: {reason}"
        + (f" ({'; '.join(hints)})" if hints else "")
        + "; nothing was changed (docs/configuration.md, 'Mappings')"
    )


def live_mapping(es: SearchTarget, name: str) -> tuple[str, dict[str, Any]] | None:
    """(concrete index, its mappings) behind `name`; None when there is no such index. Behind
    an alias with several indices (a rollback's leftovers), the write index is the one writes meet."""
    try:
        found = es.indices.get_mapping(index=name).body
    except SearchNotFound:
        return None
    if len(found) > 1:
        aliases = es.indices.get_alias(name=name).body
        writing = [i for i, e in aliases.items() if e.get("aliases", {}).get(name, {}).get("is_write_index")]
        index = writing[0] if writing else sorted(found)[-1]
    else:
        index = next(iter(found))
    return index, found[index].get("mappings", {})


def mapping_drift(es: SearchTarget, bound: Bound, index: str | None = None) -> tuple[str, MappingDiff] | None:
    """How the live index differs from the spec's mapping; None when it does not exist."""
    live = live_mapping(es, index or bound.spec.target.index)
    if live is None:
        return None
    return live[0], compare(bound, live[1], es, live[0])


def emitted(bound: Bound, mapping: Mapping[str, Any], server: Server) -> dict[str, Any]:
    """The spec's mapping as `server` takes it (core/mapping/dialect.py); MappingRefused, before
    anything is created or changed, for a field type the server does not have."""
    try:
        return for_server(mapping, server)
    except UnsupportedMapping as exc:
        raise MappingRefused(f"spec '{bound.spec.name}': {exc}; nothing was created or changed") from None


def compare(bound: Bound, live: Mapping[str, Any], es: SearchTarget, index: str) -> MappingDiff:
    wanted = emitted(bound, index_mapping(bound.plan), es.server)
    diff = diff_mappings(wanted, live, inferred_from_values(bound.plan))
    return _vectors_needing_a_new_index(es, index, diff)


def _vectors_needing_a_new_index(es: SearchTarget, index: str, diff: MappingDiff) -> MappingDiff:
    """A vector field added to an index created without the setting it needs is a conflict, not
    an in-place change: the settings are static (only a new index takes them). Without them
    Elasticsearch 9.2 keeps vectors out of `_source`, so verify would report every document, and
    an OpenSearch index cannot answer a kNN query."""
    vectors = [
        c
        for c in diff.additions
        if c.what == "new field"
        and isinstance(c.new, Mapping)
        and settings_for_server({}, {"properties": {c.path: c.new}}, es.server)
    ]
    if not vectors:
        return diff
    needed = settings_for_server({}, {"properties": {c.path: c.new for c in vectors}}, es.server)
    live = es.indices.get_settings(index=index).body[index]["settings"]["index"]
    missing = {}
    for key, value in needed.items():
        found: Any = live
        for part in key.split("."):
            found = found.get(part) if isinstance(found, Mapping) else None
        if str(found).lower() != str(value).lower():
            missing[key] = value
    if not missing:
        return diff
    setting = ", ".join(f"index.{k}: {str(v).lower()}" for k, v in missing.items())
    return MappingDiff(
        additions=[c for c in diff.additions if c not in vectors],
        conflicts=[*diff.conflicts, *(Change(c.path, "new vector field", setting, c.new) for c in vectors)],
    )


def field_sources(bound: Bound) -> dict[str, str]:
    """Field → the column it comes from, with its PostgreSQL type: what a conflict names."""
    sources = {}
    for f in bound.plan.fields:
        info = f.column_info
        declared = f"({info.precision}, {info.scale})" if info.precision is not None else ""
        sources[f.name] = f"column {info.name} is {info.pg_type}{declared}{'[]' if info.is_array else ''}"
    return sources


def create_target(
    es: SearchTarget, bound: Bound, source: Engine | Connection, index: str | None = None
) -> bool:
    """Create the target (alias + first versioned index) from the spec's mapping unless it
    exists; True when created. An index op on a missing index would otherwise create it
    with guessed mappings."""
    name = index or bound.spec.target.index
    if es.indices.exists(index=name):
        return False
    try:
        mapping = emitted(bound, target_mapping(source, bound), es.server)
        created = {"spec": bound.spec.name, "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
        settings = settings_for_server(index_settings(bound.spec), mapping, es.server)
        return ensure_index(es, name, mapping, settings, meta=created)
    except SearchApiError as exc:
        if exc.status_code == 400:
            raise refusal(
                bound.spec.name, es.server.label, f"the mapping or settings of index {name}", exc
            ) from None
        raise


def conflict_error(bound: Bound, index: str, conflicts: list[Change]) -> MappingConflict:
    alias = bound.spec.target.index
    where = index if index == alias else f"{index} (alias {alias})"
    return MappingConflict(
        conflict_message(bound.spec.name, where, conflicts, field_sources(bound)), conflicts
    )


def reconcile_target(
    es: SearchTarget,
    bound: Bound,
    source: Engine | Connection,
    index: str | None = None,
    before_change: Callable[[TargetState, MappingDiff], None] | None = None,
) -> tuple[TargetState, MappingDiff]:
    """Create the index, or bring its mapping in line in place; MappingConflict (nothing
    changed) when only a rebuild can. Returns what was done and the comparison it was based on.
    `before_change` runs before an in-place change, with the state found and the change: what
    the change will leave to do is recorded there, so a run killed right after it leaves the
    record behind (ops/prepare.py)."""
    name = index or bound.spec.target.index
    state = TargetState()
    live = live_mapping(es, name)
    if live is None:
        state.created = create_target(es, bound, source, index)
        if state.created:
            return state, MappingDiff()
        live = live_mapping(es, name)  # another run created it meanwhile
        assert live is not None
    state.index, mappings = live
    state.meta = dict((mappings.get("_meta") or {}).get(META_KEY) or {})
    diff = compare(bound, mappings, es, state.index)
    if diff.conflicts:
        raise conflict_error(bound, state.index, diff.conflicts)
    if diff.additions:
        if before_change is not None:
            before_change(state, diff)
        apply_in_place(es, bound, source, state.index, diff)
        sources = field_sources(bound)
        state.applied = [f"mapping: {c.describe(sources)}" for c in diff.additions]
    return state, diff


def apply_in_place(
    es: SearchTarget, bound: Bound, source: Engine | Connection, index: str, diff: MappingDiff
) -> None:
    """One update-mapping call with the touched top-level fields' whole definitions (JSON
    columns' from a fresh sample of their values) and the root's changed parameters."""
    wanted = emitted(
        bound, target_mapping(source, bound) if diff.touched else index_mapping(bound.plan), es.server
    )
    body: dict[str, Any] = {c.what: wanted[c.what] for c in diff.additions if c.path == "(index)"}
    properties = {name: wanted["properties"][name] for name in diff.touched}
    try:
        with_backoff(lambda: es.indices.put_mapping(index=index, properties=properties, **body))
    except SearchApiError as exc:
        if exc.status_code != 400:
            raise
        # a change this module took for one Elasticsearch makes in place, and it does not
        refused = refusal(
            bound.spec.name, es.server.label, f"an in-place change to the mapping of {index}", exc
        )
        raise MappingConflict(
            f"{conflict_error(bound, index, diff.additions)}\n({refused})", diff.additions
        ) from None
