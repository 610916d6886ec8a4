"""The Dagster instance the CLI and `make ui` share: DAGSTER_HOME with PostgreSQL storage.

The repository's dagster.yaml is copied into DAGSTER_HOME; its storage URL comes
from SYNC_DAGSTER_PG_URL, derived here from SYNC_PG_URL (same server and
database, schema "dagster") unless set explicitly.

Dagster reads DAGSTER_HOME and the `env:` references of dagster.yaml from the
process environment (and so do the `dagster dev` processes `make ui` starts),
so this is the one place that writes them there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sync_pipeline import settings
from sync_pipeline.core.quoting import quote_ident
from sync_pipeline.io.postgres import engine_for

TEMPLATE = settings.PROJECT_ROOT / "deploy" / "dagster.yaml"
SCHEMA = "dagster"
DEFAULT_HOME = Path(".dagster_home")


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
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(SCHEMA)}"))
    os.environ.setdefault(settings.DAGSTER_PG_URL, dagster_storage_url(pg_url))
    return home


def dagster_home(pg_url: str) -> Path:
    """DAGSTER_HOME; the project default (.dagster_home) gets the project's instance config
    (PostgreSQL storage, queued runs); a home of your own is used as it is."""
    default = DEFAULT_HOME.resolve()
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(default))).resolve()
    if home == default:
        prepare_dagster_home(home, pg_url)
    else:
        home.mkdir(parents=True, exist_ok=True)
    return home


def dagster_instance(pg_url: str) -> dg.DagsterInstance:
    dagster_home(pg_url)
    return dg.DagsterInstance.get()
