"""The CLI never picks a server, a spec file or a destructive action for the user.

An unset SYNC_PG_URL with SYNC_ES_URL set used to start (and, as root, apt-install) a local
PostgreSQL: `verify --fix` would then have compared a production index with an empty local
database and deleted its documents. Now only `--local` starts the project's dev services, a
missing spec file is an error, and what deletes asks first (or takes --yes).
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from sync_pipeline_tests.support.cli_safety import cli
from sync_pipeline_tests.support.paths import ROOT

DEVTOOL = "sync_pipeline_devtools"  # the checkout's dev tool: the product's CLI + services and demo


@pytest.mark.parametrize(
    "command",
    [
        ["rebuild", "--spec", "{spec}"],
        ["dead-letters", "purge", "--spec", "{spec}"],
        ["purge", "--spec", "{spec}", "--older-than-days", "0"],
    ],
    ids=["rebuild", "dead-letters purge", "purge"],
)
def test_destructive_commands_without_a_terminal_need_yes(scenario, insert_rows, live, tmp_path, command):
    insert_rows(range(1, 4), "2026-02-01 00:00:00+00")
    config = scenario.spec_file(tmp_path)
    env = {"SYNC_PG_URL": live.pg_url, "SYNC_ES_URL": live.es_url, "SYNC_STAGING_DIR": str(tmp_path / "st")}
    args = [part.format(spec=scenario.table) for part in command]
    refused = cli("--config", str(config), *args, env=env)
    assert refused.returncode == 2 and "pass --yes to confirm" in refused.stderr, refused.stderr
    assert "nothing was changed" in refused.stderr
    if command[0] == "rebuild":
        assert not scenario.es.indices.exists(index=scenario.index)  # nothing was built
        assert (
            cli("--config", str(config), "sync", "--spec", scenario.table, "--full", env=env).returncode == 0
        )
    confirmed = cli("--config", str(config), *args, "--yes", env=env)
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr


def test_verify_fix_asks_before_changing_more_documents_than_it_may_unasked(
    scenario, insert_rows, live, tmp_path
):
    """Pointed at a database that lacks what the index holds, a fix would delete it all: above
    1,000 documents to change, it shows the drift and asks."""
    from sync_pipeline.apps.cli.parser import FIX_WITHOUT_ASKING

    insert_rows(range(1, FIX_WITHOUT_ASKING + 11), "2026-02-01 00:00:00+00")
    config = scenario.spec_file(tmp_path, batch_size="500")
    env = {"SYNC_PG_URL": live.pg_url, "SYNC_ES_URL": live.es_url, "SYNC_STAGING_DIR": str(tmp_path / "st")}
    assert cli("--config", str(config), "sync", "--spec", scenario.table, "--full", env=env).returncode == 0
    scenario.execute(f"DELETE FROM {scenario.table}")
    refused = cli("--config", str(config), "verify", "--fix", env=env)
    assert refused.returncode == 2 and f"{FIX_WITHOUT_ASKING + 10:,} documents" in refused.stderr
    scenario.es.indices.refresh(index=scenario.index)
    assert scenario.es.count(index=scenario.index)["count"] == FIX_WITHOUT_ASKING + 10  # untouched
    fixed = cli("--config", str(config), "verify", "--fix", "--yes", env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "after fix: " in fixed.stdout and "OK" in fixed.stdout.split("after fix: ", 1)[1]


def test_demo_refuses_a_schema_it_did_not_create_and_an_index_not_ours(live, pg, es, tmp_path):
    from sync_pipeline_devtools.demo import SCHEMA

    env = {"SYNC_PG_URL": live.pg_url, "SYNC_ES_URL": live.es_url}
    with pg.begin() as conn:
        marker = conn.execute(
            sa.text("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = :s"),
            {"s": SCHEMA},
        ).first()
        aside = f"{SCHEMA}_{uuid.uuid4().hex[:6]}"
        if marker is not None:  # an earlier demo's, set aside for the test
            conn.execute(sa.text(f"ALTER SCHEMA {SCHEMA} RENAME TO {aside}"))
        conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
        conn.execute(sa.text(f"CREATE TABLE {SCHEMA}.products (id int PRIMARY KEY, precious text)"))
    try:
        result = cli("demo", "--rows", "100", env=env, module=DEVTOOL)
        assert result.returncode == 2 and "was not created by the demo" in result.stderr, result.stderr
        with pg.connect() as conn:
            assert conn.execute(sa.text(f"SELECT count(*) FROM {SCHEMA}.products")).scalar() == 0  # kept
    finally:
        with pg.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {SCHEMA} CASCADE"))
            if marker is not None:
                conn.execute(sa.text(f"ALTER SCHEMA {aside} RENAME TO {SCHEMA}"))
    # an index named like the demo's, made by somebody else: not deleted
    index = f"demo_{uuid.uuid4().hex[:8]}"
    config = tmp_path / "sync.yaml"
    config.write_text((ROOT / "sync.yaml").read_text().replace("index: products", f"index: {index}"))
    es.indices.create(index=index, mappings={"properties": {"precious": {"type": "keyword"}}})
    try:
        result = cli(
            "--config", str(config), "demo", "--rows", "100", env=env, module="sync_pipeline_devtools"
        )
        assert result.returncode == 2 and "was not made by sync_pipeline" in result.stderr, result.stderr
        assert es.indices.exists(index=index)
    finally:
        es.indices.delete(index=index)
