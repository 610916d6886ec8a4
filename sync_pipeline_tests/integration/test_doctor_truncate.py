"""Orphans and bypasses (real servers): `sync-pipeline doctor` finds what needs action, and a
TRUNCATE — which fires no row trigger — still reaches the index through the next drain.

A small schema per test (categories ← products → reviews), fully synced, triggers on every
table; each TRUNCATE test ends with verify reporting 0 drift.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli import main
from sync_pipeline.apps.cli.runner import Servers, run_drain, run_history, run_sync, run_verify
from sync_pipeline.core.spec.model import SyncSpec, parse_specs
from sync_pipeline.io import deadletters
from sync_pipeline.io.search.indices import drop_target
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline_tests.conftest import indexed

REVIEWS = """        - name: reviews
          table: {s}.reviews
          kind: one_to_many
          on: {{product_id: id}}
"""


@dataclass
class Store:
    schema: str
    engine: sa.Engine
    es: object
    servers: Servers

    def execute(self, *statements: str) -> None:
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))

    def spec_text(self, reviews: bool = True) -> str:
        s = self.schema
        return f"""
specs:
  - name: {s}
    source:
      table: {s}.products
      primary_key: id
      updated_at: updated_at
      relations:
        - {{name: category, table: {s}.categories, kind: many_to_one, on: {{id: category_id}},
            columns: [name]}}
{REVIEWS.format(s=s) if reviews else ""}
    target: {{index: {s}}}
    partitions: {{grain: month, start: "2026-01-01"}}
    batch_size: 50
"""

    def spec(self, reviews: bool = True) -> SyncSpec:
        return parse_specs(self.spec_text(reviews), origin="test")[0]

    def spec_file(self, directory: Path, text: str | None = None) -> Path:
        path = directory / "sync.yaml"
        path.write_text(text if text is not None else self.spec_text())
        return path

    def docs(self) -> dict[str, dict]:
        return indexed(self.es, self.schema)

    def buffered(self) -> list[tuple[str, str | None]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT op, source FROM public.sync_pipeline_buffer WHERE spec = :s ORDER BY id"),
                {"s": self.schema},
            ).all()
        return [(r.op, r.source) for r in rows]

    def triggers(self) -> int:
        """Triggers whose function carries this spec's capture marker, on any table."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
                    "WHERE obj_description(p.oid, 'pg_proc') LIKE :m"
                ),
                {"m": f"sync_pipeline capture of spec {self.schema}: %"},
            ).scalar_one()

    def assert_no_drift(self, spec: SyncSpec) -> None:
        (report,) = run_verify([spec], [spec], servers=self.servers)
        assert report.ok, report.lines()


@pytest.fixture()
def store(pg, es, live) -> Iterator[Store]:
    s = f"d_{uuid.uuid4().hex[:8]}"
    store = Store(s, pg, es, Servers(live.pg_url, live.es_url))
    store.execute(
        f"CREATE SCHEMA {s}",
        f"CREATE TABLE {s}.categories (id int PRIMARY KEY, name text)",
        f"""CREATE TABLE {s}.products (id bigint PRIMARY KEY, name text, category_id int,
            updated_at timestamptz)""",
        f"CREATE TABLE {s}.reviews (id int PRIMARY KEY, product_id bigint, stars int, body text)",
        f"INSERT INTO {s}.categories VALUES (10, 'Kitchen'), (20, 'Garden')",
        f"""INSERT INTO {s}.products SELECT g, 'product ' || g, CASE WHEN g % 2 = 0 THEN 10 ELSE 20 END,
            '2026-02-01+00' FROM generate_series(1, 20) AS g""",
        f"INSERT INTO {s}.reviews VALUES (1, 1, 5, 'great'), (2, 1, 3, 'fine'), (3, 2, 1, 'bad')",
    )
    yield store
    for spec in (store.spec(), store.spec(reviews=False)):
        uninstall_capture(pg, spec)
    with pg.begin() as conn:
        conn.execute(sa.text("DELETE FROM public.sync_pipeline_buffer WHERE spec = :s"), {"s": s})
        deadletters.purge(conn, s)
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {s} CASCADE"))
    drop_target(es, s)


@pytest.fixture()
def synced(store: Store) -> SyncSpec:
    """The store fully synced, with triggers on every table of the documents."""
    spec = store.spec()
    summary = run_sync(spec, servers=store.servers)
    assert summary.success and summary.indexed == 20, summary.error
    install_capture(store.engine, spec)
    return spec


def doctor(capsys, path: Path, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--config", str(path), "doctor", *extra])
    return code, capsys.readouterr().out


def drop_statements(out: str, spec: str) -> list[str]:
    """The DROP statements the doctor printed for the spec's capture functions."""
    found = re.findall(r"(DROP (?:TRIGGER|FUNCTION) IF EXISTS [^;]*;)", out)
    return [s for s in found if f"sync_pipeline_{spec}" in s]


# --- TRUNCATE ---------------------------------------------------------------------------------


def test_a_truncate_of_the_root_table_deletes_every_document_in_the_next_drain(store, synced):
    store.execute(f"TRUNCATE {store.schema}.products")
    assert store.buffered() == [("T", None)]  # one statement-level entry, for the root
    summary = run_drain(synced, servers=store.servers)
    # the reconciliation is counted in the drain's run, as the history shows it
    assert summary.success and summary.deleted == 20 and summary.failed == 0, summary.error
    assert store.docs() == {}
    assert store.buffered() == []
    store.assert_no_drift(synced)


def test_a_reload_truncate_then_insert_in_one_transaction_ends_as_the_new_rows(store, synced):
    s = store.schema
    store.execute(
        f"TRUNCATE {s}.products",
        f"INSERT INTO {s}.products SELECT g, 'reloaded ' || g, 10, now() FROM generate_series(101, 105) g",
    )
    assert store.buffered()[0] == ("T", None) and len(store.buffered()) == 6
    totals = drain(store.engine, store.es, synced)
    # one claim holds the TRUNCATE and the inserts: one full reconciliation covers them all
    assert totals.reconciled == 1 and totals.claimed == 6
    assert totals.deleted == 20 and totals.indexed == 5
    assert sorted(store.docs()) == ["101", "102", "103", "104", "105"]
    assert store.docs()["101"]["name"] == "reloaded 101"
    store.assert_no_drift(synced)


def test_a_truncate_of_a_related_table_reindexes_the_documents_without_its_rows(store, synced):
    assert [r["id"] for r in store.docs()["1"]["reviews"]] == [1, 2]
    store.execute(f"TRUNCATE {store.schema}.reviews")
    assert store.buffered() == [("T", "reviews")]  # the relation's source, as for its row changes
    summary = run_drain(synced, servers=store.servers)
    assert summary.success and summary.indexed == 2 and summary.deleted == 0, summary.error
    docs = store.docs()
    assert len(docs) == 20 and all(d["reviews"] == [] for d in docs.values())
    (row,) = run_history([synced], 1, store.servers.pg_url)
    assert row.job.endswith("_drain") and row.kind == "drain" and row.totals["indexed"] == 2
    store.assert_no_drift(synced)


def test_uninstall_removes_the_truncate_triggers_too(store):
    spec = store.spec()
    install_capture(store.engine, spec)
    install_capture(store.engine, spec)  # idempotent
    assert store.triggers() == 6  # a row trigger and a TRUNCATE trigger on each of three tables
    assert len(uninstall_capture(store.engine, spec)) == 3
    assert store.triggers() == 0
    store.execute(f"TRUNCATE {store.schema}.reviews", f"TRUNCATE {store.schema}.products")
    assert store.buffered() == []


# --- doctor -------------------------------------------------------------------------------------


def test_doctor_is_quiet_for_a_healthy_spec(store, synced, tmp_path, capsys):
    code, out = doctor(capsys, store.spec_file(tmp_path), "--spec", synced.name)
    assert code == 0, out
    assert "nothing needs action" in out


def test_doctor_prints_drop_statements_for_the_triggers_of_a_removed_spec(store, synced, tmp_path, capsys):
    other = store.spec_text().replace(f"name: {store.schema}", "name: other_spec", 1)
    code, out = doctor(capsys, store.spec_file(tmp_path, other))
    assert code == 1
    statements = drop_statements(out, store.schema)
    assert len([s for s in statements if s.startswith("DROP FUNCTION")]) == 3
    assert len([s for s in statements if s.startswith("DROP TRIGGER")]) == 6
    assert f'ON "{store.schema}"."reviews";' in out  # identifiers quoted, schema-qualified
    assert "not in the spec file" in out
    store.execute(*statements)  # exactly what was printed removes them
    assert store.triggers() == 0
    _, out = doctor(capsys, store.spec_file(tmp_path, other))
    assert drop_statements(out, store.schema) == []


def test_doctor_finds_the_trigger_of_a_table_the_spec_no_longer_watches(store, synced, tmp_path, capsys):
    path = store.spec_file(tmp_path, store.spec_text(reviews=False))
    code, out = doctor(capsys, path, "--spec", synced.name)
    assert code == 1
    assert "no longer watched" in out and "reviews" in out
    statements = drop_statements(out, store.schema)
    assert len(statements) == 3  # the reviews function: its row and TRUNCATE triggers, then it
    triggers = [s for s in statements if s.startswith("DROP TRIGGER")]
    assert len(triggers) == 2 and all(f'"{store.schema}"."reviews"' in s for s in triggers)
    store.execute(*statements)
    assert store.triggers() == 4
    code, out = doctor(capsys, path, "--spec", synced.name)
    assert "capture triggers: ok" in out, out
    # the index still maps the reviews the spec no longer has, which the next sync or drain stops
    # on (a dropped field is a conflict): doctor says so, with the rebuild that fixes it
    assert code == 1 and "index mappings: 1 needs action" in out and "reviews:" in out, out
    assert f"sync-pipeline rebuild --spec {synced.name}" in out


def test_doctor_flags_an_old_backlog_dead_letters_and_a_missing_index(store, synced, tmp_path, capsys):
    path = store.spec_file(tmp_path)
    name = synced.name
    store.execute(f"UPDATE {store.schema}.products SET name = 'changed' WHERE id = 1")
    code, out = doctor(capsys, path, "--spec", name)
    assert code == 0, out  # a fresh backlog is the sensor's business
    store.execute(
        f"UPDATE public.sync_pipeline_buffer SET changed_at = now() - interval '1 hour' WHERE spec = '{name}'"
    )
    code, out = doctor(capsys, path, "--spec", name)
    assert code == 1 and f"sync-pipeline flush --spec {name}" in out
    code, out = doctor(capsys, path, "--spec", name, "--backlog-minutes", "120")
    assert code == 0, out
    store.execute(f"DELETE FROM public.sync_pipeline_buffer WHERE spec = '{name}'")

    with store.engine.begin() as conn:
        deadletters.ensure_table(conn)
        conn.execute(
            deadletters.DEAD_LETTERS.insert(),
            {"spec": name, "doc_id": "1", "error": {"type": "mapper_parsing_exception"}},
        )
    code, out = doctor(capsys, path, "--spec", name)
    assert code == 1 and f"sync-pipeline dead-letters replay --spec {name}" in out
    with store.engine.begin() as conn:
        deadletters.purge(conn, name)

    drop_target(store.es, synced.target.index)
    code, out = doctor(capsys, path, "--spec", name)
    assert code == 1 and f"sync-pipeline sync --spec {name} --full" in out


def test_doctor_shows_the_backlog_of_a_spec_not_in_the_file(store, synced, tmp_path, capsys):
    store.execute(f"UPDATE {store.schema}.products SET name = 'changed' WHERE id = 1")
    other = store.spec_text().replace(f"name: {store.schema}", "name: other_spec", 1)
    code, out = doctor(capsys, store.spec_file(tmp_path, other))
    assert code == 1
    assert f"DELETE FROM public.sync_pipeline_buffer WHERE spec = '{store.schema}';" in out


def test_doctor_reports_a_table_whose_truncate_is_not_captured(store, synced, tmp_path, capsys):
    """Triggers installed before TRUNCATE was captured: install-triggers again adds it."""
    with store.engine.connect() as conn:
        name = conn.execute(
            sa.text(
                "SELECT t.tgname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
                "WHERE obj_description(p.oid, 'pg_proc') LIKE :m AND (t.tgtype::int & 32) <> 0"
            ),
            {"m": f"sync_pipeline capture of spec {store.schema}: table {store.schema}.reviews"},
        ).scalar_one()
    store.execute(f'DROP TRIGGER "{name}" ON {store.schema}.reviews')
    path = store.spec_file(tmp_path)
    code, out = doctor(capsys, path, "--spec", synced.name)
    assert code == 1 and "TRUNCATE" in out and f"sync-pipeline install-triggers --spec {synced.name}" in out
    assert main(["--config", str(path), "install-triggers", "--spec", synced.name]) == 0
    code, out = doctor(capsys, path, "--spec", synced.name)
    assert code == 0, out


def test_doctor_usage_errors_exit_2(store, tmp_path, capsys):
    path = store.spec_file(tmp_path)
    assert main(["--config", str(path), "doctor", "--backlog-minutes", "0"]) == 2
    assert main(["--config", str(path), "doctor", "--spec", "no_such_spec"]) == 2


def test_doctor_finds_a_watched_table_without_capture_and_the_earlier_layout(store, tmp_path, capsys):
    s = store.schema
    assert run_sync(store.spec(), servers=store.servers).success
    install_capture(store.engine, store.spec(reviews=False))  # installed before reviews were read
    store.execute(
        f"CREATE FUNCTION {s}.sync_pipeline_capture_{s}() RETURNS trigger LANGUAGE plpgsql "
        "AS $$BEGIN RETURN NULL; END$$",
        f"CREATE TRIGGER sync_pipeline_{s} AFTER INSERT ON {s}.products "
        f"FOR EACH ROW EXECUTE FUNCTION {s}.sync_pipeline_capture_{s}()",
    )
    path = store.spec_file(tmp_path)
    code, out = doctor(capsys, path, "--spec", s)
    assert code == 1
    assert "watched but not captured" in out and f"{s}.reviews" in out
    assert "earlier layout" in out and f"sync-pipeline uninstall-triggers --spec {s}" in out
    for command in ("uninstall-triggers", "install-triggers"):
        assert main(["--config", str(path), command, "--spec", s]) == 0
    code, out = doctor(capsys, path, "--spec", s)
    assert code == 0, out
    assert store.triggers() == 6
