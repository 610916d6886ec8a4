"""Values that used to drift silently (json text, wide numerics, JSON scalars), the replica count a
load leaves behind, and keys verify cannot merge on. Integration tests use the real servers."""

import pytest

from sync_pipeline.apps.cli.runner import run_sync, run_verify
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.core.sql.statements import SourceError
from sync_pipeline_tests.conftest import indexed

WHEN = "2026-02-10 08:00:00+00"


def _with_fields(scenario, *lines: str):
    """The scenario's spec with more `fields:` entries (the block ends the spec text)."""
    text = scenario.spec_text() + "".join(f"      {line}\n" for line in lines)
    return parse_specs(text, origin="test")[0]


def _field_mapping(es, index: str) -> dict:
    return next(iter(es.indices.get_mapping(index=index).body.values()))["mappings"]["properties"]


def test_json_text_with_newlines_syncs_and_verifies(scenario, insert_rows, es):
    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN raw json")
    insert_rows(range(1, 4), WHEN)
    scenario.execute(
        f"""UPDATE {scenario.table} SET raw = CAST(:raw AS json) WHERE id < 3""",
        {"raw": '{\n  "a": "line\\nbreak",\n  "b": [1,\n 2],\n  "b": 3\n}'},
    )
    spec = scenario.spec()

    summary = run_sync(spec)

    assert summary.success, summary.error
    assert (summary.indexed, summary.dead_lettered) == (3, 0)
    docs = indexed(es, scenario.index)
    assert docs["1"]["raw"] == {"a": "line\nbreak", "b": 3}  # jsonb keeps the last duplicate key
    assert docs["3"]["raw"] is None
    (report,) = run_verify([spec], [spec])
    assert report.ok, report.lines()


def test_wide_numerics_reach_elasticsearch_exactly(scenario, insert_rows, es):
    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN amount numeric, ADD COLUMN wei numeric(78, 0)")
    insert_rows([1, 2], WHEN)
    scenario.execute(
        f"UPDATE {scenario.table} SET amount = 12345678901234567.89, "
        "wei = 123456789012345678901234567890 WHERE id = 1"
    )
    spec = scenario.spec()

    assert run_sync(spec).success

    docs = indexed(es, scenario.index)
    assert docs["1"]["amount"] == "12345678901234567.89"
    assert docs["1"]["wei"] == "123456789012345678901234567890"
    assert docs["1"]["price"] == 19.9  # numeric(10, 2) still fits a double
    mapping = _field_mapping(es, scenario.index)
    assert mapping["amount"]["type"] == "keyword" and mapping["price"]["type"] == "double"
    (report,) = run_verify([spec], [spec])
    assert report.ok, report.lines()


def test_scaled_long_lands_exact_values_and_dead_letters_the_rest(scenario, insert_rows, es):
    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN amount numeric")
    insert_rows([1, 2], WHEN)
    scenario.execute(f"UPDATE {scenario.table} SET amount = 12345678901234567.89 WHERE id = 1")
    scenario.execute(f"UPDATE {scenario.table} SET amount = 0.125 WHERE id = 2")
    spec = _with_fields(scenario, "amount: {numeric: scaled_long(2)}")

    summary = run_sync(spec)

    assert (summary.indexed, summary.dead_lettered) == (1, 1)
    assert indexed(es, scenario.index)["1"]["amount"] == 1234567890123456789
    assert _field_mapping(es, scenario.index)["amount"]["type"] == "long"


def test_verify_sees_a_double_that_lost_digits(scenario, insert_rows, es):
    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN amount numeric")
    insert_rows([1, 2], WHEN)
    scenario.execute(f"UPDATE {scenario.table} SET amount = 12345678901234567.89 WHERE id = 1")
    scenario.execute(f"UPDATE {scenario.table} SET amount = 0.1 WHERE id = 2")
    spec = _with_fields(scenario, "amount: {numeric: double}")
    assert run_sync(spec).success

    (report,) = run_verify([spec], [spec])

    assert report.mismatched == 1, report.lines()
    assert [(m.doc_id, m.fields) for m in report.mismatches] == [("1", ["amount"])]


def test_json_scalars_and_arrays_of_scalars_are_not_dead_lettered(scenario, insert_rows, es):
    scenario.execute(
        f"ALTER TABLE {scenario.table} ADD COLUMN nums jsonb, ADD COLUMN label json, ADD COLUMN mixed jsonb"
    )
    insert_rows(range(1, 5), WHEN)
    values = [("[1, 2.5]", '"red"', '{"a": 1}'), ("[]", "5", "[1, 2]"), ("3", "true", '"x"'), (None,) * 3]
    for i, (nums, label, mixed) in enumerate(values, 1):
        scenario.execute(
            f"UPDATE {scenario.table} SET nums = CAST(:n AS jsonb), label = CAST(:l AS json), "
            "mixed = CAST(:m AS jsonb) WHERE id = :id",
            {"n": nums, "l": label, "m": mixed, "id": i},
        )
    spec = scenario.spec()

    summary = run_sync(spec)

    assert (summary.indexed, summary.dead_lettered) == (4, 0), summary
    mapping = _field_mapping(es, scenario.index)
    assert mapping["nums"]["type"] == "double" and mapping["label"]["type"] == "text"
    assert mapping["mixed"] == {"type": "object", "enabled": False}
    assert mapping["payload"]["properties"]  # objects stay objects
    docs = indexed(es, scenario.index)
    assert (docs["1"]["nums"], docs["2"]["label"], docs["3"]["mixed"]) == ([1, 2.5], 5, "x")
    (report,) = run_verify([spec], [spec])
    assert report.ok, report.lines()


# --- 6: a load leaves the replica count as it found it --------------------------------------------


def test_a_large_load_restores_the_replicas_an_operator_set(scenario, insert_rows, es):
    insert_rows([1], WHEN)
    spec = scenario.spec(batch_size="10")
    assert run_sync(spec).success  # creates the index with the spec's 0 replicas
    es.indices.put_settings(index=scenario.index, settings={"index": {"number_of_replicas": 1}})
    insert_rows(range(2, 36), WHEN)

    summary = run_sync(spec)

    assert summary.success and summary.batches >= 2
    settings = es.indices.get_settings(index=scenario.index, name="index.number_of_replicas").body
    assert {v["settings"]["index"]["number_of_replicas"] for v in settings.values()} == {"1"}


def test_verify_refuses_an_enum_key_naming_spec_and_column(scenario, es):
    kind = f"{scenario.table}_kind"
    scenario.execute(f"DROP TABLE {scenario.table}")
    scenario.execute(f"CREATE TYPE {kind} AS ENUM ('zebra', 'apple')")
    try:
        scenario.execute(
            f"CREATE TABLE {scenario.table} (id {kind} PRIMARY KEY, title text, updated_at timestamptz)"
        )
        scenario.execute(
            f"INSERT INTO {scenario.table} VALUES ('zebra', 'z', '{WHEN}'), ('apple', 'a', '{WHEN}')"
        )
        spec = scenario.spec()
        assert run_sync(spec).success
        with pytest.raises(SourceError, match=rf"spec '{spec.name}'.*'id'.*enum"):
            run_verify([spec], [spec])
    finally:
        scenario.execute(f"DROP TABLE IF EXISTS {scenario.table}")
        scenario.execute(f"DROP TYPE IF EXISTS {kind}")


def test_verify_refuses_a_cleansed_key_instead_of_reporting_false_drift(scenario, es):
    scenario.execute(f"DROP TABLE {scenario.table}")
    scenario.execute(
        f"CREATE TABLE {scenario.table} (id text PRIMARY KEY, title text, updated_at timestamptz)"
    )
    scenario.execute(f"INSERT INTO {scenario.table} VALUES ('B', 'b', '{WHEN}'), ('a', 'a', '{WHEN}')")
    spec = _with_fields(scenario, "id: {cleanse: [lowercase]}")
    assert run_sync(spec).success

    with pytest.raises(SourceError, match=rf"spec '{spec.name}'.*'id'.*cleansed"):
        run_verify([spec], [spec])
