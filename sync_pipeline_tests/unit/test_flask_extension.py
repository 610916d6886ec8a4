"""The Flask extension: `SyncPipeline(app)` / `init_app(app)` from `app.config`, environment as
the fallback, and an import light enough for a web worker.

No Dagster is needed: the webserver URL points at a port nobody listens on, so a route that
reaches Dagster answers 503 naming the URL it was configured with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask

from sync_pipeline.apps.flask import SyncBlueprintConfigError, SyncPipeline
from sync_pipeline_tests.conftest import free_port

TOKEN = "ext-token-7c1e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HEAVY = ("dagster", "pyarrow", "adbc_driver_manager", "adbc_driver_postgresql", "pandas")

# counts every lookup of `mallopt` on a C library loaded through ctypes, then imports `target`
_PROBE = """
import ctypes, json, sys
calls = []
class Spy(ctypes.CDLL):
    def __getattr__(self, name):
        if name == "mallopt":
            calls.append(name)
        return super().__getattr__(name)
ctypes.CDLL = Spy
import {target}
print(json.dumps({{"heavy": [m for m in {heavy!r} if m in sys.modules], "mallopt": calls}}))
"""


def probe(target: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(target=target, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYNC_PIPELINE_TUNE_MEMORY": "1"},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_extension_loads_no_dagster_arrow_or_adbc_and_tunes_no_allocator() -> None:
    loaded = probe("sync_pipeline.apps.flask")
    assert loaded == {"heavy": [], "mallopt": []}


def test_the_sync_side_still_tunes_the_allocator_when_it_is_imported() -> None:
    # the probe's control: the same spy sees mallopt when the server-facing layer loads
    assert probe("sync_pipeline.io")["mallopt"] == ["mallopt"]


@pytest.fixture()
def no_sync_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SYNC_API_TOKEN", "SYNC_CONFIG", "SYNC_DAGSTER_URL"):
        monkeypatch.delenv(name, raising=False)


def dead_dagster() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.usefixtures("no_sync_env")
def test_sync_pipeline_app_reads_token_config_and_dagster_url_from_app_config(spec_file: Path) -> None:
    url = dead_dagster()
    app = Flask("ext_app_config")
    app.config.update(
        SYNC_PIPELINE_API_TOKEN=TOKEN, SYNC_PIPELINE_CONFIG=str(spec_file), SYNC_PIPELINE_DAGSTER_URL=url
    )
    ext = SyncPipeline(app)
    assert app.extensions["sync_pipeline"] is ext
    client = app.test_client()

    assert client.get("/sync/runs").status_code == 401
    unknown = client.post("/sync/nope/flush", headers=AUTH)
    assert (unknown.status_code, unknown.get_json()["known_specs"]) == (404, ["shop"])
    down = client.get("/sync/runs?spec=shop", headers=AUTH)
    assert (down.status_code, down.get_json()["dagster_url"]) == (503, url)
    # the full sync computes its partitions in the handler: still 503, not an import failure
    assert client.post("/sync/shop/full", headers=AUTH).status_code == 503


@pytest.mark.usefixtures("no_sync_env")
def test_init_app_falls_back_to_the_environment(spec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = dead_dagster()
    monkeypatch.setenv("SYNC_API_TOKEN", TOKEN)
    monkeypatch.setenv("SYNC_CONFIG", str(spec_file))
    monkeypatch.setenv("SYNC_DAGSTER_URL", url)
    ext = SyncPipeline()
    app = Flask("ext_factory")
    ext.init_app(app)
    client = app.test_client()

    assert client.get("/sync/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    down = client.get("/sync/runs", headers=AUTH)
    assert (down.status_code, down.get_json()["dagster_url"]) == (503, url)


@pytest.mark.usefixtures("no_sync_env")
def test_app_config_wins_over_the_environment_and_the_prefix_is_configurable(
    spec_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_API_TOKEN", "from-the-environment")
    app = Flask("ext_precedence")
    app.config.update(
        SYNC_PIPELINE_API_TOKEN=TOKEN,
        SYNC_PIPELINE_CONFIG=str(spec_file),
        SYNC_PIPELINE_DAGSTER_URL=dead_dagster(),
        SYNC_PIPELINE_URL_PREFIX="/ops/sync",
    )
    SyncPipeline(app)
    client = app.test_client()

    from_env = {"Authorization": "Bearer from-the-environment"}
    assert client.get("/ops/sync/runs", headers=from_env).status_code == 401
    assert client.get("/ops/sync/runs", headers=AUTH).status_code == 503
    assert client.get("/sync/runs", headers=AUTH).status_code == 404


@pytest.mark.usefixtures("no_sync_env")
def test_init_app_without_a_token_names_the_config_key_and_the_variable(spec_file: Path) -> None:
    app = Flask("ext_no_token")
    app.config["SYNC_PIPELINE_CONFIG"] = str(spec_file)
    with pytest.raises(SyncBlueprintConfigError, match=r"SYNC_PIPELINE_API_TOKEN.*SYNC_API_TOKEN"):
        SyncPipeline(app)
    assert "sync_pipeline" not in app.extensions


@pytest.mark.parametrize("timeout", ["soon", 0, -5])
@pytest.mark.usefixtures("no_sync_env")
def test_a_bad_timeout_names_the_config_key(spec_file: Path, timeout: object) -> None:
    app = Flask("ext_bad_timeout")
    app.config.update(
        SYNC_PIPELINE_API_TOKEN=TOKEN, SYNC_PIPELINE_CONFIG=str(spec_file), SYNC_PIPELINE_TIMEOUT=timeout
    )
    with pytest.raises(SyncBlueprintConfigError, match=r"SYNC_PIPELINE_TIMEOUT.*seconds > 0"):
        SyncPipeline(app)
