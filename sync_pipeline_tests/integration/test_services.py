"""The local PostgreSQL + Elasticsearch services (sync_pipeline_devtools.services).

These tests start the real services (shared with other tests: nothing here calls down()).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import pytest

from sync_pipeline_devtools import services


@pytest.fixture(scope="module")
def local_urls() -> services.ServiceUrls:
    return services.up()


def _pg_scalar(url: str, sql: str) -> str:
    try:
        import psycopg
    except ImportError:  # the venv normally has psycopg 3; fall back to the psql binary
        psql = services.find_pg_bin_dir() / "psql"
        env = {**os.environ, "PGPASSWORD": services.PG_PASSWORD, "PGCONNECT_TIMEOUT": "10"}
        proc = subprocess.run(
            [str(psql), url, "-X", "-A", "-t", "-c", sql], capture_output=True, text=True, env=env, check=True
        )
        return proc.stdout.strip()
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return str(row[0])


def _es_health(url: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{url}/_cluster/health", timeout=10) as response:
        return json.loads(response.read())


def test_up_serves_postgres_and_elasticsearch(local_urls: services.ServiceUrls) -> None:
    assert local_urls == services.local_urls()
    assert local_urls.pg_url == (f"postgresql://sync:sync@127.0.0.1:{services.pg_port()}/sync_pipeline")
    assert local_urls.es_url == f"http://127.0.0.1:{services.es_port()}"

    assert _pg_scalar(local_urls.pg_url, "SELECT current_user || '@' || current_database()") == (
        "sync@sync_pipeline"
    )
    assert _es_health(local_urls.es_url)["status"] in ("yellow", "green")

    state = services.status()
    assert state["postgresql"].startswith("running on 127.0.0.1:")
    assert state["elasticsearch"].startswith("running on 127.0.0.1:")


def test_postgres_requires_the_password(local_urls: services.ServiceUrls) -> None:
    psql = services.find_pg_bin_dir() / "psql"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = "not-the-password"
    bad = local_urls.pg_url.replace("sync:sync@", "sync@")
    proc = subprocess.run([str(psql), bad, "-X", "-c", "SELECT 1"], capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    assert "password authentication failed" in proc.stderr


def test_second_up_is_a_fast_noop(local_urls: services.ServiceUrls) -> None:
    started = time.monotonic()
    again = services.up()
    elapsed = time.monotonic() - started
    assert again == local_urls
    assert elapsed < 5, f"warm up() took {elapsed:.1f}s"
    assert _es_health(again.es_url)["status"] in ("yellow", "green")


# `status` asks the local servers
def test_cli_env_and_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert services.main(["env"]) == 0
    assert capsys.readouterr().out.splitlines() == services.env_lines()
    assert services.main(["status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("postgresql: ") and "\nelasticsearch: " in out
