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

import pyarrow as pa
import pytest

from sync_pipeline.core.documents.build import batch_to_bulk, batch_to_documents, build_plan
from sync_pipeline.core.documents.transform_plan import with_transform
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.core.sql.columns import ColumnInfo, arrow_schema
from sync_pipeline.core.sql.statements import SourceError, read_columns
from sync_pipeline.defs.assets import asset_keys, build_spec_assets
from sync_pipeline.io.transform import resolve
from sync_pipeline_tests.support.pandas_transform import HERE


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
        "from sync_pipeline.core.sql.columns import ColumnInfo, arrow_schema\n"
        "from sync_pipeline.core.documents.build import batch_to_bulk, build_plan\n"
        "from sync_pipeline.core.spec.model import parse_specs\n"
        "from sync_pipeline.core.sql.statements import read_columns\n"
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


def test_the_documents_asset_shows_the_pandas_kind_and_the_transform():
    with_one = _unit_spec("clean")
    without = with_one.model_copy(update={"transform": None})
    for spec, kinds in ((with_one, {"pyarrow", "pandas"}), (without, {"pyarrow"})):
        multi = build_spec_assets(spec)[0]
        node = multi.specs_by_key[asset_keys(spec)[1]]
        assert set(node.kinds) == kinds
        assert node.metadata.get("transform") == (f"{HERE}:clean" if spec.transform else None)
