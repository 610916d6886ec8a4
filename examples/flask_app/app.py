"""A small shop API on the demo `products` table, kept searchable by sync_pipeline.

The application writes products with ordinary SQLAlchemy 2 ORM code and knows
nothing about Elasticsearch. Every write moves `updated_at`, which is all the
partitioned sync needs; with the change-buffer triggers installed
(`sync-pipeline install-triggers --spec products`) each write is also queued for
the next drain, hard deletes included. The /sync blueprint lets the app (or an
operator with the token) launch those runs in the Dagster deployment and read
their batch counts.

    SYNC_API_TOKEN=change-me .venv/bin/flask --app examples/flask_app/app.py run -p 5000

See README.md beside this file.
"""

from __future__ import annotations

import os
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask, abort, g, jsonify, request
from sqlalchemy import func
from sqlalchemy.orm import Session, sessionmaker

from sync_pipeline.apps.flask import create_sync_blueprint
from sync_pipeline.io.postgres import sqlalchemy_url

# the models live in an importable module of their own: sync.yaml derives the spec from them
if str(Path(__file__).resolve().parent) not in sys.path:  # `flask --app` adds it; a plain import may not
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from shop.models import Product

ID_LOCK = 0x5359_4E43  # pg_advisory_xact_lock key for id allocation
EDITABLE = (
    "sku",
    "name",
    "description",
    "category_id",
    "price",
    "stock",
    "keywords",
    "attributes",
    "discontinued",
)


# --- the application -----------------------------------------------------------------------------


def create_app(
    *,
    database_url: str | None = None,
    engine: sa.Engine | None = None,
    sync_token: str | None = None,
    dagster_url: str | None = None,
    specs_path: str | None = None,
) -> Flask:
    """The shop app. Database: `engine`, else `database_url`, else $SYNC_PG_URL, else the
    local service of `make services`. The /sync blueprint takes its token from
    `sync_token` or $SYNC_API_TOKEN and its Dagster from `dagster_url` or $SYNC_DAGSTER_URL."""
    app = Flask(__name__)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # 商品 names stay readable
    if engine is None:
        url = database_url or os.environ.get("SYNC_PG_URL")
        if not url:  # the checkout's local services: eval "$(python -m sync_pipeline_devtools services env)"
            raise RuntimeError("set SYNC_PG_URL: the PostgreSQL holding the demo's products")
        engine = sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True)
    sessions = sessionmaker(engine, expire_on_commit=False)

    def session() -> Session:
        if "db" not in g:
            g.db = sessions()
        return g.db

    @app.teardown_appcontext
    def close_session(_exc: BaseException | None) -> None:
        db = g.pop("db", None)
        if db is not None:
            db.close()

    def product_or_404(product_id: int) -> Product:
        product = session().get(Product, product_id)
        if product is None:
            abort(404, description=f"no product {product_id}")
        return product

    def apply(product: Product, data: dict[str, Any]) -> None:
        unknown = sorted(set(data) - set(EDITABLE))
        if unknown:
            abort(400, description=f"unknown fields: {', '.join(unknown)}")
        for field, value in data.items():
            if field == "price" and value is not None:
                try:
                    value = Decimal(str(value))
                except InvalidOperation:
                    abort(400, description="price must be a number")
            setattr(product, field, value)

    @app.get("/products/<int:product_id>")
    def get_product(product_id: int):
        return jsonify(product_or_404(product_id).to_json())

    @app.post("/products")
    def create_product():
        data = request.get_json(silent=True) or {}
        if not data.get("sku") or not data.get("name"):
            abort(400, description="sku and name are required")
        db = session()
        with db.begin():
            # the demo table has no sequence: this app's writers take turns allocating ids
            db.execute(sa.select(func.pg_advisory_xact_lock(ID_LOCK)))
            next_id = (db.scalar(sa.select(func.max(Product.id))) or 0) + 1
            product = Product(id=next_id)
            apply(product, data)
            db.add(product)
        db.refresh(product)
        return jsonify(product.to_json()), 201

    @app.patch("/products/<int:product_id>")
    def update_product(product_id: int):
        db = session()
        with db.begin():
            product = product_or_404(product_id)
            apply(product, request.get_json(silent=True) or {})
        db.refresh(product)
        return jsonify(product.to_json())

    @app.delete("/products/<int:product_id>")
    def delete_product(product_id: int):
        """Soft delete (deleted_at); `?hard=1` removes the row, which reaches the index only
        through the change buffer (install-triggers) or `sync-pipeline verify --fix`."""
        db = session()
        with db.begin():
            product = product_or_404(product_id)
            if request.args.get("hard") in ("1", "true"):
                db.delete(product)
            else:
                product.deleted_at = func.now()
                product.updated_at = func.now()
        return "", 204

    @app.errorhandler(400)
    @app.errorhandler(404)
    def client_error(exc):
        return jsonify({"error": exc.description}), exc.code

    # last, so that its JSON answers for unknown /sync paths wrap the app's own error handlers
    app.register_blueprint(
        create_sync_blueprint(token=sync_token, dagster_url=dagster_url, specs_path=specs_path)
    )
    return app


if __name__ == "__main__":
    create_app().run(port=int(os.environ.get("PORT", "5000")), debug=False)
