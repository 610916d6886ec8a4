"""The mapping and settings a spec's index is created with (and compared against).

Every field the documents carry is mapped explicitly, from its column's type, then the
spec's `fields.<column>.mapping` fragment is merged over it. The root refuses fields
nobody mapped (`target.dynamic`, strict by default) and never guesses dates: a text
column whose first value looks like one would otherwise become a `date` field and send
the rows after it to dead letters. JSON columns are the exception by nature — their keys
are data — so their objects take new keys (`dynamic: true`) unless the spec says otherwise.
"""

from __future__ import annotations

from typing import Any

from sync_pipeline.core.documents.build import DocumentPlan, FieldPlan
from sync_pipeline.core.mapping.fields import Fragment, merge_fragment
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.relations import NestedField, RelationPlan

JSON_TYPES = ("json", "jsonb")
KEYWORD_TWIN = {"keyword": {"type": "keyword", "ignore_above": 256}}


def _typed(es_type: str, info_is_json: bool) -> Fragment:
    prop: Fragment = {"type": es_type}
    if es_type == "text":
        # sortable/aggregatable twin, as Elasticsearch's own dynamic mapping would add
        prop["fields"] = dict(KEYWORD_TWIN)
    if info_is_json and es_type == "object":
        prop["dynamic"] = "true"
    return prop


def _root_field(f: FieldPlan, plan: DocumentPlan) -> Fragment:
    if not f.indexed:
        # kept in _source as it is, searchable by nothing: the one mapping every value fits
        return {"type": "object", "enabled": False}
    prop = _typed(f.es_type, f.column_info.pg_type in JSON_TYPES)
    if f.numeric == "scaled_long" and f.es_type == "long":
        # a value with digits below 10^-N, or beyond a long, arrives as a string (_scaled):
        # refused and dead-lettered, where coercion would truncate it without a word
        prop["coerce"] = False
    if (
        f.es_type == "date"
        and f.column_info.pg_type in ("timestamp", "timestamptz")
        and f.column in plan.key_columns
    ):
        # verify merges by key: nanosecond sort values keep microsecond keys apart
        prop["type"] = "date_nanos"
    if f.es_type == "date" and f.column_info.pg_type == "date":
        prop["format"] = "strict_date"
    rule = plan.spec.fields.get(f.column)
    if rule is not None and rule.type == "dense_vector":
        # index: true spelled out — kNN search needs the HNSW graph, whatever a version defaults to
        prop.update(dims=rule.dims, similarity=rule.similarity, index=True)
    return merge_fragment(prop, rule.mapping if rule else None)


def _nested_field(f: NestedField, path: str, spec: SyncSpec) -> Fragment:
    rule = spec.fields.get(f"{path}.{f.column.name}")
    return merge_fragment(_typed(f.es_type, f.column.pg_type in JSON_TYPES), rule.mapping if rule else None)


def relation_mapping(plan: RelationPlan, spec: SyncSpec) -> Fragment:
    """The mapping of a relation's field: an object (or `nested`) with its columns, each with
    its dotted `fields.<relation>.<column>` rule applied."""
    properties = {f.name: _nested_field(f, plan.path, spec) for f in plan.fields}
    for child in plan.children:
        properties[child.spec.name] = relation_mapping(child, spec)
    mapping: Fragment = {"properties": properties}
    if plan.spec.nested:
        mapping["type"] = "nested"
    return mapping


def index_mapping(plan: DocumentPlan) -> dict[str, Any]:
    """The explicit mapping of every field the plan's documents carry."""
    relations = {r.spec.name: r for r in plan.relations}
    properties = {
        f.name: relation_mapping(relations[f.column], plan.spec)
        if f.column in relations
        else _root_field(f, plan)
        for f in plan.fields
    }
    return {"dynamic": plan.spec.target.dynamic, "date_detection": False, "properties": properties}


def inferred_from_values(plan: DocumentPlan) -> frozenset[str]:
    """Fields whose mapping comes from a sample of JSON values rather than from the spec (JSON
    columns the spec does not type): a comparison keeps the index's own for those."""
    relations = {r.spec.name for r in plan.relations}
    return frozenset(
        f.name
        for f in plan.fields
        if f.column_info.pg_type in JSON_TYPES
        and f.column not in relations  # a relation travels as JSON, but its mapping is the spec's
        and not ((rule := plan.spec.fields.get(f.column)) and (rule.type or rule.mapping))
    )


def index_settings(spec: SyncSpec) -> dict[str, Any]:
    own = {k.removeprefix("index."): v for k, v in spec.target.settings.items()}
    return {**own, "number_of_shards": spec.target.shards, "number_of_replicas": spec.target.replicas}
