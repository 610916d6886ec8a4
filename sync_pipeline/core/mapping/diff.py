"""The spec's mapping against the live index's: what Elasticsearch can change in place, what not.

Elasticsearch accepts some changes to an existing index — a new field, a new multi-field, a
few parameters (`ignore_above`, `search_analyzer`, …), the root's `dynamic` — and refuses
the rest: a field's type, its analyzer, object ↔ `nested`, and it cannot drop a field at all.
A sync that wrote into an index whose mapping disagrees with the spec would index values
under the old rules without a word (12.5 into an `integer` field is 12, and `_source` still
says 12.5, so comparing documents finds nothing), hence this comparison before every load.

Both sides are normalised first, because Elasticsearch returns a mapping without the
parameters left at their defaults, `copy_to` as a list and `dynamic` as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# parameters at these values are what Elasticsearch assumes when they are absent
DEFAULTS: dict[str, Any] = {
    "index": True,
    "doc_values": True,
    "store": False,
    "norms": True,
    "enabled": True,
    "coerce": True,
    "ignore_malformed": False,
    "eager_global_ordinals": False,
    "index_phrases": False,
}
# parameters an update-mapping call may change on an existing field
IN_PLACE = frozenset(
    {
        "ignore_above",
        "ignore_malformed",
        "coerce",
        "search_analyzer",
        "search_quote_analyzer",
        "meta",
        "dynamic",
    }
)
ROOT_IN_PLACE = ("dynamic", "date_detection")
# parameters the server fills in for a vector field when the spec leaves them out (Elasticsearch's
# quantised HNSW index_options, which differ by version and dims; OpenSearch's method parameters)
SERVER_CHOSEN = {
    "dense_vector": frozenset({"index_options"}),
    "knn_vector": frozenset({"data_type", "mode", "compression_level"}),
}
OBJECTS = ("object", "nested")


@dataclass(frozen=True)
class Change:
    path: str  # dotted field path; "(index)" for the root's own parameters
    what: str  # "new field", "new multi-field", or the parameter that changes
    old: Any = None
    new: Any = None

    def describe(self, sources: Mapping[str, str] | None = None) -> str:
        why = f" ({sources[self.path]})" if sources and self.path in sources else ""
        if self.what in ("new field", "new multi-field"):
            return f"{self.path}: {self.what} {_short(self.new)}{why}"
        if self.what == "new vector field":  # `old`: the index setting only a new index takes
            needs = f"which needs {self.old} (set when an index is created)"
            return f"{self.path}: new field {_short(self.new)}, {needs}{why}"
        if self.what == "dropped field":
            return f"{self.path}: in the index ({_short(self.old)}), no longer in the spec's documents{why}"
        return f"{self.path}: {self.what} {_short(self.old)} → {_short(self.new)}{why}"


@dataclass
class MappingDiff:
    additions: list[Change] = field(default_factory=list)  # applied in place before a load
    conflicts: list[Change] = field(default_factory=list)  # need a rebuild

    @property
    def same(self) -> bool:
        return not self.additions and not self.conflicts

    @property
    def touched(self) -> list[str]:
        """The top-level fields an in-place update has to send."""
        return sorted({c.path.split(".")[0] for c in self.additions if c.path != "(index)"})


def _short(value: Any) -> str:
    if isinstance(value, dict):
        inner = ", ".join(f"{k}: {_short(v)}" for k, v in value.items() if k not in ("properties", "fields"))
        return "{" + inner + (", …" if "properties" in value or "fields" in value else "") + "}"
    return "none" if value is None else str(value)


def normalised(definition: Mapping[str, Any]) -> dict[str, Any]:
    """A field definition as Elasticsearch reports it back."""
    out: dict[str, Any] = {}
    for key, value in definition.items():
        if key in DEFAULTS and value == DEFAULTS[key]:
            continue
        if key == "copy_to" and isinstance(value, str):
            value = [value]
        elif key == "dynamic" and isinstance(value, bool):
            value = str(value).lower()
        out[key] = value
    if out.get("type") == "object":
        del out["type"]  # an object is reported without its type
    return out


def _type(definition: Mapping[str, Any]) -> str:
    return definition.get("type", "object")


def diff_mappings(
    wanted: Mapping[str, Any], live: Mapping[str, Any], keep_live: frozenset[str] = frozenset()
) -> MappingDiff:
    """How `live` (an index's mappings) differs from `wanted` (the spec's). `keep_live`: fields
    whose mapping was inferred from sampled values; the index's definition stands for them."""
    diff = MappingDiff()
    for key in ROOT_IN_PLACE:
        old, new = normalised({key: live.get(key)}).get(key), normalised({key: wanted.get(key)}).get(key)
        if (
            new is not None
            and str(old if old is not None else _root_default(key)).lower() != str(new).lower()
        ):
            diff.additions.append(Change("(index)", key, old, new))
    _properties(wanted.get("properties", {}), live.get("properties", {}), "", keep_live, diff)
    return diff


def _root_default(key: str) -> str:
    return {"dynamic": "true", "date_detection": "true"}[key]


def _properties(
    wanted: Mapping[str, Any],
    live: Mapping[str, Any],
    prefix: str,
    keep_live: frozenset[str],
    diff: MappingDiff,
) -> None:
    for name, definition in wanted.items():
        path = prefix + name
        if name not in live:
            diff.additions.append(Change(path, "new field", None, definition))
        elif path not in keep_live:
            _field(path, normalised(definition), normalised(live[name]), keep_live, diff)
    for name in sorted(set(live) - set(wanted)):
        diff.conflicts.append(Change(prefix + name, "dropped field", live[name], None))


def _field(
    path: str, wanted: dict[str, Any], live: dict[str, Any], keep_live: frozenset[str], diff: MappingDiff
) -> None:
    if _type(wanted) != _type(live):
        diff.conflicts.append(Change(path, "type", _type(live), _type(wanted)))
        return
    chosen = SERVER_CHOSEN.get(_type(wanted), frozenset())
    for key in sorted((set(wanted) | set(live)) - {"type", "properties", "fields"}):
        old, new = live.get(key), wanted.get(key)
        if key in chosen and new is None:
            continue
        if key == "method" and isinstance(old, Mapping) and isinstance(new, Mapping):
            # a knn_vector's method comes back with the engine's default `parameters` added
            old = {k: v for k, v in old.items() if k in new or k != "parameters"}
        if old != new:
            target = diff.additions if key in IN_PLACE else diff.conflicts
            target.append(Change(path, key, old, new))
    if _type(wanted) in OBJECTS and wanted.get("dynamic") != "true":
        _properties(wanted.get("properties", {}), live.get("properties", {}), path + ".", keep_live, diff)
    elif _type(wanted) in OBJECTS:
        # an object that takes new keys: the index's sub-fields beyond the spec's are its data
        known = {k: v for k, v in live.get("properties", {}).items() if k in wanted.get("properties", {})}
        _properties(wanted.get("properties", {}), known, path + ".", keep_live, diff)
    wanted_fields, live_fields = wanted.get("fields", {}), live.get("fields", {})
    for name, sub in wanted_fields.items():
        if name not in live_fields:
            diff.additions.append(Change(f"{path}.{name}", "new multi-field", None, sub))
        else:
            _field(f"{path}.{name}", normalised(sub), normalised(live_fields[name]), keep_live, diff)
    for name in sorted(set(live_fields) - set(wanted_fields)):
        diff.conflicts.append(Change(f"{path}.{name}", "dropped field", live_fields[name], None))


def conflict_message(
    spec: str, index: str, conflicts: list[Change], sources: Mapping[str, str] | None = None
) -> str:
    """The one-screen error a conflicting mapping stops a sync with."""
    lines = [
        f"spec '{spec}': the mapping of index {index} conflicts with the spec's; nothing was written.",
        *(f"  {c.describe(sources)}" for c in conflicts),
        "Elasticsearch cannot change these in place. Run `sync-pipeline rebuild --spec "
        f"{spec}` (a new index filled from PostgreSQL, then the alias swaps: no downtime), or set "
        "`on_mapping_change: rebuild` in the spec to let the sync run it.",
    ]
    return "\n".join(lines)
