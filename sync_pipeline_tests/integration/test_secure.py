"""Servers as users run them: Elasticsearch with security and HTTPS on, least-privilege identities
(real servers: the secured local node from `services up --secure`, the local PostgreSQL)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import uuid

import certifi
import pytest
import sqlalchemy as sa
import yaml

from sync_pipeline.apps.cli import main
from sync_pipeline.core.cdc.grants import read_tables
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io import deadletters
from sync_pipeline.io.search import SearchApiError, search_client
from sync_pipeline.io.search.indices import drop_target
from sync_pipeline.ops.capture import uninstall_capture
from sync_pipeline.settings import ElasticsearchOptions
from sync_pipeline_devtools.services import secure_es
from sync_pipeline_devtools.services.runtime import _known_runtime_dir


def secure_env(node, **overrides: str) -> dict[str, str]:
    return {
        "SYNC_ES_URL": node.es_url,
        "SYNC_ES_USERNAME": node.username,
        "SYNC_ES_PASSWORD": node.password,
        "SYNC_ES_CA_CERTS": str(node.ca_certs),
    } | overrides


def run(monkeypatch, capsys, env: dict[str, str], *args: str) -> tuple[int, str]:
    with monkeypatch.context() as patched:
        for name, value in env.items():
            if value:
                patched.setenv(name, value)
            else:
                patched.delenv(name, raising=False)
        code = main(list(args))
    out, err = capsys.readouterr()
    return code, out + err


def secure_client(node, username: str | None = None, password: str | None = None):
    options = ElasticsearchOptions(
        username=username or node.username, password=password or node.password, ca_certs=str(node.ca_certs)
    )
    return search_client(node.es_url, options=options)


@pytest.fixture()
def secured(scenario, secure_node):
    yield scenario
    drop_target(secure_client(secure_node), scenario.index)
    with scenario.engine.begin() as conn:
        deadletters.purge(conn, scenario.table)


def test_sync_drain_verify_dead_letters_and_rebuild_over_https_with_credentials(
    secured, insert_rows, secure_node, tmp_path, monkeypatch, capsys
):
    scenario = secured
    insert_rows(range(1, 41), "2026-02-01 00:00:00+00", title=" 42 ")
    insert_rows([41], "2026-02-01 00:00:00+00", title="not a number")
    config = tmp_path / "sync.yaml"
    config.write_text(
        scenario.spec_text().replace("title: {cleanse: [trim, empty_to_null]}", "title: {type: integer}")
    )
    env = secure_env(secure_node)
    base = ("--config", str(config))
    code, out = run(monkeypatch, capsys, env, *base, "sync", "--spec", scenario.table, "--full")
    assert code == 1 and "dead letters" in out, out  # one refused document, kept
    assert run(monkeypatch, capsys, env, *base, "install-triggers", "--spec", scenario.table)[0] == 0
    scenario.execute(f"UPDATE {scenario.table} SET title = '7' WHERE id = 41")  # fixed at the source
    scenario.execute(f"DELETE FROM {scenario.table} WHERE id = 1")
    assert run(monkeypatch, capsys, env, *base, "flush", "--spec", scenario.table)[0] == 0
    code, out = run(monkeypatch, capsys, env, *base, "dead-letters", "replay", "--spec", scenario.table)
    assert code == 0, out
    code, out = run(monkeypatch, capsys, env, *base, "verify", "--spec", scenario.table)
    assert code == 0 and "OK  postgres=40 index=40" in out, out
    code, out = run(monkeypatch, capsys, env, *base, "rebuild", "--yes", "--spec", scenario.table)
    assert code == 0, out
    es = secure_client(secure_node)
    assert es.indices.get_alias(name=scenario.index).body.keys() == {f"{scenario.index}_v2"}
    assert run(monkeypatch, capsys, env, *base, "verify", "--spec", scenario.table)[0] == 0
    uninstall_capture(scenario.engine, scenario.spec())


def test_connection_mistakes_are_one_line_errors_naming_the_server_and_exit_2(
    scenario, secure_node, live, tmp_path, monkeypatch, capsys
):
    config_args = ("--config", str(scenario.spec_file(tmp_path)), "verify")
    url = secure_node.es_url
    cases = {
        "wrong password": (
            secure_env(secure_node, SYNC_ES_PASSWORD="not-it"),
            "refused the credentials of SYNC_ES_USERNAME/SYNC_ES_PASSWORD",
        ),
        "no credentials": (
            secure_env(secure_node, SYNC_ES_USERNAME="", SYNC_ES_PASSWORD=""),
            "wants credentials: set SYNC_ES_API_KEY",
        ),
        "CA that did not sign it": (
            secure_env(secure_node, SYNC_ES_CA_CERTS=certifi.where()),
            "TLS certificate is not trusted by SYNC_ES_CA_CERTS=",
        ),
        "plain HTTP against HTTPS": (
            secure_env(secure_node, SYNC_ES_URL=url.replace("https://", "http://")),
            "closed the connection: it probably wants HTTPS",
        ),
        "HTTPS against plain HTTP": (
            secure_env(secure_node, SYNC_ES_URL=live.es_url.replace("http://", "https://")),
            "does not speak HTTPS",
        ),
    }
    for what, (env, expected) in cases.items():
        code, out = run(monkeypatch, capsys, env, *config_args)
        lines = [line for line in out.splitlines() if line.strip()]
        assert code == 2, (what, out)
        assert (
            len(lines) == 1
            and lines[0].startswith("sync-pipeline: the search server at ")
            and expected in lines[0]
        ), (what, out)
        assert secure_node.password not in out


def _grants_output(monkeypatch, capsys, config, spec_name: str, es_role: str, pg_role: str) -> str:
    code, out = run(
        monkeypatch,
        capsys,
        {},
        "--config",
        str(config),
        "grants",
        "--spec",
        spec_name,
        "--es-role",
        es_role,
        "--pg-role",
        pg_role,
    )
    assert code == 0, out
    return out


def _wait_authenticates(node, user: str, password: str) -> None:
    paths, _ = secure_es.secure_admin(_known_runtime_dir())
    deadline = time.monotonic() + 30
    while True:
        try:
            secure_es.request(paths, "GET", "/_security/_authenticate", secure_es.basic(user, password))
            return
        except urllib.error.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # the file realm is reloaded every few seconds


def test_the_printed_grants_are_enough_for_sync_drain_and_rebuild_and_a_missing_one_is_named(
    secured, insert_rows, secure_node, live, tmp_path, monkeypatch, capsys
):
    scenario = secured
    insert_rows(range(1, 21), "2026-02-01 00:00:00+00")
    config = scenario.spec_file(tmp_path)
    suffix = uuid.uuid4().hex[:6]
    es_role, pg_role, es_user = f"least_{suffix}", f"least_{suffix}", f"least_{suffix}"
    printed = _grants_output(monkeypatch, capsys, config, scenario.table, es_role, pg_role)

    # PostgreSQL: the owner-only step as the owner, then every printed GRANT for a login role
    owner_env = {"SYNC_PG_URL": live.pg_url, **secure_env(secure_node)}
    assert (
        run(
            monkeypatch,
            capsys,
            owner_env,
            "--config",
            str(config),
            "install-triggers",
            "--spec",
            scenario.table,
        )[0]
        == 0
    )
    password, app = uuid.uuid4().hex, f"app_{suffix}"
    scenario.execute(f"CREATE ROLE {pg_role} LOGIN PASSWORD '{password}'")
    scenario.execute(f"CREATE ROLE {app} LOGIN PASSWORD '{password}'")
    grants = [line for line in printed.splitlines() if line.startswith("GRANT ")]
    assert {"sync_pipeline_buffer", "sync_pipeline_dead_letters"} <= {
        w for g in grants for w in re.findall(r"sync_pipeline_\w+", g)
    }
    for statement in grants:
        scenario.execute(statement)
    # Elasticsearch: the printed role, as a file-based role, for a user that holds only it
    role = json.loads(printed.splitlines()[printed.splitlines().index(f"PUT _security/role/{es_role}") + 1])
    assert role["indices"][0]["names"] == [scenario.index, f"/{scenario.index}_v[0-9]+/"]
    es_password = uuid.uuid4().hex
    secure_es.add_role(_known_runtime_dir(), es_role, f"  {json.dumps(role)}\n", es_user, es_password)
    _wait_authenticates(secure_node, es_user, es_password)
    least = secure_env(
        secure_node,
        SYNC_PG_URL=live.pg_url.replace("sync:sync@", f"{pg_role}:{password}@"),
        SYNC_ES_USERNAME=es_user,
        SYNC_ES_PASSWORD=es_password,
    )
    try:
        base = ("--config", str(config))
        # the CLI's default instance (./.dagster_home, no SYNC_DAGSTER_PG_URL): the run history goes
        # to SQLite files there, nothing is created in the source database (the role may not)
        with monkeypatch.context() as default_home:
            default_home.delenv("DAGSTER_HOME", raising=False)
            default_home.delenv("SYNC_DAGSTER_PG_URL", raising=False)
            default_home.chdir(tmp_path)
            code, out = run(monkeypatch, capsys, least, *base, "sync", "--spec", scenario.table, "--full")
            assert code == 0, out
        instance = yaml.safe_load((tmp_path / ".dagster_home" / "dagster.yaml").read_text())
        assert list(instance["storage"]) == ["sqlite"]
        # an application role with rights on its own table only: its writes go through the triggers
        scenario.execute(f"GRANT SELECT, UPDATE ON {scenario.table} TO {app}")
        app_engine = sa.create_engine(
            live.pg_url.replace("postgresql://", "postgresql+psycopg://").replace(
                "sync:sync@", f"{app}:{password}@"
            )
        )
        with app_engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {scenario.table} SET title = 'by the app' WHERE id = 3"))
        app_engine.dispose()
        assert run(monkeypatch, capsys, least, *base, "flush", "--spec", scenario.table)[0] == 0
        assert run(monkeypatch, capsys, least, *base, "rebuild", "--yes", "--spec", scenario.table)[0] == 0
        code, out = run(monkeypatch, capsys, least, *base, "verify", "--spec", scenario.table)
        assert code == 0, out
        doc = secure_client(secure_node).get(index=scenario.index, id="3")["_source"]
        assert doc["title"] == "by the app"
        # the versioned indexes are <index>_v<digits>, and nothing else that starts like them
        as_least = secure_client(secure_node, es_user, es_password)
        with pytest.raises(SearchApiError) as refused:
            as_least.indices.create(index=f"{scenario.index}_vendors")
        assert refused.value.status_code == 403
        as_least.indices.create(index=f"{scenario.index}_v900")
        as_least.indices.delete(index=f"{scenario.index}_v900")
        # a privilege taken away is named: the index another spec would write is not this role's
        other = config.read_text().replace(f"index: {scenario.index}", f"index: other_{suffix}")
        config.write_text(other)
        code, out = run(monkeypatch, capsys, least, *base, "sync", "--spec", scenario.table, "--full")
        assert code == 2 and "denied a privilege to the credentials" in out, out
        scenario.execute(f"REVOKE SELECT ON {scenario.table} FROM {pg_role}")
        code, out = run(monkeypatch, capsys, least, *base, "verify", "--spec", scenario.table)
        assert code == 2 and "permission denied" in out and scenario.table in out, out
    finally:
        uninstall_capture(scenario.engine, scenario.spec())
        for name in (pg_role, app):
            scenario.execute(
                f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {name}; REVOKE USAGE ON SCHEMA public "
                f"FROM {name}; REVOKE pg_read_all_stats FROM {name}; DROP ROLE {name}"
            )
    assert read_tables(parse_specs(config.read_text())[0]) == [scenario.table]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sync_pipeline.apps.cli", *args],
        capture_output=True,
        text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("SYNC_ES_")}, **env},
        timeout=600,
    )


def test_no_new_secret_reaches_output_logs_run_storage_or_errors(
    secured, insert_rows, secure_node, live, tmp_path
):
    """The secrets test of test_cli.py, for every credential setting added since: the secure node's
    password, a PostgreSQL password given apart from the URL, an API key and a bearer token."""
    scenario = secured
    insert_rows(range(1, 6), "2026-02-01 00:00:00+00")
    pg_secret, api_key, token = "Pg-Zq9-s3cr3t", "QXBpLUtleS1zM2NyM3Q=", "Bearer-Tok-s3cr3t"
    role = f"{scenario.table}_secret"
    scenario.execute(
        f"CREATE ROLE {role} LOGIN PASSWORD '{pg_secret}'; GRANT SELECT ON {scenario.table} TO {role}"
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = scenario.spec_file(tmp_path)
    user_only = live.pg_url.replace("sync:sync@", f"{role}@")
    base = {"DAGSTER_HOME": str(home), "SYNC_PG_URL": user_only, "SYNC_PG_PASSWORD": pg_secret}
    try:
        runs = [
            cli(
                "--config",
                str(config),
                "sync",
                "--spec",
                scenario.table,
                "--full",
                env={**base, **secure_env(secure_node)},
            ),
            # an unsecured node ignores credentials: the key and the token travel, and must not leak
            cli(
                "--config",
                str(config),
                "verify",
                env={**base, "SYNC_ES_URL": live.es_url, "SYNC_ES_API_KEY": api_key},
            ),
            cli(
                "--config",
                str(config),
                "verify",
                env={**base, "SYNC_ES_URL": live.es_url, "SYNC_ES_BEARER_TOKEN": token},
            ),
            cli(
                "--config",
                str(config),
                "verify",
                env={**base, **secure_env(secure_node, SYNC_ES_CA_CERTS=certifi.where())},
            ),
        ]
        # the verifies against the unsecured node find no index there (drift, exit 1): they ran
        assert [r.returncode for r in runs] == [0, 1, 1, 2], [
            r.stdout[-1500:] + r.stderr[-1500:] for r in runs
        ]
        assert all("missing=5" in r.stdout for r in runs[1:3])
        written = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
        assert written
        for secret in (secure_node.password, pg_secret, api_key, token):
            for result in runs:
                assert secret not in result.stdout + result.stderr
            assert secret.encode() not in written  # run storage, event logs, compute logs
    finally:
        scenario.execute(f"REVOKE ALL ON {scenario.table} FROM {role}; DROP ROLE {role}")


def test_a_verify_full_postgres_url_carries_every_connection_and_a_wrong_root_is_refused(
    scenario, insert_rows, live, tmp_path, monkeypatch, capsys
):
    import adbc_driver_postgresql.dbapi

    from sync_pipeline.io.postgres import libpq_url
    from sync_pipeline_devtools import services

    insert_rows(range(1, 11), "2026-02-01 00:00:00+00")
    config = scenario.spec_file(tmp_path)
    tls = f"{live.pg_url}?sslmode=verify-full&sslrootcert={services.pg_root_cert()}"
    env = {"SYNC_PG_URL": tls, "SYNC_ES_URL": live.es_url}
    code, out = run(
        monkeypatch, capsys, env, "--config", str(config), "sync", "--spec", scenario.table, "--full"
    )
    assert code == 0, out
    assert run(monkeypatch, capsys, env, "--config", str(config), "verify", "--spec", scenario.table)[0] == 0
    # the COPY path (ADBC, libpq) keeps the URL's TLS settings, as SQLAlchemy's does
    with adbc_driver_postgresql.dbapi.connect(libpq_url(tls)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cursor.fetchone() == (True,)
    wrong = {**env, "SYNC_PG_URL": f"{live.pg_url}?sslmode=verify-full&sslrootcert={certifi.where()}"}
    code, out = run(monkeypatch, capsys, wrong, "--config", str(config), "verify", "--spec", scenario.table)
    assert code == 2 and "cannot connect to PostgreSQL at" in out and "certificate verify failed" in out, out
    assert ":sync@" not in out  # the password is masked


def test_the_ui_path_runs_a_sync_through_the_webserver_and_daemon_against_the_secured_node(
    secure_node, service_urls, tmp_path
):
    """What the UI's Materialize does (a GraphQL launch, the daemon's run worker), with the
    webserver, the daemon and the run all configured from SYNC_ES_* for the HTTPS node."""
    from sync_pipeline.apps import dagster_api
    from sync_pipeline_tests.support.dagster_api import RUN_TIMEOUT, DagsterStack, month_day

    env = {k: v for k, v in secure_env(secure_node).items() if k != "SYNC_ES_URL"}
    stack = DagsterStack(tmp_path, service_urls.pg_url, secure_node.es_url, env, secure_client(secure_node))
    try:
        stack.up()
        spec, keys = stack.spec("api"), stack.partition_keys("api")
        stack.insert("api", range(1, 31), month_day(keys[1]))
        run_id = dagster_api.launch_full_sync(stack.url, spec, run_config=dagster_api.IN_PROCESS)
        assert dagster_api.wait_for_run(stack.url, run_id, timeout=RUN_TIMEOUT) == "SUCCESS", stack.logs()
        assert len(stack.documents("api")) == 30
        report = dagster_api.run_report(stack.url, run_id)
        assert secure_node.password not in str(report) + stack.logs()
    finally:
        stack.down()
