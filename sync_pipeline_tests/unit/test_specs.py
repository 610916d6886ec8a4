from pathlib import Path

import pytest

from sync_pipeline.core.spec.model import SpecError, load_specs, parse_specs

VALID = """
specs:
  - name: products
    source:
      table: shop.products
      primary_key: [id]
      updated_at: updated_at
      soft_delete: deleted_at
    target: {index: products}
    partitions: {grain: day, start: "2026-10-01"}
    fields:
      name: {cleanse: [trim, empty_to_null]}
      category_name: {rename: category, type: keyword}
      secret: {drop: true}
"""


def test_valid_spec_parses_with_defaults():
    (spec,) = parse_specs(VALID)
    assert spec.source.schema_and_table == ("shop", "products")
    assert spec.source.primary_key == ["id"]
    assert spec.batch_size == 5000
    assert spec.partitions.start.tzinfo is not None
    assert spec.field_name("category_name") == "category"
    assert spec.field_name("unmapped") == "unmapped"
    assert spec.key_fields == ["id"]


def test_single_primary_key_string_becomes_a_list():
    (spec,) = parse_specs(VALID.replace("primary_key: [id]", "primary_key: id"))
    assert spec.source.primary_key == ["id"]


def test_missing_primary_key_names_file_spec_and_field():
    with pytest.raises(SpecError) as err:
        parse_specs(VALID.replace("      primary_key: [id]\n", ""), origin="sync.yaml")
    message = str(err.value)
    assert "sync.yaml" in message
    assert "spec 'products'" in message
    assert "source.primary_key" in message


def test_table_and_query_are_mutually_exclusive():
    both = VALID.replace("table: shop.products", "table: shop.products\n      query: SELECT 1")
    with pytest.raises(SpecError, match="exactly one of 'table' or 'query'"):
        parse_specs(both)


def test_query_must_be_a_single_select():
    bad = VALID.replace("table: shop.products", "query: DELETE FROM products")
    with pytest.raises(SpecError, match="SELECT"):
        parse_specs(bad)
    stacked = VALID.replace("table: shop.products", "query: SELECT 1; DROP TABLE products")
    with pytest.raises(SpecError, match="single statement"):
        parse_specs(stacked)


def test_invalid_yaml_reports_line():
    with pytest.raises(SpecError, match=r"sync.yaml: line 3, column \d+ is not valid YAML"):
        parse_specs("specs:\n  - name: x\n\tsource: tab\n", origin="sync.yaml")


def test_unknown_keys_are_rejected_not_ignored():
    with pytest.raises(
        SpecError, match=r"specs\[0\]\.target\.idx: unknown key; did you mean 'index'\? \(spec 'products'\)"
    ):
        parse_specs(VALID.replace("target: {index: products}", "target: {index: products, idx: x}"))


def test_key_column_cannot_be_dropped():
    with pytest.raises(SpecError, match="cannot be dropped"):
        parse_specs(VALID.replace("secret: {drop: true}", "id: {drop: true}"))


def test_two_columns_cannot_map_to_one_field():
    with pytest.raises(SpecError, match="same field"):
        parse_specs(VALID.replace("secret: {drop: true}", "other: {rename: category}"))


def test_bad_index_and_spec_names():
    with pytest.raises(SpecError, match="index"):
        parse_specs(VALID.replace("{index: products}", "{index: Products}"))
    with pytest.raises(SpecError, match="name"):
        parse_specs(VALID.replace("name: products", "name: Bad-Name"))


def test_duplicate_spec_names_rejected():
    body = VALID.split("specs:\n", 1)[1]
    with pytest.raises(SpecError, match="unique"):
        parse_specs("specs:\n" + body + body)


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(SpecError, match="not found"):
        load_specs(tmp_path / "nope.yaml")


def test_repository_sync_yaml_is_valid():
    specs = load_specs(Path(__file__).resolve().parents[2] / "sync.yaml")
    assert [s.name for s in specs] == ["products"]


def test_a_misspelled_field_type_is_refused_at_load_with_a_suggestion():
    with pytest.raises(SpecError) as err:
        parse_specs(VALID.replace("type: keyword", "type: keywrd"), origin="sync.yaml")
    message = str(err.value)
    assert "spec 'products'" in message and "category_name" in message
    assert "unknown field type 'keywrd' (did you mean 'keyword'?)" in message


@pytest.mark.parametrize("kind", ["flat_object", "knn_vector", "annotated_text", "my_plugins_own_type"])
def test_a_known_or_plugin_field_type_is_taken_as_written(kind):
    (spec,) = parse_specs(VALID.replace("type: keyword", f"type: {kind}"))
    assert spec.fields["category_name"].type == kind


def test_range_rows_defaults_to_a_million_and_must_be_positive():
    (spec,) = parse_specs(VALID)
    assert spec.partitions.range_rows == 1_000_000
    ranged = VALID.replace('start: "2026-10-01"}', 'start: "2026-10-01", range_rows: 250000}')
    assert parse_specs(ranged)[0].partitions.range_rows == 250_000
    with pytest.raises(SpecError, match=r"partitions\.range_rows"):
        parse_specs(VALID.replace('start: "2026-10-01"}', 'start: "2026-10-01", range_rows: 0}'))
