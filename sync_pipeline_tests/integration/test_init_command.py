"""`sync-pipeline init` (issue 31, item 2) and what the wheel must carry for it (item 1): the starter
project's three files, the refusal to overwrite, the spec read from a database's catalog, and every
import of the runtime declared as a dependency."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from sync_pipeline.apps import cli
from sync_pipeline.core.spec.model import parse_specs


def test_init_from_database_reads_the_tables_named(live, pg, tmp_path, monkeypatch, capsys):
    schema = f"s_{uuid.uuid4().hex[:10]}"
    with pg.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        conn.execute(sa.text(f"CREATE TABLE {schema}.authors (id int PRIMARY KEY, name text)"))
        conn.execute(
            sa.text(
                f"CREATE TABLE {schema}.books (isbn text PRIMARY KEY, title text, "
                f"author_id int REFERENCES {schema}.authors (id), modified_at timestamptz NOT NULL)"
            )
        )
    monkeypatch.chdir(tmp_path)
    try:
        assert cli.main(["init", "--from-database", f"{schema}.books", f"{schema}.nope"]) == 2
        assert f"no table {schema}.nope in PostgreSQL at" in capsys.readouterr().err
        assert not list(tmp_path.iterdir())
        assert cli.main(["init", "--from-database", f"{schema}.books"]) == 0
    finally:
        with pg.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    (books,) = parse_specs((tmp_path / "sync.yaml").read_text())
    assert (books.name, books.source.table) == ("books", f"{schema}.books")
    assert books.source.primary_key == ["isbn"]
    assert books.source.updated_at == "modified_at"
    (author,) = books.source.relations
    assert (author.name, author.table, author.on, author.columns) == (
        "author", f"{schema}.authors", {"id": "author_id"}, ["name"]
    )  # fmt: skip
    assert cli.main(["validate", "--offline"]) == 0
