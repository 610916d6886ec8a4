"""Mappings the spec controls, and schema changes that never drift silently (real servers)."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli import main
from sync_pipeline.apps.cli.runner import run_sync
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.core.sql.statements import SourceError
from sync_pipeline.core.windows import Window
from sync_pipeline.defs.assets import load_window
from sync_pipeline.defs.checks import build_mapping_check
from sync_pipeline.defs.resources import ElasticsearchResource, PostgresResource
from sync_pipeline.io import deadletters
from sync_pipeline.io.search.indices import backing_indices, drop_target
from sync_pipeline.io.staging import StagingArea
from sync_pipeline.ops.binding import bind
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline.ops.sync_window import WindowResult, WindowRun
from sync_pipeline.ops.target import MappingConflict, MappingRefused, mapping_drift
from sync_pipeline.ops.verify import verify_spec
from sync_pipeline_tests.conftest import indexed

SPEC = """
specs:
  - name: {name}
    source:
      table: {name}
      primary_key: id
      updated_at: updated_at
      relations:
        - {{name: maker, table: {name}_makers, kind: many_to_one, on: {{id: maker_id}}, columns: [label]}}
        - {{name: reviews, table: {name}_reviews, kind: one_to_many, on: {{item_id: id}},
            columns: [body], nested: {nested}}}
    target:
      index: {name}
      settings:
        analysis:
          filter: {{pairs: {{type: shingle, min_shingle_size: 2, max_shingle_size: 2}}}}
          analyzer: {{bigrams: {{type: custom, tokenizer: standard, filter: [lowercase, pairs]}}}}
{target}
    partitions: {{grain: month, start: "2026-01-01"}}
{top}
    fields:
      title:
        mapping:
          analyzer: {analyzer}
          fields: {{sort: {{type: keyword, normalizer: lowercase}}}}
      sku: {{type: keyword, mapping: {{normalizer: lowercase}}}}
      attrs:
        type: object
        mapping: {{dynamic: strict, properties: {{color: {{type: keyword}}}}}}
      maker.label: {{mapping: {{fields: {{raw: {{type: keyword}}}}}}}}
"""


class Shop:
    """Three related tables and the spec over them, parameterised by what a test changes."""

    def __init__(self, engine: sa.Engine, es, tmp_path) -> None:
        self.name = f"m_{uuid.uuid4().hex[:8]}"
        self.engine, self.es, self.tmp_path = engine, es, tmp_path
        self.execute(
            f"""
            CREATE TABLE {self.name}_makers (id int PRIMARY KEY, label text);
            CREATE TABLE {self.name} (
                id bigint PRIMARY KEY, title text, sku text, qty integer, attrs jsonb,
                maker_id int REFERENCES {self.name}_makers (id), updated_at timestamptz DEFAULT now());
            CREATE TABLE {self.name}_reviews (id int PRIMARY KEY, item_id bigint, body text);
            INSERT INTO {self.name}_makers VALUES (1, 'Jingdezhen Kiln'), (2, 'Yixing Works');
            INSERT INTO {self.name} (id, title, sku, qty, attrs, maker_id, updated_at)
              SELECT g, (ARRAY['青花瓷茶杯', 'Garden Hose', '龙井绿茶'])[1 + g % 3] || ' ' || g,
                     'SKU-' || g, g, '{{"color": "blue"}}', 1 + g % 2, '2026-02-01'
              FROM generate_series(1, 30) AS g;
            INSERT INTO {self.name}_reviews SELECT g, g, 'fine cup ' || g FROM generate_series(1, 30) AS g;
            """
        )

    def text(self, analyzer: str = "bigrams", nested: str = "true", target: str = "", top: str = "") -> str:
        return SPEC.format(name=self.name, analyzer=analyzer, nested=nested, target=target, top=top)

    def spec(self, **parts: str):
        return parse_specs(self.text(**parts), origin="test")[0]

    def execute(self, sql: str, params: dict | None = None):
        with self.engine.begin() as conn:
            return conn.execute(sa.text(sql), params or {})

    def sync(self, spec, key: str = "all") -> WindowResult:
        run = WindowRun(
            spec, Window(None, None), key, self.engine, StagingArea(self.tmp_path), log=lambda _: None
        )
        return load_window(run, self.es)

    @property
    def pg_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False)

    def documents(self) -> dict[str, dict]:
        return indexed(self.es, self.name)

    def drop(self) -> None:
        uninstall_capture(self.engine, self.spec())
        self.execute(f"DROP TABLE IF EXISTS {self.name}_reviews, {self.name}, {self.name}_makers CASCADE")
        drop_target(self.es, self.name)
        with self.engine.begin() as conn:
            deadletters.purge(conn, self.name)


@pytest.fixture()
def shop(pg, es, tmp_path):
    made = Shop(pg, es, tmp_path)
    yield made
    made.drop()


def mapping_of(es, index: str) -> dict:
    return next(iter(es.indices.get_mapping(index=index).body.values()))["mappings"]


def test_analyzers_multi_fields_and_normalizers_are_mapped_and_searchable(shop, es):
    spec = shop.spec()
    result = shop.sync(spec)
    assert result.totals.indexed == 30 and result.target.created
    mapping = mapping_of(es, shop.name)
    assert mapping["dynamic"] == "strict" and mapping["date_detection"] is False
    title = mapping["properties"]["title"]
    assert title["analyzer"] == "bigrams"
    assert title["fields"]["sort"] == {"type": "keyword", "normalizer": "lowercase"}
    assert "keyword" in title["fields"]  # the inferred twin is kept beside the spec's
    assert mapping["properties"]["maker"]["properties"]["label"]["fields"]["raw"] == {"type": "keyword"}
    tokens = es.indices.analyze(index=shop.name, field="title", text="茶杯")["tokens"]
    assert [t["token"] for t in tokens] == ["茶", "茶 杯", "杯"]
    # the normalizer: a lowercase term finds the uppercase SKU
    assert es.count(index=shop.name, query={"term": {"sku": "sku-7"}})["count"] == 1
    hits = es.search(index=shop.name, query={"match_phrase": {"title": "茶杯"}}, size=100)["hits"]["hits"]
    assert hits and all("茶杯" in h["_source"]["title"] for h in hits)
    # Elasticsearch reports the mapping back as the spec's: nothing to change on the next load
    found = mapping_drift(es, bind(shop.engine, spec))
    assert found is not None and found[1].same, found


def test_strict_dynamic_mapping_dead_letters_an_unknown_field_with_its_reason(shop):
    shop.execute(f'UPDATE {shop.name} SET attrs = \'{{"color": "red", "size": 3}}\' WHERE id = 5')
    result = shop.sync(shop.spec())
    assert result.totals.dead_lettered == 1 and result.totals.indexed == 29
    with shop.engine.begin() as conn:
        letters = deadletters.list_dead_letters(conn, shop.name)
    assert [d["doc_id"] for d in letters] == ["5"]
    assert letters[0]["error"]["type"] == "strict_dynamic_mapping_exception"
    assert "[size]" in letters[0]["error"]["reason"] and "attrs" in letters[0]["error"]["reason"]


def _conflict_before_any_write(shop, spec, change: str | None, path: str, old: str, new: str):
    """The next sync after `change` stops before its first write, naming the field."""
    if change:
        shop.execute(change)
    shop.execute(f"UPDATE {shop.name} SET title = 'changed', updated_at = now() WHERE id = 3")
    with pytest.raises(MappingConflict) as caught:
        shop.sync(spec, key="after")
    message = str(caught.value)
    assert f"{path}: " in message and old in message and new in message, message
    assert f"sync-pipeline rebuild --spec {shop.name}" in message and "nothing was written" in message
    assert shop.documents()["3"]["title"] != "changed"  # no write reached the index


@pytest.mark.parametrize(
    ("change", "edit", "path", "old", "new"),
    [
        ("ALTER TABLE {t} ALTER COLUMN qty TYPE numeric(10, 2)", {}, "qty", "integer", "double"),
        (None, {"analyzer": "standard"}, "title", "bigrams", "standard"),
        (None, {"nested": "false"}, "reviews", "nested", "object"),
        ("ALTER TABLE {t} DROP COLUMN qty", {}, "qty", "no longer in the spec's documents", "integer"),
    ],
    ids=["column type", "analyzer", "nested", "dropped column"],
)
def test_each_kind_of_mapping_conflict_stops_the_sync_before_any_write(shop, change, edit, path, old, new):
    shop.sync(shop.spec())
    _conflict_before_any_write(shop, shop.spec(**edit), change and change.format(t=shop.name), path, old, new)


def test_a_drain_meeting_a_conflict_writes_nothing_and_keeps_the_changes_buffered(shop):
    spec = shop.spec()
    shop.sync(spec)
    install_capture(shop.engine, spec)
    shop.execute(f"ALTER TABLE {shop.name} ALTER COLUMN qty TYPE numeric(10, 2)")
    shop.execute(f"UPDATE {shop.name} SET qty = 12.5 WHERE id = 4")
    with pytest.raises(MappingConflict):
        drain(shop.engine, shop.es, spec)
    pending = shop.execute("SELECT count(*) FROM sync_pipeline_buffer WHERE spec = :s", {"s": shop.name})
    assert pending.scalar_one() == 1
    assert shop.documents()["4"]["qty"] == 4


def test_verify_reports_a_numeric_column_indexed_into_an_integer_field(shop):
    spec = shop.spec()
    shop.sync(spec)
    shop.execute(f"ALTER TABLE {shop.name} ALTER COLUMN qty TYPE numeric(10, 2)")
    with shop.engine.connect() as conn:
        report = verify_spec(conn, shop.es, spec)
    assert not report.ok
    assert report.missing == report.extra == report.mismatched == 0  # _source alone says OK
    assert any(line.startswith("qty: type integer → double") for line in report.mapping), report.mapping
    assert "mapping differs from the spec's" in "\n".join(report.lines())


def test_on_mapping_change_rebuild_swaps_to_a_correct_index_with_no_drift(shop, es):
    shop.sync(shop.spec())
    shop.execute(f"ALTER TABLE {shop.name} ALTER COLUMN qty TYPE numeric(10, 2)")
    shop.execute(f"UPDATE {shop.name} SET qty = 12.5, updated_at = now() WHERE id = 4")
    spec = shop.spec(top="    on_mapping_change: rebuild")
    result = shop.sync(spec, key="after")
    assert result.target.rebuilt == f"{shop.name}_v2"
    assert backing_indices(es, shop.name) == [f"{shop.name}_v2"]
    assert mapping_of(es, shop.name)["properties"]["qty"]["type"] == "double"
    assert es.count(index=shop.name, query={"term": {"qty": 12.5}})["count"] == 1
    assert any("rebuilt into" in line for line in result.totals.mapping_changes)
    with shop.engine.connect() as conn:
        report = verify_spec(conn, es, spec)
    assert report.ok and report.drift == 0, report.lines()


def test_a_source_column_added_reaches_every_document_with_a_mapping_from_its_type(shop, es):
    spec = shop.spec()
    shop.sync(spec)
    # nullable, no default: no row holds a value yet, nothing to re-send; the load maps it
    shop.execute(f"ALTER TABLE {shop.name} ADD COLUMN note text")
    result = shop.sync(spec, key="note")
    assert mapping_of(es, shop.name)["properties"]["note"]["type"] == "text"
    assert result.totals.mapping_changes and not any("re-sent" in x for x in result.totals.mapping_changes)
    shop.execute(f"UPDATE {shop.name} SET note = 'fragile', updated_at = now() WHERE id = 2")
    shop.sync(spec, key="note-set")
    assert shop.documents()["2"]["note"] == "fragile"
    # with a default, every existing row holds a value no trigger reported: all are re-sent
    shop.execute(f"ALTER TABLE {shop.name} ADD COLUMN weight integer NOT NULL DEFAULT 250")
    result = shop.sync(spec, key="weight")
    assert mapping_of(es, shop.name)["properties"]["weight"]["type"] == "integer"
    assert {doc["weight"] for doc in shop.documents().values()} == {250}
    assert any("re-sent 30 documents" in line for line in result.totals.mapping_changes)
    with shop.engine.connect() as conn:
        assert verify_spec(conn, es, spec).ok


def test_a_new_multi_field_is_added_in_place_and_covers_the_documents_already_indexed(shop, es):
    shop.sync(shop.spec())
    sort = "sort: {type: keyword, normalizer: lowercase}"
    spec = parse_specs(shop.text().replace(sort, f"{sort}, exact: {{type: keyword}}"), origin="test")[0]
    result = shop.sync(spec, key="exact")
    assert any("title.exact: new multi-field" in line for line in result.totals.mapping_changes)
    assert es.count(index=shop.name, query={"term": {"title.exact": "Garden Hose 1"}})["count"] == 1


def test_a_dropped_or_renamed_column_the_spec_names_is_a_preflight_error(shop):
    shop.sync(shop.spec())
    shop.execute(f"ALTER TABLE {shop.name} RENAME COLUMN sku TO code")
    with pytest.raises(SourceError) as caught:
        shop.sync(shop.spec(), key="renamed")
    assert "sku" in str(caught.value) and shop.name in str(caught.value)


def test_an_analyzer_this_elasticsearch_lacks_is_refused_naming_where_it_comes_from(shop, es):
    spec = shop.spec(analyzer="cjk")
    with pytest.raises(MappingRefused) as caught:
        shop.sync(spec)
    message = str(caught.value)
    assert f"spec '{shop.name}'" in message and "cjk" in message and "analysis-common" in message
    assert not es.indices.exists(index=shop.name)  # nothing half-created


def test_the_cli_sync_stops_on_a_conflict_with_the_one_screen_error_and_exit_2(shop, tmp_path, capsys):
    config = tmp_path / "sync.yaml"
    config.write_text(shop.text())
    assert main(["--config", str(config), "sync", "--spec", shop.name, "--full"]) == 0
    config.write_text(shop.text(analyzer="standard"))
    code = main(["--config", str(config), "sync", "--spec", shop.name, "--full"])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "title: analyzer bigrams → standard" in err and "sync-pipeline rebuild" in err
    # a run Dagster starts itself (a schedule, the UI) meets the same conflict at its load:
    # the run fails with that message as its error, nothing written
    summary = run_sync(shop.spec(analyzer="standard"))
    assert not summary.success and summary.indexed == 0
    assert summary.error.startswith(f"spec '{shop.name}': the mapping of index {shop.name}_v1"), summary.error


def test_the_mapping_asset_check_warns_for_in_place_changes_and_fails_for_conflicts(shop, live):
    import dagster as dg

    resources = {
        "postgres": PostgresResource(url=live.pg_url),
        "elasticsearch": ElasticsearchResource(url=live.es_url),
    }

    def check(spec) -> dg.AssetCheckResult:
        return build_mapping_check(spec)(**resources)

    assert check(shop.spec()).metadata["index"].value == "not created yet"
    shop.sync(shop.spec())
    assert check(shop.spec()).passed
    shop.execute(f"ALTER TABLE {shop.name} ADD COLUMN note text")
    added = check(shop.spec())
    assert not added.passed and added.severity == dg.AssetCheckSeverity.WARN
    assert "note: new field" in added.metadata["in_place"].value
    conflicting = check(shop.spec(analyzer="standard"))
    assert not conflicting.passed and conflicting.severity == dg.AssetCheckSeverity.ERROR
    assert "title: analyzer bigrams → standard" in conflicting.metadata["conflicts"].value
    assert conflicting.metadata["hint"].value == f"sync-pipeline rebuild --spec {shop.name}"
