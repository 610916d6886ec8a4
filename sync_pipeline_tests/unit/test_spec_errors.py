"""Spec errors name the YAML line and the key path, and suggest the key meant (issue 31)."""

from __future__ import annotations

import pytest

from sync_pipeline.core.spec.errors import (
    DURATION_HINT,
    SECONDS_HINT,
    data_path,
    dotted,
    key_lines,
    known_keys,
)
from sync_pipeline.core.spec.model import SpecError, SpecFile, SyncSpec, _SpecLoader, parse_specs

# line numbers below are this text's, counted from 1 (the first line is "specs:")
VALID = """specs:
  - name: products
    source:
      table: shop.products
      primary_key: [id]
      updated_at: updated_at
      relations:
        - name: category
          kind: many_to_one
          table: shop.categories
          on: {category_id: id}
    target: {index: products}
    partitions:
      grain: day
      start: "2026-10-01"
      lookback: PT10M
    fields:
      name: {type: text}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_specs(text, origin="sync.yaml")
    header, *lines = str(caught.value).splitlines()
    assert header.startswith("sync.yaml: invalid sync spec")
    return lines


def test_the_valid_text_parses():
    (spec,) = parse_specs(VALID)
    assert spec.source.relations[0].name == "category"


def test_an_unknown_key_at_depth_gives_its_line_and_the_key_meant():
    assert problems(VALID.replace("primary_key: [id]", "primery_key: [id]")) == [
        "sync.yaml:3: specs[0].source.primary_key: required key missing (spec 'products')",
        "sync.yaml:5: specs[0].source.primery_key: unknown key; did you mean 'primary_key'? "
        "(spec 'products')",
    ]


def test_an_unknown_key_inside_a_list_item_names_the_item():
    (line,) = problems(VALID.replace("kind: many_to_one", "kind: many_to_one\n          colums: [id]"))
    assert line == (
        "sync.yaml:10: specs[0].source.relations[0].colums: unknown key; did you mean 'columns'? "
        "(spec 'products')"
    )


def test_an_unknown_key_in_a_flow_mapping_and_at_the_top():
    (line,) = problems(VALID.replace("target: {index: products}", "target: {index: products, indx: x}"))
    assert line == "sync.yaml:12: specs[0].target.indx: unknown key; did you mean 'index'? (spec 'products')"
    assert sorted(problems(VALID.replace("specs:", "spec:", 1))) == [
        "sync.yaml:1: spec: unknown key; did you mean 'specs'?",
        "sync.yaml:1: specs: required key missing",
    ]


def test_an_unknown_key_with_nothing_close_lists_the_keys_known_there():
    (line,) = problems(VALID.replace("grain: day", "grain: day\n      zzz: 1"))
    assert line.startswith("sync.yaml:15: specs[0].partitions.zzz: unknown key (known: grain, lookback,")


def test_a_wrong_type_gives_the_line_of_its_key():
    (line,) = problems(VALID.replace("table: shop.products", "table: [shop, products]"))
    assert line == "sync.yaml:4: specs[0].source.table: Input should be a valid string (spec 'products')"


def test_a_missing_section_gives_the_line_of_the_spec_that_lacks_it():
    (line,) = problems(VALID.replace("    target: {index: products}\n", ""))
    assert line == "sync.yaml:2: specs[0].target: required key missing (spec 'products')"


def test_an_unreadable_duration_hints_at_the_iso_spelling():
    (line,) = problems(VALID.replace("lookback: PT10M", "lookback: 10 minutes"))
    assert line.startswith("sync.yaml:16: specs[0].partitions.lookback: Input should be a valid timedelta")
    assert line.endswith(f"; {DURATION_HINT} (spec 'products')")
    assert "use an ISO 8601 duration like PT10M" in DURATION_HINT


def test_a_duration_written_into_a_seconds_key_asks_for_the_number():
    text = VALID.replace("    fields:\n", "    buffer_sensor: {max_wait_seconds: PT10M}\n    fields:\n")
    (line,) = problems(text)
    assert line == (
        "sync.yaml:17: specs[0].buffer_sensor.max_wait_seconds: Input should be a valid number, unable to "
        f"parse string as a number; {SECONDS_HINT} (spec 'products')"
    )


def test_a_misspelled_choice_suggests_the_one_meant():
    (line,) = problems(VALID.replace("grain: day", "grain: dya"))
    assert line.startswith("sync.yaml:14: specs[0].partitions.grain: Input should be 'hour', 'day'")
    assert "did you mean 'day'?" in line


def test_a_validators_message_loses_pydantics_prefix():
    (line,) = problems(VALID.replace("lookback: PT10M", "lookback: -PT1M"))
    assert line == "sync.yaml:16: specs[0].partitions.lookback: must not be negative (spec 'products')"


def test_the_second_spec_is_named_by_its_index_and_name():
    second = VALID.replace("  - name: products", "  - name: orders", 1).replace("specs:\n", "", 1)
    (line,) = problems(VALID + second.replace("updated_at: updated_at", "updated_at: 3"))
    assert line == "sync.yaml:23: specs[1].source.updated_at: Input should be a valid string (spec 'orders')"


def test_key_lines_maps_paths_to_their_lines():
    lines = key_lines(VALID, _SpecLoader)
    assert lines[()] == 1
    assert lines[("specs", 0)] == 2
    assert lines[("specs", 0, "source", "relations", 0, "on", "category_id")] == 11
    assert lines[("specs", 0, "fields", "name", "type")] == 18
    assert key_lines("specs: [", _SpecLoader) == {}


def test_pydantic_tags_are_dropped_from_the_path_and_a_missing_last_key_is_kept():
    raw = {"specs": [{"source": {"table": "t"}}]}
    assert data_path(raw, ("specs", 0, "function-after[_x(), SourceSpec]", "source", "primary_key")) == (
        "specs",
        0,
        "source",
        "primary_key",
    )
    assert dotted(("specs", 0, "source", "relations", 2, "on")) == "specs[0].source.relations[2].on"
    assert dotted(()) == "(top level)"


def test_known_keys_walk_the_models_through_lists_dicts_and_optionals():
    assert "primary_key" in known_keys(SpecFile, ("specs", 0, "source"))
    assert "through" in known_keys(SpecFile, ("specs", 0, "source", "relations", 0))
    assert "cleanse" in known_keys(SyncSpec, ("fields", "anything"))
    assert known_keys(SpecFile, ()) == ["capture", "specs"]


# --- relations named in `fields` (checked without the database) --------------------------------

WITH_RELATIONS = VALID.replace(
    "          on: {category_id: id}\n",
    "          on: {category_id: id}\n"
    "          columns: [name, slug]\n"
    "          relations:\n"
    "            - {name: parent, kind: many_to_one, table: shop.categories, on: {id: parent_id}}\n",
)


def test_a_field_naming_no_relation_is_refused_on_its_own_line_with_the_key_meant():
    text = WITH_RELATIONS.replace("      name: {type: text}\n", "      categry.name: {}\n")
    line = text.splitlines().index("      categry.name: {}") + 1
    assert problems(text) == [
        f"sync.yaml:{line}: specs[0].fields.categry.name: 'categry' is no relation of the source "
        "(relations: category, category.parent); did you mean 'category.name'? (spec 'products')"
    ]


def test_a_field_naming_a_column_its_relation_does_not_read_is_refused():
    text = WITH_RELATIONS.replace(
        "      name: {type: text}\n", "      category.nme: {}\n      category.id: {}\n"
    )
    found = problems(text)
    assert len(found) == 2
    assert "fields.category.nme: relation 'category' reads no column 'nme' (its columns: " in found[0]
    assert found[0].endswith("did you mean 'category.name'? (spec 'products')")
    assert "fields.category.id: relation 'category' reads no column 'id'" in found[1]


def test_fields_of_existing_relations_at_any_depth_pass_and_columns_are_left_to_the_database():
    text = WITH_RELATIONS.replace(
        "      name: {type: text}\n",
        "      category.slug: {type: keyword}\n"
        "      category.parent.anything: {type: keyword}\n"
        "      plain: {}\n",
    )
    spec = parse_specs(text, origin="sync.yaml")[0]
    # the nested relation reads every column: only the database can tell whether `anything` is one
    assert set(spec.fields) == {"category.slug", "category.parent.anything", "plain"}


def test_a_field_path_is_not_judged_when_the_source_itself_is_invalid():
    text = WITH_RELATIONS.replace("      updated_at: updated_at\n", "").replace(
        "      name: {type: text}\n", "      ghost.name: {}\n"
    )
    assert [p.split(": ", 2)[1] for p in problems(text)] == ["specs[0].source.updated_at"]
