"""The /sync blueprint in a real Flask app (its test client), talking to a real Dagster.

The Dagster deployment is the session's DagsterStack (test_dagster_api.py):
webserver + daemon on workspace.yaml, runs against the real PostgreSQL and
Elasticsearch.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from sync_pipeline.apps import dagster_api
from sync_pipeline.apps.flask import create_sync_blueprint
from sync_pipeline.ops import capture
from sync_pipeline_devtools.demo import seed_demo
from sync_pipeline_tests.support.dagster_api import RUN_TIMEOUT, DagsterStack, month_day
from sync_pipeline_tests.support.flask import AUTH, TOKEN, make_app
from sync_pipeline_tests.support.paths import ROOT


@pytest.fixture(scope="session")
def stack(service_urls, tmp_path_factory) -> Iterator[DagsterStack]:
    with DagsterStack.shared(service_urls, tmp_path_factory) as running:
        yield running


def wait_for(client, run_id: str) -> dict:
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        response = client.get(f"/sync/runs/{run_id}", headers=AUTH)
        assert response.status_code == 200, response.get_json()
        report = response.get_json()
        if report["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return report
        assert time.monotonic() < deadline, f"run {run_id} still {report['status']}"
        time.sleep(1)


def test_full_sync_then_flush_through_the_blueprint(stack: DagsterStack):
    spec, keys = stack.spec("web"), stack.partition_keys("web")
    client = make_app(stack.url, stack.spec_path).test_client()
    stack.insert("web", range(1, 61), month_day(keys[1]))

    response = client.post(f"/sync/{spec.name}/full", headers=AUTH)

    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["job"] == f"{spec.name}_sync"
    assert body["partitions"] == {"start": keys[0], "end": keys[-1], "count": len(keys)}
    assert response.headers["Location"] == body["status_url"] == f"/sync/runs/{body['run_id']}"
    report = wait_for(client, body["run_id"])
    assert report["status"] == "SUCCESS", (report["errors"], stack.logs())
    assert [(b["batch"], b["indexed"], b["failed"]) for b in report["batches"]] == [(1, 50, 0), (2, 10, 0)]
    assert report["totals"]["indexed"] == 60 and report["totals"]["extracted"] == 60
    assert len(stack.documents("web")) == 60

    # the change buffer: an insert, an update and a hard delete, applied by the drain job
    capture.install_capture(stack.engine, spec)
    try:
        stack.insert("web", range(61, 71), month_day(keys[2]))
        stack.execute(f"UPDATE {stack.table('web')} SET title = 'renamed' WHERE id = 1")
        stack.execute(f"DELETE FROM {stack.table('web')} WHERE id = 2")

        response = client.post(f"/sync/{spec.name}/flush", headers=AUTH)

        assert response.status_code == 202, response.get_json()
        assert response.get_json()["job"] == f"{spec.name}_drain"
        flushed = response.get_json()["run_id"]
        report = wait_for(client, flushed)
    finally:
        capture.uninstall_capture(stack.engine, spec)
    assert report["status"] == "SUCCESS", (report["errors"], stack.logs())
    totals = report["totals"]
    assert (totals["indexed"], totals["deleted"], totals["failed"], totals["claimed"]) == (11, 1, 0, 12)
    assert report["batches"] and all(b["asset"] == f"{spec.name}_changes" for b in report["batches"])
    documents = stack.documents("web")
    assert len(documents) == 69 and "2" not in documents and documents["1"]["title"] == "renamed"

    # newest first; the daemon's drain sensor may add runs of its own once capture is installed
    listed = client.get(f"/sync/runs?spec={spec.name}&limit=10", headers=AUTH).get_json()["runs"]
    jobs = {r["run_id"]: r["job_name"] for r in listed}
    order = [r["run_id"] for r in listed]
    assert jobs[flushed] == f"{spec.name}_drain" and jobs[body["run_id"]] == f"{spec.name}_sync"
    assert order.index(flushed) < order.index(body["run_id"])
    assert set(jobs.values()) <= {f"{spec.name}_drain", f"{spec.name}_sync"}


def test_every_route_requires_the_bearer_token(stack: DagsterStack, monkeypatch):
    client = make_app(stack.url, stack.spec_path).test_client()
    name = stack.table("web")
    before = dagster_api.recent_runs(stack.url, name)
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": "Bearer ☃"},
        {"Authorization": "Bearer tést".encode().decode("latin-1")},
    ):
        for method, path in (
            ("post", f"/sync/{name}/flush"),
            ("post", f"/sync/{name}/full"),
            ("get", "/sync/runs/whatever"),
            ("get", "/sync/runs"),
        ):
            response = getattr(client, method)(path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.get_json() == {"error": "missing or invalid bearer token"}
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert dagster_api.recent_runs(stack.url, name) == before  # nothing was launched
    # the scheme is case-insensitive (RFC 9110)
    response = client.get(f"/sync/runs/{uuid.uuid4()}", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 404

    monkeypatch.setenv("SYNC_API_TOKEN", "from-the-environment")
    app = Flask("env_token")
    app.register_blueprint(create_sync_blueprint(dagster_url=stack.url, specs_path=stack.spec_path))
    response = app.test_client().get(
        f"/sync/runs/{uuid.uuid4()}", headers={"Authorization": "Bearer from-the-environment"}
    )
    assert response.status_code == 404 and "not found" in response.get_json()["error"]


def test_unknown_spec_run_or_path_are_json_404s(stack: DagsterStack):
    client = make_app(stack.url, stack.spec_path).test_client()

    response = client.post("/sync/no_such_spec/flush", headers=AUTH)
    assert response.status_code == 404 and response.is_json
    assert response.get_json()["error"] == "unknown spec 'no_such_spec'"
    assert stack.table("web") in response.get_json()["known_specs"]
    assert client.post("/sync/no_such_spec/full", headers=AUTH).status_code == 404
    assert client.get("/sync/runs?spec=no_such_spec", headers=AUTH).status_code == 404

    response = client.get(f"/sync/runs/{uuid.uuid4()}", headers=AUTH)
    assert response.status_code == 404 and response.is_json and stack.url in response.get_json()["error"]

    response = client.get("/sync/a/b/c", headers=AUTH)
    assert response.status_code == 404 and response.is_json and "error" in response.get_json()
    response = client.get(f"/sync/{stack.table('web')}/flush", headers=AUTH)
    assert response.status_code == 405 and response.is_json
    response = client.get("/sync/runs?limit=lots", headers=AUTH)
    assert response.status_code == 400 and response.is_json
    # the rest of the application keeps its own (HTML) error pages
    response = client.get("/not-sync")
    assert response.status_code == 404 and not response.is_json
    assert client.get("/elsewhere").get_data(as_text=True) == "not ours"


# --- the example application ---------------------------------------------------------------------


def load_example():
    path = ROOT / "examples" / "flask_app" / "app.py"
    name = f"flask_example_{uuid.uuid4().hex[:6]}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # SQLAlchemy resolves the models' annotations through it
    module_spec.loader.exec_module(module)
    return module


def test_example_app_writes_products_through_the_orm(stack: DagsterStack, live):
    schema = f"{stack.prefix}_shop"
    with stack.engine.begin() as conn:
        seed_demo(conn, rows=20, schema=schema)  # the demo's tables, in a schema of the test's
    try:
        example = load_example()
        engine = sa.create_engine(f"postgresql+psycopg://{live.pg_url.split('://', 1)[1]}").execution_options(
            schema_translate_map={"sync_pipeline_demo": schema}
        )
        app = example.create_app(engine=engine, sync_token=TOKEN, dagster_url=stack.url)
        client = app.test_client()

        created = client.post("/products", json={"sku": "SKU-X1", "name": "青花瓷茶杯 new", "price": "12.50"})
        assert created.status_code == 201, created.get_data(as_text=True)
        product = created.get_json()
        assert product["id"] == 21 and product["price"] == "12.50" and product["updated_at"]

        changed = client.patch(f"/products/{product['id']}", json={"name": "renamed", "stock": 3})
        assert changed.status_code == 200 and changed.get_json()["name"] == "renamed"
        assert changed.get_json()["updated_at"] >= product["updated_at"]
        assert client.delete(f"/products/{product['id']}").status_code == 204
        assert client.get(f"/products/{product['id']}").get_json()["deleted_at"] is not None
        assert client.get("/products/999").status_code == 404
        assert client.post("/products", json={"name": "no sku"}).status_code == 400
        with engine.connect() as conn:
            row = conn.execute(sa.text(f"SELECT name, stock FROM {schema}.products WHERE id = 21")).one()
        assert tuple(row) == ("renamed", 3)

        # the blueprint is mounted and talks to the real Dagster
        assert client.get("/sync/runs/x").status_code == 401
        response = client.get(f"/sync/runs/{uuid.uuid4()}", headers=AUTH)
        assert response.status_code == 404 and response.is_json
    finally:
        with stack.engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
