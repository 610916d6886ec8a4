"""Mapping control in the spec and mapping drift classification: pure functions, no servers."""

from __future__ import annotations

import pytest

from sync_pipeline.core.documents.build import build_plan
from sync_pipeline.core.documents.index_mapping import index_mapping, index_settings, inferred_from_values
from sync_pipeline.core.mapping.diff import conflict_message, diff_mappings, normalised
from sync_pipeline.core.mapping.fields import merge_fragment
from sync_pipeline.core.spec.model import SpecError, parse_specs
from sync_pipeline.core.sql.columns import ColumnInfo
from sync_pipeline.core.sql.relations import RelationPlan, TableInfo, plan_relation

BASE = """
specs:
  - name: shop
    source: {{table: shop, primary_key: id, updated_at: updated_at{relations}}}
    target: {{index: shop{target}}}
    partitions: {{start: "2026-01-01"}}
    fields:
{fields}
"""
COLUMNS = [
    ColumnInfo("id", "int8"),
    ColumnInfo("name", "text"),
    ColumnInfo("price", "int4"),
    ColumnInfo("attrs", "jsonb"),
    ColumnInfo("updated_at", "timestamptz"),
]


def spec_of(fields: str = "      name: {}", target: str = "", relations: str = ""):
    return parse_specs(BASE.format(fields=fields, target=target, relations=relations), origin="t.yaml")[0]


def error_of(**parts: str) -> str:
    with pytest.raises(SpecError) as caught:
        spec_of(**parts)
    return str(caught.value)


def test_an_unknown_mapping_parameter_is_refused_with_its_location_and_a_suggestion():
    message = error_of(fields="      name: {mapping: {analyser: standard}}")
    assert (
        "t.yaml:8: specs[0].fields.name.mapping: mapping.analyser" in message and "(spec 'shop')" in message
    )
    assert "mapping.analyser: unknown mapping parameter (did you mean 'analyzer'?)" in message


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("{type: keyword}", "set the type with `type:` beside `mapping:`"),
        ("{fields: {raw: {normalizer: lowercase}}}", "mapping.fields.raw: needs at least a `type`"),
        ("{index: 'no'}", "mapping.index: must be true or false, not 'no'"),
        ("{ignore_above: -1}", "mapping.ignore_above: must be a length"),
        ("{copy_to: []}", "mapping.copy_to: must be a field name or a list of them"),
        ("{fields: {raw: {type: keyword, analyser: x}}}", "mapping.fields.raw.analyser: unknown"),
    ],
)
def test_a_malformed_mapping_fragment_names_the_parameter(fragment, expected):
    assert expected in error_of(fields=f"      name: {{mapping: {fragment}}}")


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ("{number_of_shards: 2}", "number_of_shards: set it as target.shards"),
        ("{index.number_of_replicas: 1}", "set it as target.replicas"),
        ("{refresh_interval: soon}", "refresh_interval: must be a time such as '1s'"),
        ("{analysis: {analyzers: {}}}", "analysis.analyzers: unknown; accepted: analyzer"),
        ("{analysis: {analyzer: {a: standard}}}", "analysis.analyzer: must map names to definitions"),
    ],
)
def test_index_settings_that_conflict_or_are_malformed_are_refused(settings, expected):
    message = error_of(target=f", settings: {settings}")
    assert "target.settings" in message and expected in message


def test_a_dropped_column_cannot_carry_a_mapping():
    assert "a dropped column has no field" in error_of(
        fields="      name: {drop: true, mapping: {index: false}}"
    )


def test_dynamic_defaults_to_strict_and_reads_yaml_booleans():
    assert spec_of().target.dynamic == "strict"
    assert spec_of(target=", dynamic: false").target.dynamic == "false"
    assert spec_of(target=", dynamic: true").target.dynamic == "true"
    assert "target.dynamic" in error_of(target=", dynamic: maybe")


def test_a_fragment_merges_over_the_inferred_mapping_and_null_removes():
    inferred = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
    merged = merge_fragment(inferred, {"analyzer": "simple", "fields": {"sort": {"type": "keyword"}}})
    assert merged == {
        "type": "text",
        "analyzer": "simple",
        "fields": {"keyword": {"type": "keyword", "ignore_above": 256}, "sort": {"type": "keyword"}},
    }
    assert merge_fragment(inferred, {"fields": {"keyword": None}}) == {"type": "text"}
    assert merge_fragment(inferred, {"fields": {"keyword": {"ignore_above": 64}}})["fields"] == {
        "keyword": {"type": "keyword", "ignore_above": 64}
    }


def test_the_index_mapping_is_strict_without_date_guessing_and_json_objects_take_new_keys():
    spec = spec_of(fields="      name: {mapping: {analyzer: simple, fields: {sort: {type: keyword}}}}")
    mapping = index_mapping(build_plan(spec, COLUMNS))
    assert mapping["dynamic"] == "strict" and mapping["date_detection"] is False
    assert mapping["properties"]["name"] == {
        "type": "text",
        "analyzer": "simple",
        "fields": {"keyword": {"type": "keyword", "ignore_above": 256}, "sort": {"type": "keyword"}},
    }
    assert mapping["properties"]["attrs"] == {"type": "object", "dynamic": "true"}
    assert mapping["properties"]["price"] == {"type": "integer"}


def test_a_json_column_typed_by_the_spec_is_compared_and_an_untyped_one_is_left_to_its_sample():
    untyped = build_plan(spec_of(), COLUMNS)
    assert inferred_from_values(untyped) == {"attrs"}
    typed = build_plan(spec_of(fields="      attrs: {type: flattened}"), COLUMNS)
    assert inferred_from_values(typed) == frozenset()


def test_a_relation_field_takes_its_dotted_rule():
    relations = ", relations: [{name: maker, table: makers, kind: many_to_one, on: {id: maker_id}}]"
    spec = spec_of(fields="      maker.label: {mapping: {analyzer: simple}}", relations=relations)
    makers = TableInfo("makers", (ColumnInfo("id", "int8"), ColumnInfo("label", "text")), ("id",))
    plan: RelationPlan = plan_relation(spec, spec.source.relations[0], {"makers": makers}, "maker")
    columns = [*COLUMNS, ColumnInfo("maker_id", "int8"), ColumnInfo("maker", "jsonb")]
    document_plan = build_plan(spec, columns, [plan])
    mapping = index_mapping(document_plan)
    assert mapping["properties"]["maker"]["properties"]["label"]["analyzer"] == "simple"
    # a relation travels as a JSON column, but its mapping is the spec's, always compared
    assert inferred_from_values(document_plan) == {"attrs"}


def test_index_settings_carry_the_spec_settings_beside_shards_and_replicas():
    spec = spec_of(target=", shards: 2, settings: {refresh_interval: 5s, analysis: {analyzer: {}}}")
    assert index_settings(spec) == {
        "refresh_interval": "5s",
        "analysis": {"analyzer": {}},
        "number_of_shards": 2,
        "number_of_replicas": 0,
    }


WANTED = {
    "dynamic": "strict",
    "date_detection": False,
    "properties": {
        "name": {"type": "text", "analyzer": "simple", "copy_to": "all", "index": True},
        "price": {"type": "integer"},
        "maker": {"properties": {"label": {"type": "keyword"}}},
        "reviews": {"type": "nested", "properties": {"body": {"type": "text"}}},
        "attrs": {"type": "object", "dynamic": "true"},
    },
}
# what Elasticsearch reports for WANTED: defaults left out, copy_to as a list
LIVE = {
    "dynamic": "strict",
    "date_detection": False,
    "properties": {
        "name": {"type": "text", "analyzer": "simple", "copy_to": ["all"]},
        "price": {"type": "integer"},
        "maker": {"properties": {"label": {"type": "keyword"}}},
        "reviews": {"type": "nested", "properties": {"body": {"type": "text"}}},
        "attrs": {"type": "object", "dynamic": "true", "properties": {"color": {"type": "text"}}},
    },
}


def live_with(**properties) -> dict:
    return {**LIVE, "properties": {**LIVE["properties"], **properties}}


def test_a_mapping_as_elasticsearch_reports_it_back_matches_the_spec():
    assert diff_mappings(WANTED, LIVE).same
    assert normalised({"type": "object", "dynamic": True, "doc_values": True}) == {"dynamic": "true"}


@pytest.mark.parametrize(
    ("live", "path", "what"),
    [
        (live_with(price={"type": "long"}), "price", "type"),
        (live_with(name={"type": "text", "analyzer": "standard", "copy_to": ["all"]}), "name", "analyzer"),
        (live_with(reviews={"properties": {"body": {"type": "text"}}}), "reviews", "type"),
        (live_with(gone={"type": "keyword"}), "gone", "dropped field"),
        (
            live_with(maker={"properties": {"label": {"type": "keyword"}, "old": {"type": "long"}}}),
            "maker.old",
            "dropped field",
        ),
        (live_with(name={"type": "text", "analyzer": "simple"}), "name", "copy_to"),
    ],
)
def test_changes_elasticsearch_cannot_make_in_place_are_conflicts(live, path, what):
    diff = diff_mappings(WANTED, live)
    assert [(c.path, c.what) for c in diff.conflicts] == [(path, what)]


def test_new_fields_multi_fields_and_updatable_parameters_are_applied_in_place():
    wanted = {
        **WANTED,
        "properties": {
            **WANTED["properties"],
            "name": {
                **WANTED["properties"]["name"],
                "search_analyzer": "standard",
                "fields": {"raw": {"type": "keyword"}},
            },
            "stock": {"type": "integer"},
        },
    }
    old_index = {**LIVE, "dynamic": "true", "date_detection": None}
    diff = diff_mappings(wanted, old_index)
    assert not diff.conflicts
    assert {(c.path, c.what) for c in diff.additions} == {
        ("(index)", "dynamic"),
        ("(index)", "date_detection"),
        ("name", "search_analyzer"),
        ("name.raw", "new multi-field"),
        ("stock", "new field"),
    }
    assert diff.touched == ["name", "stock"]


def test_a_field_mapped_from_sampled_values_keeps_the_index_definition():
    assert diff_mappings(WANTED, live_with(attrs={"type": "text"}), keep_live=frozenset({"attrs"})).same
    assert not diff_mappings(WANTED, live_with(attrs={"type": "text"})).same


def test_the_conflict_message_names_the_field_both_definitions_and_the_command():
    diff = diff_mappings(WANTED, live_with(price={"type": "long"}))
    message = conflict_message(
        "shop", "shop_v1 (alias shop)", diff.conflicts, {"price": "column price is int4"}
    )
    assert "spec 'shop': the mapping of index shop_v1 (alias shop) conflicts" in message
    assert "price: type long → integer (column price is int4)" in message
    assert "nothing was written" in message
    assert "sync-pipeline rebuild --spec shop" in message and "on_mapping_change: rebuild" in message
