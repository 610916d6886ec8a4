"""The `sync-pipeline` command as users run it: real processes, real servers, real exit codes."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from sync_pipeline_tests.support.cli import cli


def test_unreachable_postgres_is_a_clear_error_without_the_password(live):
    result = cli(
        "verify",
        env={
            "SYNC_PG_URL": "postgresql://sync:hunter2secret@127.0.0.1:1/nowhere",
            "SYNC_ES_URL": live.es_url,
        },
    )
    assert result.returncode == 2
    assert (
        "cannot connect to PostgreSQL at postgresql+psycopg://sync:***@127.0.0.1:1/nowhere" in result.stderr
    )
    assert "hunter2secret" not in result.stderr + result.stdout


def test_wrong_password_is_a_clear_error(live):
    url = live.pg_url.replace("sync:sync@", "sync:wrong-password@")
    result = cli("verify", env={"SYNC_PG_URL": url, "SYNC_ES_URL": live.es_url})
    assert result.returncode == 2
    assert "password authentication failed" in result.stderr
    assert "wrong-password" not in result.stderr


def test_unreachable_elasticsearch_is_a_clear_error(live):
    result = cli("verify", env={"SYNC_PG_URL": live.pg_url, "SYNC_ES_URL": "http://127.0.0.1:1"})
    assert result.returncode == 2
    assert "cannot connect to the search server at http://127.0.0.1:1" in result.stderr


def test_unknown_table_exits_2_naming_spec_and_table(scenario, tmp_path):
    config = scenario.spec_file(tmp_path, source="table: no_such_table")
    result = cli("--config", str(config), "verify")
    assert result.returncode == 2
    assert f"source of spec '{scenario.table}'" in result.stderr
    assert 'relation "no_such_table" does not exist' in result.stderr


def test_sync_and_verify_commands_exit_codes(scenario, insert_rows, tmp_path, es):
    insert_rows(range(1, 26), "2026-02-01 00:00:00+00")
    config = scenario.spec_file(tmp_path)

    synced = cli("--config", str(config), "sync", "--spec", scenario.table, "--full")
    assert synced.returncode == 0, synced.stderr
    assert "indexed" in synced.stdout and "succeeded" in synced.stdout

    clean = cli("--config", str(config), "verify")
    assert clean.returncode == 0 and "OK" in clean.stdout

    es.delete(index=scenario.index, id="5", refresh=True)
    drift = cli("--config", str(config), "verify", "--spec", scenario.table)
    assert drift.returncode == 1
    assert "DRIFT" in drift.stdout and "missing=1" in drift.stdout


def test_dagster_cli_materializes_one_partition(scenario, insert_rows, tmp_path, es):
    insert_rows(range(1, 6), "2026-03-05 10:00:00+00")
    insert_rows(range(6, 9), "2026-03-07 10:00:00+00")
    config = scenario.spec_file(tmp_path, grain="day", start="2026-03-01")
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-m",
            "sync_pipeline",
            "--select",
            f"{scenario.table}_extract*",
            "--partition",
            "2026-03-05",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env={**os.environ, "SYNC_CONFIG": str(config)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    es.indices.refresh(index=scenario.index)
    ids = sorted(int(h["_id"]) for h in es.search(index=scenario.index, size=100)["hits"]["hits"])
    assert ids == [1, 2, 3, 4, 5]


def test_services_env_prints_export_lines(live):
    result = cli("services", "env", module="sync_pipeline_devtools")
    assert result.returncode == 0
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith("export SYNC_PG_URL=") for line in lines)
    assert any(line.startswith("export SYNC_ES_URL=") for line in lines)


def test_secrets_never_reach_output_logs_or_dagster_metadata(scenario, insert_rows, tmp_path, live):
    secret = "Zq9-s3cr3t-Xv7"
    role = f"{scenario.table}_reader"
    scenario.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'")
    scenario.execute(f"GRANT SELECT ON {scenario.table} TO {role}")
    insert_rows(range(1, 6), "2026-02-01 00:00:00+00")
    url = live.pg_url.replace("sync:sync@", f"{role}:{secret}@")
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = scenario.spec_file(tmp_path)
    try:
        env = {"SYNC_PG_URL": url, "DAGSTER_HOME": str(home)}
        synced = cli("--config", str(config), "sync", "--spec", scenario.table, "--full", env=env)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        unreachable = url.replace(f":{urlsplit(url).port}/", ":1/")  # same secret, a port nobody listens on
        broken = cli("--config", str(config), "verify", env={**env, "SYNC_PG_URL": unreachable})
        assert broken.returncode == 2
        written = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
        for text in (synced.stdout, synced.stderr, broken.stdout, broken.stderr):
            assert secret not in text
        assert written and secret.encode() not in written  # run storage, event logs, compute logs
    finally:
        scenario.execute(f"REVOKE ALL ON {scenario.table} FROM {role}; DROP ROLE {role}")


def test_unknown_column_exits_2_naming_the_column(scenario, tmp_path):
    config = scenario.spec_file(tmp_path)
    config.write_text(config.read_text().replace("updated_at: updated_at", "updated_at: modified_on"))
    result = cli("--config", str(config), "sync", "--spec", scenario.table, "--full")
    assert result.returncode == 2
    assert "not found: ['modified_on']" in result.stderr and f"spec '{scenario.table}'" in result.stderr


def test_identifiers_that_try_sql_injection_are_quoted_and_harmless(scenario, insert_rows, tmp_path, pg):
    insert_rows([1], "2026-02-01 00:00:00+00")
    hostile = f'{scenario.table}\\"; DROP TABLE {scenario.table}; --'
    config = scenario.spec_file(tmp_path, source=f'table: "{hostile}"')
    result = cli("--config", str(config), "sync", "--spec", scenario.table, "--full")
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    with pg.connect() as conn:  # the table the "injection" named is still there, untouched
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {scenario.table}").scalar_one() == 1


def test_search_shows_the_top_hits_with_highlights(scenario, insert_rows, tmp_path, live):
    insert_rows([1, 2], "2026-02-01 00:00:00+00", title="青花瓷茶杯 blue teacup")
    insert_rows([3], "2026-02-01 00:00:00+00", title="garden hose")
    config = scenario.spec_file(tmp_path)
    env = {"SYNC_PG_URL": live.pg_url, "SYNC_ES_URL": live.es_url}
    assert cli("--config", str(config), "sync", "--spec", scenario.table, "--full", env=env).returncode == 0
    found = cli("--config", str(config), "search", "--spec", scenario.table, "teacup", env=env)
    assert found.returncode == 0, found.stderr
    assert "→ 2 hits" in found.stdout and "<em>teacup</em>" in found.stdout
    none = cli("--config", str(config), "search", "--spec", scenario.table, "piano", env=env)
    assert none.returncode == 1 and "→ 0 hits" in none.stdout
