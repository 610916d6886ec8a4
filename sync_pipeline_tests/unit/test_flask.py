"""The /sync blueprint without a Dagster: no token, no blueprint; an unreachable Dagster is a 503
(the blueprint against a real Dagster: integration/test_flask.py)."""

from __future__ import annotations

import pytest

from sync_pipeline.apps.flask import SyncBlueprintConfigError, create_sync_blueprint
from sync_pipeline_tests.conftest import free_port
from sync_pipeline_tests.support.flask import AUTH, make_app


def test_no_token_means_no_blueprint(monkeypatch, spec_file):
    monkeypatch.delenv("SYNC_API_TOKEN", raising=False)
    with pytest.raises(SyncBlueprintConfigError, match="SYNC_API_TOKEN"):
        create_sync_blueprint(specs_path=spec_file)
    monkeypatch.setenv("SYNC_API_TOKEN", "   ")
    with pytest.raises(SyncBlueprintConfigError, match="no API token"):
        create_sync_blueprint(specs_path=spec_file)
    with pytest.raises(SyncBlueprintConfigError, match="not found"):
        create_sync_blueprint(token="t", specs_path=spec_file.parent / "missing.yaml")


def test_unreachable_dagster_is_503(spec_file):
    client = make_app(f"http://127.0.0.1:{free_port()}", spec_file).test_client()
    for method, path in (("post", "/sync/shop/flush"), ("post", "/sync/shop/full"), ("get", "/sync/runs/r1")):
        response = getattr(client, method)(path, headers=AUTH)
        assert response.status_code == 503, (path, response.get_data(as_text=True))
        body = response.get_json()
        assert "cannot reach the Dagster webserver at http://127.0.0.1:" in body["error"]
