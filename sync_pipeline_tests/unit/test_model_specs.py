"""Specs from SQLAlchemy models (`source.model`, io/models.py): derived, overridable, and refused
with errors naming the model and the key (synced on the real servers: integration/)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sync_pipeline.core.spec.model import SpecError, load_specs
from sync_pipeline.core.spec.model import parse_specs as parse_plain
from sync_pipeline.io.models import parse_specs, spec_from_model
from sync_pipeline_tests.support import model_shop
from sync_pipeline_tests.support.model_specs import EXAMPLE, LINES, lines_yaml
from sync_pipeline_tests.support.paths import ROOT

# --- derivation, offline ---------------------------------------------------------------------------


def test_a_model_gives_table_composite_key_onupdate_column_and_joins_at_depth():
    (spec,) = parse_specs(lines_yaml("[category.department, labels]"), "test")
    source = spec.source
    assert (source.model, source.table) == (LINES, "shop_x.order_lines")
    assert (source.primary_key, source.updated_at) == (["order_id", "line_no"], "changed")
    category, labels = source.relations
    assert (category.name, category.kind, category.table, category.on) == (
        "category",
        "many_to_one",
        "shop_x.categories",
        {"id": "category_id"},
    )
    (department,) = category.relations  # `category.department` alone brings its parent along
    assert (department.kind, department.table, department.on) == (
        "many_to_one",
        "shop_x.departments",
        {"id": "department_id"},
    )
    assert labels.kind == "many_to_many" and labels.through is not None
    assert labels.through.model_dump() == {
        "table": "shop_x.line_labels",
        "on": {"order_id": "order_id", "line_no": "line_no"},
        "to": {"label_id": "id"},
    }


def test_the_spec_overrides_what_the_model_says():
    text = lines_yaml(
        "[{name: labels, columns: [text], nested: true}, category]",
        extra="      updated_at: created_at\n      soft_delete: quantity\n",
    )
    (spec,) = parse_specs(text, "test")
    assert spec.source.updated_at == "created_at" and spec.source.soft_delete == "quantity"
    labels, category = spec.source.relations
    assert (labels.columns, labels.nested, labels.kind) == (["text"], True, "many_to_many")
    assert category.columns is None  # a name alone: every column, as in the YAML form


@pytest.mark.parametrize(
    ("model", "relations", "expected"),
    [
        (
            LINES,
            "[category, labls]",
            "test:6: specs[0].source.relations[1]: 'labls' is no relationship() of "
            f"{LINES} (its relationships: category, labels, pinned_notes); did you mean 'labels'? "
            "(spec 'lines')",
        ),
        (
            LINES,
            "[category.departmnt]",
            "specs[0].source.relations[0]: 'departmnt' is no relationship() of category (its "
            "relationships: department); did you mean 'department'?",
        ),
        (
            "sync_pipeline_tests.no_such_module:Thing",
            "[]",
            "test:4: specs[0].source.model: cannot import 'sync_pipeline_tests.no_such_module'",
        ),
        (
            "sync_pipeline_tests.support.model_shop:OrderLines",
            "[]",
            "specs[0].source.model: module 'sync_pipeline_tests.support.model_shop' has no 'OrderLines'; "
            "did you mean 'OrderLine'?",
        ),
        (
            "sync_pipeline_tests.support.model_shop:NotMapped",
            "[]",
            "'sync_pipeline_tests.support.model_shop:NotMapped' is not a SQLAlchemy mapped class",
        ),
        ("sync_pipeline_tests.support.model_shop", "[]", "must be 'module:Class'"),
        (
            LINES,
            "[pinned_notes]",
            "specs[0].source.relations[0]: relationship 'pinned_notes' joins on more than equal "
            "columns (notes.pinned IS true): write the relation out in full (table, kind, on) or use "
            "a `query` source",
        ),
        (
            "sync_pipeline_tests.support.model_shop:Unstamped",
            "[]",
            "specs[0].source.updated_at: required: no column of "
            "sync_pipeline_tests.support.model_shop:Unstamped "
            "has onupdate, so name the column that moves on every write",
        ),
    ],
)
def test_a_model_the_loader_cannot_use_is_a_spec_error_naming_spec_and_key(model, relations, expected):
    with pytest.raises(SpecError) as raised:
        parse_specs(lines_yaml(relations, model=model), "test")
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    ("model", "options", "expected"),
    [
        (
            model_shop.OrderLine,
            {"relations": ["category", "labls"]},
            f"{LINES}: source.relations[1]: 'labls' is no relationship() of {LINES} (its relationships: "
            "category, labels, pinned_notes); did you mean 'labels'?",
        ),
        (
            model_shop.NotMapped,
            {},
            "source.model: 'sync_pipeline_tests.support.model_shop:NotMapped' is not a SQLAlchemy",
        ),
        (model_shop.OrderLine, {}, f"{LINES}: partitions: required key missing"),
    ],
)
def test_spec_from_model_errors_name_the_model_and_the_key(model, options, expected):
    with pytest.raises(SpecError) as raised:
        spec_from_model(model, **options)
    assert expected in str(raised.value)


def test_a_model_reference_needs_the_model_loader():
    with pytest.raises(SpecError) as raised:
        parse_plain(lines_yaml("[]"), "test")
    assert f"specs[0].source: model '{LINES}' was not resolved: load the file with" in str(raised.value)


def test_the_example_spec_derives_the_demo_spec_written_by_hand():
    (derived,) = parse_specs((EXAMPLE / "sync.yaml").read_text(), "sync.yaml", base=EXAMPLE)
    (by_hand,) = load_specs(ROOT / "sync.yaml")
    assert derived.source.model_dump(exclude={"model"}) == by_hand.source.model_dump(exclude={"model"})
    assert derived.fields == by_hand.fields and derived.target == by_hand.target


def test_validate_offline_imports_the_models_from_beside_the_spec_file():
    # a fresh process, only the repository on sys.path: `shop` is found beside the spec file
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sync_pipeline.apps.cli",
            "validate",
            "--offline",
            "--config",
            str(EXAMPLE / "sync.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("specs: 1 valid (products)\n")
