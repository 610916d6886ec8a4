"""A Flask app with the /sync blueprint, as a user's app mounts it."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from sync_pipeline.apps.flask import create_sync_blueprint

TOKEN = "test-token-4f2a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_app(dagster_url: str, specs_path: Path, **options) -> Flask:
    app = Flask("sync_test")
    app.register_blueprint(
        create_sync_blueprint(dagster_url=dagster_url, token=TOKEN, specs_path=specs_path, **options)
    )

    @app.get("/elsewhere")
    def elsewhere():
        return "not ours"

    return app
