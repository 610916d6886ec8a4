"""The Dagster UI and daemon as a user meets them: a real webserver + daemon (`dagster dev`),
driven by Debian's headless Chromium through Playwright; screenshots land in test-artifacts/."""

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io.buffer import BUFFER
from sync_pipeline.io.postgres import engine_for
from sync_pipeline.io.search import search_client
from sync_pipeline.io.search.indices import drop_target
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline_devtools.browser import BrowserUnavailable, find_or_install_chromium
from sync_pipeline_tests.conftest import free_port, stop_process_groups
from sync_pipeline_tests.conftest import wait_until as _wait
from sync_pipeline_tests.support.paths import ROOT

ARTIFACTS = ROOT / "test-artifacts"


def _graphql(base: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{base}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def ui(service_urls, tmp_path_factory):
    """`dagster dev` (webserver + daemon) on a throwaway table, DAGSTER_HOME and staging dir."""
    name = f"ui_{uuid.uuid4().hex[:8]}"
    engine, es = engine_for(service_urls.pg_url), search_client(service_urls.es_url)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=10), today - timedelta(days=9)]
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {name} (id int PRIMARY KEY, title text, updated_at timestamptz)"))
        conn.execute(
            sa.text(f"INSERT INTO {name} VALUES (:id, :title, :at)"),
            [
                {"id": i, "title": f"row {i}", "at": days[i % 2] + timedelta(hours=i % 20)}
                for i in range(1, 41)
            ],
        )
    home = tmp_path_factory.mktemp("ui_home")
    config = home / "sync.yaml"
    config.write_text(
        f"""specs:
  - name: {name}
    source: {{table: {name}, primary_key: id, updated_at: updated_at}}
    target: {{index: {name}}}
    partitions: {{grain: day, start: "{(today - timedelta(days=30)):%Y-%m-%d}"}}
    buffer_sensor: {{min_changes: 1, max_wait_seconds: 1, interval_seconds: 2, follow_seconds: 0}}
    schedule: {{catch_up: false}}
"""
    )
    # create the SQLite storage before the webserver and the daemon race to create it
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SYNC_CONFIG": str(config),
        "SYNC_STAGING_DIR": str(home / "staging"),
        "SYNC_PG_URL": service_urls.pg_url,
        "SYNC_ES_URL": service_urls.es_url,
    }
    log = (home / "dagster-dev.log").open("w")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-w",
            str(ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.poll() is None, (home / "dagster-dev.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=5):
                return True
        except OSError:
            return False

    try:
        _wait(up, 180, "dagster dev")
        spec = parse_specs(config.read_text())[0]
        yield {"base": base, "spec": spec, "engine": engine, "es": es, "days": days, "home": home}
    finally:
        stop_process_groups([server], grace=60)
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
            conn.execute(BUFFER.delete().where(BUFFER.c.spec == name))
        drop_target(es, name)


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    try:
        chromium = find_or_install_chromium()  # as root: apt-get install chromium on first use
    except BrowserUnavailable as exc:
        if os.environ.get("CI") == "true":  # CI runs as root: a browser it cannot install is a failure
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(
            executable_path=str(chromium),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield instance
        instance.close()


def _page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="networkidle")
    # a first visit gets Dagster's newsletter prompt, a moment after the page loads
    skip = page.get_by_role("dialog").filter(has_text="Join the Dagster").get_by_role("button", name="Skip")
    with contextlib.suppress(Exception):  # no prompt this time
        skip.click(timeout=8_000)
    return page


def test_browser_sees_the_asset_graph_and_backfills_two_partitions(ui, browser):
    spec, base = ui["spec"], ui["base"]
    keys = [f"{day:%Y-%m-%d}" for day in ui["days"]]

    graph = _page(browser, f"{base}/asset-groups/{spec.name}")
    for asset in ("extract", "documents", "index", "changes"):
        graph.get_by_text(f"{spec.name}_{asset}").first.wait_for(timeout=60_000)
    graph.screenshot(path=str(ARTIFACTS / "asset-graph.png"))

    # the sync job's page: "Materialize all" covers extract → documents → index
    page = _page(browser, f"{base}/locations/sync_pipeline/jobs/{spec.name}_sync")
    page.get_by_role("button", name=re.compile("Materialize all")).first.click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    dialog.get_by_role("button", name="Custom").click()
    selection = dialog.locator("input").first
    selection.fill(f"[{keys[0]}...{keys[1]}]")
    selection.press("Enter")
    dialog.get_by_text("2 partitions").wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "backfill-dialog.png"))
    dialog.get_by_role("button", name="Launch backfill").click()

    def materialized() -> bool:
        data = _graphql(
            base,
            """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
                 assetPartitionStatuses { ... on TimePartitionStatuses {
                   ranges { status startKey endKey } } } } } }""",
            {"key": {"path": [f"{spec.name}_index"]}},  # the last of the three
        )
        ranges = data["data"]["assetNodeOrError"]["assetPartitionStatuses"]["ranges"]
        return any(
            r["status"] == "MATERIALIZED" and r["startKey"] == keys[0] and r["endKey"] == keys[1]
            for r in ranges
        )

    _wait(materialized, 300, "the UI-launched backfill of two partitions", pause=3)
    es = ui["es"]
    _wait(lambda: es.indices.exists(index=spec.target.index), 120, "the index")
    es.indices.refresh(index=spec.target.index)
    assert es.count(index=spec.target.index)["count"] == 40

    partitions = _page(browser, f"{base}/assets/{spec.name}_extract?view=partitions")
    partitions.get_by_text("Materialized").first.wait_for(timeout=60_000)
    partitions.screenshot(path=str(ARTIFACTS / "partitions.png"))


def test_daemon_sensor_makes_a_committed_row_searchable(ui):
    spec, engine, es = ui["spec"], ui["engine"], ui["es"]
    install_capture(engine, spec)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {spec.source.table} VALUES (999, 'sensor row', now())"))
        committed = time.monotonic()

        def searchable() -> bool:
            if not es.indices.exists(index=spec.target.index):
                return False
            es.indices.refresh(index=spec.target.index)
            return es.count(index=spec.target.index, query={"term": {"id": 999}})["count"] == 1

        _wait(searchable, 240, "the sensor-launched drain", pause=1)
        print(f"commit → searchable via the buffer sensor: {time.monotonic() - committed:.1f}s")
    finally:
        uninstall_capture(engine, spec)
