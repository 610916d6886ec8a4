"""Vector fields: `type: dense_vector` with `dims` and `similarity`, mapped for the server at hand,
synced from a PostgreSQL `real[]` column, verified, and searched with `search --knn`.

The embedding is local and deterministic: eight floats from hashes of the title, computed in SQL.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from sync_pipeline.apps import cli
from sync_pipeline.apps.cli.search import knn_request
from sync_pipeline.core.mapping.dialect import (
    for_server,
    settings_for_server,
)
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline_tests.support.vectors import VECTOR

# 8 floats in [-1, 1) from hashes of the title: the same title, the same vector, on any machine
EMBEDDING_SQL = (
    "ARRAY(SELECT ((hashtext(title || ':' || g) % 1000) / 1000.0)::real FROM generate_series(1, 8) g)"
)


def vector_spec_text(base: str, rule: str = "{type: dense_vector, dims: 8, similarity: cosine}") -> str:
    return base.replace("    fields:\n", f"    fields:\n      embedding: {rule}\n", 1)


# --- end to end, on the real search server -----------------------------------------------------


def test_a_real_array_embedding_syncs_verifies_and_answers_knn(
    scenario, insert_rows, tmp_path, live, monkeypatch, capsys
) -> None:
    from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify

    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN embedding real[]")
    for i in range(1, 31):
        insert_rows([i], "2026-02-01 00:00:00+00", title=f"product {i} {'tea' if i % 2 else 'cup'}")
    scenario.execute(f"UPDATE {scenario.table} SET embedding = {EMBEDDING_SQL}")
    config = tmp_path / "sync.yaml"
    config.write_text(vector_spec_text(scenario.spec_text()))
    (spec,) = parse_specs(config.read_text(), origin=str(config))
    servers = Servers(live.pg_url, live.es_url)

    summary = run_sync(spec, servers=servers)
    assert summary.success, summary.error
    assert summary.indexed == 30
    mapped = scenario.es.indices.get_mapping(index=scenario.index).body
    field = next(iter(mapped.values()))["mappings"]["properties"]["embedding"]
    assert (field["type"], field["dims"], field["similarity"], field["index"]) == (
        "dense_vector",
        8,
        "cosine",
        True,
    )
    (report,) = run_verify([spec], [spec], servers=servers)
    assert report.drift == 0, report

    # verify sees a vector that changed in PostgreSQL only (one float of eight)
    scenario.execute(f"UPDATE {scenario.table} SET embedding[3] = embedding[3] + 0.25 WHERE id = 11")
    (changed,) = run_verify([spec], [spec], servers=servers)
    assert (changed.drift, [m.doc_id for m in changed.mismatches]) == (1, ["11"])
    (fixed,) = run_verify([spec], [spec], fix=True, servers=servers)
    (clean,) = run_verify([spec], [spec], servers=servers)
    assert clean.drift == 0, (fixed, clean)

    with scenario.engine.connect() as conn:
        target = conn.exec_driver_sql(f"SELECT embedding FROM {scenario.table} WHERE id = 17").scalar_one()
    monkeypatch.setenv("SYNC_PG_URL", live.pg_url)
    monkeypatch.setenv("SYNC_ES_URL", live.es_url)
    argv = ["--config", str(config), "search", "--spec", spec.name, "--knn", "embedding"]
    code = cli.main([*argv, "--vector", json.dumps(target), "--k", "3", "--json"])
    found = json.loads(capsys.readouterr().out)
    assert code == 0, found
    assert [hit["id"] for hit in found["hits"]][:1] == ["17"] and len(found["hits"]) == 3
    assert found["hits"][0]["score"] >= found["hits"][1]["score"]

    assert cli.main([*argv, "--vector", "[0.1, 0.2]"]) == 2
    assert "embedding" in capsys.readouterr().err


def test_an_embedding_computed_by_a_pandas_transform_syncs_verifies_and_answers_knn(
    scenario, insert_rows, tmp_path, live, monkeypatch, capsys
) -> None:
    """No vector column in PostgreSQL: the spec's transform computes one per row from the title."""
    from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify
    from sync_pipeline.io.transform import resolve

    for i in range(1, 31):
        insert_rows([i], "2026-02-01 00:00:00+00", title=f"product {i} {'tea' if i % 2 else 'cup'}")
    transform = "    transform: {pandas: 'sync_pipeline_tests.support.pandas_transform:embed'}\n"
    text = vector_spec_text(scenario.spec_text(extra=transform)).replace(
        "    fields:\n", "    fields:\n      facts: {type: flattened}\n", 1
    )
    config = tmp_path / "sync.yaml"
    config.write_text(text)
    (spec,) = parse_specs(text, origin=str(config))
    servers = Servers(live.pg_url, live.es_url)

    summary = run_sync(spec, servers=servers)
    assert summary.success and summary.indexed == 30, summary.error
    doc = scenario.es.get(index=scenario.index, id="17")["_source"]
    assert len(doc["embedding"]) == 8 and doc["facts"]["words"] == ["product", "17", "tea"]
    (report,) = run_verify([spec], [spec], servers=servers)
    assert report.ok and report.pg_count == 30, report.lines()

    # the query vector is the transform's own for row 17: the nearest document is row 17
    import pandas as pd

    frame = pd.DataFrame({"id": [17], "title": [doc["title"]]})
    target = resolve(spec)  # the same function, as the sync ran it
    assert target is not None
    vector = [float(x) for x in target(pa.Table.from_pandas(frame)).column("embedding")[0].as_py()]
    assert vector == pytest.approx(doc["embedding"], rel=1e-6)  # float32s, sent in their shortest form
    monkeypatch.setenv("SYNC_PG_URL", live.pg_url)
    monkeypatch.setenv("SYNC_ES_URL", live.es_url)
    argv = ["--config", str(config), "search", "--spec", spec.name, "--knn", "embedding"]
    code = cli.main([*argv, "--vector", json.dumps(vector), "--k", "3", "--json"])
    found = json.loads(capsys.readouterr().out)
    assert code == 0, found
    assert [hit["id"] for hit in found["hits"]][:1] == ["17"] and len(found["hits"]) == 3


def test_a_vector_field_on_a_column_that_holds_no_float_array_is_refused_at_bind(scenario) -> None:
    from sync_pipeline.core.sql.statements import SourceError
    from sync_pipeline.ops.binding import bind

    text = scenario.spec_text().replace(
        "    fields:\n", "    fields:\n      tags: {type: dense_vector, dims: 2}\n", 1
    )
    (spec,) = parse_specs(text, origin="test")
    with pytest.raises(SourceError, match=r"fields\.tags\.type: column tags is text\[\], not real\[\]"):
        bind(scenario.engine, spec)


def test_a_vector_of_the_wrong_length_is_a_dead_letter_and_the_rest_lands(
    scenario, insert_rows, tmp_path, live
) -> None:
    from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify

    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN embedding real[]")
    insert_rows(range(1, 11), "2026-02-01 00:00:00+00")
    scenario.execute(f"UPDATE {scenario.table} SET embedding = {EMBEDDING_SQL}")
    scenario.execute(f"UPDATE {scenario.table} SET embedding = embedding[1:7] WHERE id = 4")
    (spec,) = parse_specs(vector_spec_text(scenario.spec_text()), origin="test")
    servers = Servers(live.pg_url, live.es_url)

    summary = run_sync(spec, servers=servers)
    assert (summary.success, summary.indexed, summary.dead_lettered) == (True, 9, 1), summary
    (report,) = run_verify([spec], [spec], servers=servers)
    assert (report.dead_letter_ids, report.es_count) == (["4"], 9), report


@pytest.mark.parametrize("capture", ["triggers", "logical"])
def test_a_changed_vector_reaches_the_index_through_either_drain(
    scenario, insert_rows, live, capture: str
) -> None:
    import sqlalchemy as sa

    from sync_pipeline.apps.cli.runner import Servers, run_drain, run_sync, run_verify
    from sync_pipeline.ops.capture import install_capture, uninstall_capture
    from sync_pipeline.ops.drain import drain

    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN embedding real[]")
    insert_rows(range(1, 11), "2026-02-01 00:00:00+00")
    scenario.execute(f"UPDATE {scenario.table} SET embedding = {EMBEDDING_SQL}")
    text = vector_spec_text(scenario.spec_text(extra=f"    capture: {capture}"))
    (spec,) = parse_specs(text, origin="test")
    servers = Servers(live.pg_url, live.es_url)
    install_capture(scenario.engine, spec)
    try:
        assert run_sync(spec, servers=servers).success
        if capture == "logical":
            drain(scenario.engine, scenario.es, spec)  # the slot's changes from before the sync
        scenario.execute(
            f"UPDATE {scenario.table} SET embedding = ARRAY[0.5, -0.25, 0.125, 1, 0, 0, 0, 0.75]::real[], "
            "updated_at = now() WHERE id = 5"
        )
        assert run_drain(spec, servers=servers).success
        doc = scenario.es.get(index=scenario.index, id="5", _source_includes=["embedding"])
        assert doc["_source"]["embedding"] == [0.5, -0.25, 0.125, 1.0, 0.0, 0.0, 0.0, 0.75]
        (report,) = run_verify([spec], [spec], servers=servers)
        assert report.drift == 0, report
    finally:
        uninstall_capture(scenario.engine, spec)
        with scenario.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM public.sync_pipeline_buffer WHERE spec = :s"), {"s": spec.name})


def test_a_rebuilt_index_keeps_its_vectors_and_verifies_clean(scenario, insert_rows, live) -> None:
    from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify
    from sync_pipeline.ops.rebuild import rebuild

    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN embedding real[]")
    insert_rows(range(1, 11), "2026-02-01 00:00:00+00")
    scenario.execute(f"UPDATE {scenario.table} SET embedding = {EMBEDDING_SQL}")
    (spec,) = parse_specs(vector_spec_text(scenario.spec_text()), origin="test")
    servers = Servers(live.pg_url, live.es_url)
    assert run_sync(spec, servers=servers).success

    report = rebuild(scenario.engine, scenario.es, spec)
    assert report.new_index in scenario.es.indices.get_alias(name=scenario.index).body
    (after,) = run_verify([spec], [spec], servers=servers)
    assert (after.es_count, after.drift) == (10, 0), after
    with scenario.engine.connect() as conn:
        seven = conn.exec_driver_sql(f"SELECT embedding FROM {scenario.table} WHERE id = 7").scalar_one()
    body = knn_request(scenario.es.server, "embedding", seven, 1)
    assert [h["_id"] for h in scenario.es.search(index=scenario.index, **body)["hits"]["hits"]] == ["7"]


def test_a_vector_field_added_to_an_index_created_without_its_setting_needs_a_rebuild(
    scenario, insert_rows, live
) -> None:
    """Elasticsearch 9.1+ keeps vectors in `_source` only in an index created so (OpenSearch: only
    an index created `knn` answers kNN): adding one in place would make every document drift."""
    from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify

    insert_rows(range(1, 11), "2026-02-01 00:00:00+00")
    servers = Servers(live.pg_url, live.es_url)
    (plain,) = parse_specs(scenario.spec_text(), origin="test")
    assert run_sync(plain, servers=servers).success
    scenario.execute(f"ALTER TABLE {scenario.table} ADD COLUMN embedding real[]")
    scenario.execute(f"UPDATE {scenario.table} SET embedding = {EMBEDDING_SQL}, updated_at = now()")
    (spec,) = parse_specs(vector_spec_text(scenario.spec_text()), origin="test")
    needed = settings_for_server({}, for_server({"properties": {"embedding": VECTOR}}, scenario.es.server),
                                 scenario.es.server)  # fmt: skip
    added = run_sync(spec, servers=servers)
    if needed:  # Elasticsearch 9.1+, OpenSearch
        assert not added.success
        setting = next(iter(needed))
        assert "embedding: new field" in added.error and f"index.{setting}" in added.error, added.error
        rebuilding = vector_spec_text(scenario.spec_text(extra="    on_mapping_change: rebuild"))
        (spec,) = parse_specs(rebuilding, origin="test")
        added = run_sync(spec, servers=servers)
    assert added.success, added.error
    (report,) = run_verify([spec], [spec], servers=servers)
    assert report.ok and report.pg_count == 10, report.lines()
    doc = scenario.es.get(index=scenario.index, id="3", _source_includes=["embedding"])["_source"]
    assert len(doc["embedding"]) == 8
