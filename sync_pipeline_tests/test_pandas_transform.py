"""pandas transforms as the documents stage (issue 26, item 1): `transform: {pandas: "m:f"}` runs
once per batch on every path that builds documents — the window sync, both drains, verify and
its fix, dead-letter replay, rebuild — so verify sees what the sync wrote; a batch it raises on
is bisected down to the failing rows (dead letters with the exception); a field it returns with
no mapping is refused before any run; without a transform, pandas is never imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sync_pipeline.apps import cli
from sync_pipeline.apps.cli.runner import run_drain, run_sync, run_verify
from sync_pipeline.core.columns import ColumnInfo, arrow_schema
from sync_pipeline.core.documents import batch_to_bulk, batch_to_documents, build_plan
from sync_pipeline.core.specs import parse_specs
from sync_pipeline.core.sql import SourceError, read_columns
from sync_pipeline.core.transform_plan import with_transform
from sync_pipeline.defs.assets import asset_keys, build_spec_assets
from sync_pipeline.io import deadletters
from sync_pipeline.io.transform import resolve
from sync_pipeline.ops.binding import bind
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.rebuild import rebuild
from sync_pipeline.ops.replay import replay

from .conftest import indexed

HERE = "sync_pipeline_tests.test_pandas_transform"


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Normalise a string and compute a field, as a user's transform would."""
    title = frame["title"].str.upper()
    return frame.assign(title=title, title_slug=title.str.lower().str.replace(" ", "-", regex=False))


def fragile(frame: pd.DataFrame) -> pd.DataFrame:
    if frame["title"].str.contains("boom").fillna(False).any():
        raise ValueError("no bombs in titles")
    return clean(frame)


def unmapped(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(shouting=frame["title"].str.upper())


def rekey(frame: pd.DataFrame) -> pd.DataFrame:
    return clean(frame).assign(id=frame["id"] + 1000)


def embed(frame: pd.DataFrame) -> pd.DataFrame:
    """A deterministic local embedding (no model, no network): 8 floats from hashes of the title,
    and a dict-valued field, both computed for the whole batch at once."""
    if frame["title"].str.contains("boom").fillna(False).any():
        raise ValueError("no bombs in titles")
    seeds = [pd.util.hash_pandas_object(frame["title"] + f":{k}", index=False).to_numpy() for k in range(8)]
    matrix = (np.stack(seeds, axis=1) % 2000).astype("float32") / 1000 - 1 if len(frame) else np.empty((0, 8))
    facts = [{"length": len(t), "words": t.split()} for t in frame["title"]]
    return frame.assign(embedding=list(matrix), facts=facts)


def lengths(frame: pd.DataFrame) -> pd.DataFrame:
    """Python lists over the batch: on the zero-row sample pandas types them float64."""
    return frame.assign(title_slug=[str(len(t)) for t in frame["title"]])


def _spec_text(scenario, function: str, extra: str = "") -> str:
    text = scenario.spec_text(extra=f"    transform: {{pandas: '{HERE}:{function}'}}\n{extra}")
    return text.replace("    fields:\n", "    fields:\n      title_slug: {type: keyword}\n")


def _spec(scenario, function: str = "clean", capture: str = "triggers"):
    return parse_specs(_spec_text(scenario, function, f"    capture: {capture}"), origin="test")[0]


def _unit_spec(function: str, fields: str = "title_slug: {type: keyword}"):
    return parse_specs(
        f"""
specs:
  - name: s
    source: {{table: t, primary_key: id, updated_at: updated_at}}
    target: {{index: s}}
    partitions: {{start: "2026-01-01"}}
    transform: {{pandas: "{HERE}:{function}"}}
    fields: {{{fields}}}
"""
    )[0]


def _unit_plan(function: str, fields: str = "title_slug: {type: keyword}"):
    spec = _unit_spec(function, fields)
    read = read_columns([ColumnInfo("id", "int8"), ColumnInfo("title", "text")])
    plan = build_plan(spec, read)
    return with_transform(plan, spec.transform.pandas, resolve(spec)), arrow_schema(read)


def test_the_transform_cannot_change_a_key_it_is_restored():
    plan, schema = _unit_plan("rekey")
    batch = pa.RecordBatch.from_pylist([{"id": 1, "title": "a"}], schema=schema)
    docs = batch_to_documents(batch, plan)
    assert docs.ids == ["1"] and docs.documents == [{"id": 1, "title": "A", "title_slug": "a"}]
    body = batch_to_bulk(batch, plan).body.data.decode()
    assert '"_id":"1"' in body and '"id":1,' in body


def test_lists_and_dicts_a_transform_returns_reach_the_bulk_body_as_verify_expects_them():
    fields = "embedding: {type: dense_vector, dims: 8}, facts: {type: flattened}"
    plan, schema = _unit_plan("embed", fields)
    rows = [{"id": 1, "title": "green tea"}, {"id": 2, "title": "cup"}]
    batch = pa.RecordBatch.from_pylist(rows, schema=schema)
    expected = batch_to_documents(batch, plan).documents
    lines = batch_to_bulk(batch, plan).body.data.decode().splitlines()
    sent = [json.loads(line) for line in lines[1::2]]
    assert sent == expected
    assert [len(doc["embedding"]) for doc in sent] == [8, 8] and sent[0]["embedding"] != sent[1]["embedding"]
    assert all(-1 <= x < 1 for x in sent[0]["embedding"])
    assert sent[0]["facts"] == {"length": 9, "words": ["green", "tea"]}
    again = [json.loads(line) for line in batch_to_bulk(batch, plan).body.data.decode().splitlines()[1::2]]
    assert again == sent  # deterministic: the same title, the same vector

    rows.append({"id": 3, "title": "boom"})  # a batch it raises on: halves until the row stands alone
    chunk = batch_to_bulk(pa.RecordBatch.from_pylist(rows, schema=schema), plan)
    assert [r.doc_id for r in chunk.rejected] == ["3"]
    assert [json.loads(line) for line in chunk.body.data.decode().splitlines()[1::2]] == sent


def test_a_field_typed_by_the_empty_sample_keeps_the_values_the_batch_returns():
    plan, schema = _unit_plan("lengths")
    rows = [{"id": 1, "title": "green tea"}, {"id": 2, "title": "x"}]
    batch = pa.RecordBatch.from_pylist(rows, schema=schema)
    chunk = batch_to_bulk(batch, plan)
    assert chunk.rejected == ()
    sent = [json.loads(line) for line in chunk.body.data.decode().splitlines()[1::2]]
    assert [doc["title_slug"] for doc in sent] == ["9", "1"]  # text, not 9.0
    assert sent == batch_to_documents(batch, plan).documents


def test_a_raising_transform_is_bisected_down_to_its_failing_rows():
    plan, schema = _unit_plan("fragile")
    rows = [{"id": i, "title": "boom" if i in (3, 6) else f"t {i}"} for i in range(8)]
    chunk = batch_to_bulk(pa.RecordBatch.from_pylist(rows, schema=schema), plan)
    assert sorted(r.doc_id for r in chunk.rejected) == ["3", "6"]
    assert chunk.rejected[0].error["exception"] == {"type": "ValueError", "message": "no bombs in titles"}
    assert chunk.body.data.decode().count('"index"') == 6 and '"title_slug":"t-0"' in chunk.body.data.decode()


def test_an_unimportable_transform_is_a_clear_error():
    spec = parse_specs(
        """
specs:
  - name: s
    source: {table: t, primary_key: id, updated_at: updated_at}
    target: {index: s}
    partitions: {start: "2026-01-01"}
    transform: {pandas: "no_such_module_here:f"}
"""
    )[0]
    with pytest.raises(SourceError, match=r"spec 's'.*cannot import module 'no_such_module_here'"):
        resolve(spec)
    with pytest.raises(SourceError, match=f"module '{HERE}' has no function 'nothing'"):
        missing = spec.transform.model_copy(update={"pandas": f"{HERE}:nothing"})
        resolve(spec.model_copy(update={"transform": missing}))


def test_a_transform_without_pandas_installed_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # what an environment without it imports
    with pytest.raises(SourceError, match=r"spec 's'.*needs pandas: pip install 'sync-pipeline\[pandas\]'"):
        resolve(_unit_spec("clean"))


def test_a_sync_without_a_transform_never_imports_pandas(tmp_path):
    code = (
        "import sys, pyarrow as pa\n"
        "from sync_pipeline.apps.cli import runner\n"  # the CLI's entry keeps pyarrow's pandas probe off
        "from sync_pipeline.io.pandas_probe import skip_pandas_probe\n"
        "from sync_pipeline.core.columns import ColumnInfo, arrow_schema\n"
        "from sync_pipeline.core.documents import batch_to_bulk, build_plan\n"
        "from sync_pipeline.core.specs import parse_specs\n"
        "from sync_pipeline.core.sql import read_columns\n"
        "from sync_pipeline.ops.binding import Bound\n"
        "skip_pandas_probe()\n"
        "spec = parse_specs('''specs:\n"
        "  - {name: s, source: {table: t, primary_key: id, updated_at: updated_at},"
        " target: {index: s}, partitions: {start: '2026-01-01'}}''')[0]\n"
        "cols = [ColumnInfo('id', 'int8'), ColumnInfo('title', 'text')]\n"
        "bound = Bound.of(spec, cols)\n"
        "schema = arrow_schema(bound.read_columns)\n"
        "batch = pa.RecordBatch.from_pylist([{'id': 1, 'title': 'a'}], schema=schema)\n"
        "batch_to_bulk(batch, bound.plan)\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.integration
def test_a_field_the_transform_returns_without_a_mapping_is_refused_at_validate(scenario, tmp_path, capsys):
    spec = _spec(scenario, "unmapped")
    with pytest.raises(SourceError, match="field 'shouting' it returns has no mapping"):
        bind(scenario.engine, spec)
    config = tmp_path / "sync.yaml"
    config.write_text(_spec_text(scenario, "unmapped"))
    assert cli.main(["validate", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert (
        f"spec '{scenario.table}': 1 problem" in out and "field 'shouting' it returns has no mapping" in out
    )
    config.write_text(_spec_text(scenario, "clean"))
    assert cli.main(["validate", "--config", str(config)]) == 0


@pytest.mark.integration
def test_sync_drain_verify_fix_and_rebuild_go_through_the_transform(scenario, insert_rows, es):
    insert_rows(range(1, 41), "2026-02-01 00:00:00+00")
    spec = _spec(scenario)
    install_capture(scenario.engine, spec)
    try:
        assert run_sync([spec], spec).success
        docs = indexed(es, scenario.index)
        assert docs["5"]["title"] == "ITEM 5 商品" and docs["5"]["title_slug"] == "item-5-商品"
        (report,) = run_verify([spec], [spec])
        assert report.ok and report.pg_count == 40, report.lines()

        table = scenario.table
        scenario.execute(f"UPDATE {table} SET title = 'changed here', updated_at = now() WHERE id = 7")
        insert_rows([41], "2026-02-02 00:00:00+00", title="new one")
        assert run_drain([spec], spec).success
        docs = indexed(es, scenario.index)
        assert docs["7"]["title_slug"] == "changed-here" and docs["41"]["title"] == "NEW ONE"

        es.update(index=scenario.index, id="12", doc={"title_slug": "tampered"}, refresh=True)
        (fixing,) = run_verify([spec], [spec], fix=True)
        assert fixing.mismatched == 1 and fixing.repaired.indexed == 1
        assert indexed(es, scenario.index)["12"]["title_slug"] == "item-12-商品"

        report = rebuild(scenario.engine, es, spec)
        assert report.new_index == f"{scenario.index}_v2"
        (after,) = run_verify([spec], [spec])
        assert after.ok and after.pg_count == 41, after.lines()
    finally:
        uninstall_capture(scenario.engine, spec)


@pytest.mark.integration
def test_a_logical_drain_goes_through_the_transform(scenario, insert_rows, es):
    insert_rows(range(1, 21), "2026-02-01 00:00:00+00")
    spec = _spec(scenario, capture="logical")
    install_capture(scenario.engine, spec)
    try:
        assert run_sync([spec], spec).success
        scenario.execute(f"UPDATE {scenario.table} SET title = 'by slot', updated_at = now() WHERE id = 3")
        assert run_drain([spec], spec).success
        assert indexed(es, scenario.index)["3"]["title_slug"] == "by-slot"
        (report,) = run_verify([spec], [spec])
        assert report.ok and report.pg_count == 20, report.lines()
    finally:
        uninstall_capture(scenario.engine, spec)


@pytest.mark.integration
def test_rows_the_transform_raises_on_are_dead_letters_and_replay_once_fixed(scenario, insert_rows, es):
    insert_rows(range(1, 31), "2026-02-01 00:00:00+00")
    scenario.execute(f"UPDATE {scenario.table} SET title = 'boom' WHERE id IN (4, 17)")
    spec = _spec(scenario, "fragile")
    summary = run_sync([spec], spec)
    assert summary.success and summary.indexed == 28 and summary.dead_lettered == 2
    with scenario.engine.begin() as conn:
        letters = {d["doc_id"]: d["error"] for d in deadletters.list_dead_letters(conn, spec.name, 50)}
    assert sorted(letters) == ["17", "4"]
    assert letters["4"]["type"] == "transform_failed"
    assert letters["4"]["exception"] == {"type": "ValueError", "message": "no bombs in titles"}
    (report,) = run_verify([spec], [spec])
    assert report.drift == 0 and report.dead_letters == 2, report.lines()

    scenario.execute(f"UPDATE {scenario.table} SET title = 'defused' WHERE id IN (4, 17)")
    assert replay(scenario.engine, es, spec) == (2, 0)
    assert indexed(es, scenario.index)["17"]["title_slug"] == "defused"
    (after,) = run_verify([spec], [spec])
    assert after.ok and after.pg_count == 30, after.lines()


def test_the_documents_asset_shows_the_pandas_kind_and_the_transform():
    with_one = _unit_spec("clean")
    without = with_one.model_copy(update={"transform": None})
    for spec, kinds in ((with_one, {"pyarrow", "pandas"}), (without, {"pyarrow"})):
        multi = build_spec_assets(spec)[0]
        node = multi.specs_by_key[asset_keys(spec)[1]]
        assert set(node.kinds) == kinds
        assert node.metadata.get("transform") == (f"{HERE}:clean" if spec.transform else None)
