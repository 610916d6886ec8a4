"""The Dagster instance the CLI and `make ui` share: DAGSTER_HOME with PostgreSQL storage.

The repository's dagster.yaml is copied into DAGSTER_HOME; its storage URL comes
from SYNC_DAGSTER_PG_URL, derived here from SYNC_PG_URL (same server and
database, schema "dagster") unless set explicitly.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sync_pipeline.defs.resources import engine_for
from sync_pipeline.settings import PROJECT_ROOT

TEMPLATE = PROJECT_ROOT / "dagster.yaml"
SCHEMA = "dagster"


def dagster_storage_url(pg_url: str, schema: str = SCHEMA) -> str:
    """A libpq URL (what dagster-postgres takes) whose search_path puts Dagster's tables in `schema`."""
    url = make_url(pg_url.replace("postgresql+psycopg://", "postgresql://", 1))
    url = url.set(drivername="postgresql", query={**url.query, "options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    return rendered.replace(f"-csearch_path={schema}", quote(f"-csearch_path={schema}", safe=""))


def prepare_dagster_home(home: Path, pg_url: str) -> Path:
    """Create DAGSTER_HOME with the project's dagster.yaml and the storage schema; idempotent."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() or target.read_text() != TEMPLATE.read_text():
        shutil.copyfile(TEMPLATE, target)
    with engine_for(pg_url).begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
    os.environ.setdefault("SYNC_DAGSTER_PG_URL", dagster_storage_url(pg_url))
    return home
