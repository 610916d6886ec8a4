"""The two things a new user sees first: `demo` and the Dagster UI's asset graph."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sync_pipeline_tests.conftest import free_port
from sync_pipeline_tests.support.paths import ROOT


def test_demo_seeds_syncs_and_verifies_clean(live):
    result = subprocess.run(
        [sys.executable, "-m", "sync_pipeline_devtools", "demo", "--rows", "3000"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "seeded 3,000 products" in result.stdout
    assert "products → products: OK" in result.stdout
    summary = result.stdout.split("docs in ES", 1)[1]
    assert "succeeded" in summary
    # the closing search: the multi-field mapping answers, with highlights
    search = result.stdout.split("products: '青花瓷茶杯' → ", 1)[1]
    assert "<em>" in search and "name: " in search


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_webserver_loads_the_code_location_with_the_asset_graph(live, tmp_path):
    port = free_port()
    log = (tmp_path / "webserver.log").open("w")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            str(ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                assert server.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "webserver did not start in 120 s"
                time.sleep(1)
        nodes = _graphql(
            port,
            "{ assetNodes { assetKey { path } groupName kinds dependencyKeys { path } "
            "partitionDefinition { description } } }",
        )["data"]["assetNodes"]
        by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        assert {"products_extract", "products_documents", "products_index"} <= set(by_key)
        assert by_key["products_index"]["dependencyKeys"] == [{"path": ["products_documents"]}]
        assert set(by_key["products_extract"]["kinds"]) == {"postgres", "parquet"}
        assert by_key["products_extract"]["groupName"] == "products"
        assert by_key["products_extract"]["partitionDefinition"] is not None
        locations = _graphql(
            port,
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
            "locationOrLoadError { __typename } } } } }",
        )["data"]["workspaceOrError"]["locationEntries"]
        assert [(e["name"], e["locationOrLoadError"]["__typename"]) for e in locations] == [
            ("sync_pipeline", "RepositoryLocation")
        ]
    finally:
        server.terminate()
        server.wait(timeout=30)
