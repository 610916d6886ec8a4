"""IO behind Dagster resources: PostgreSQL, Elasticsearch and the Parquet staging area.

Connection URLs come from the environment (SYNC_PG_URL, SYNC_ES_URL) through
Dagster's EnvVar when set, so their secrets never appear in the UI; otherwise
they default to the project's local services (`sync-pipeline services up`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from elasticsearch import Elasticsearch
from sqlalchemy.engine import Engine, make_url

from sync_pipeline.dev import services


def sqlalchemy_url(url: str) -> str:
    """Accept libpq-style URLs and pick the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def libpq_url(url: str, application_name: str = "sync_pipeline") -> str:
    """The URL as libpq (and so the ADBC driver) reads it, with the session settings of `engine_for`."""
    from urllib.parse import quote, urlencode

    parsed = make_url(sqlalchemy_url(url)).set(drivername="postgresql")
    query = {"application_name": application_name, "connect_timeout": "10", "options": "-c timezone=UTC"}
    query |= {k: v if isinstance(v, str) else v[-1] for k, v in parsed.query.items()}
    base = parsed.set(query={}).render_as_string(hide_password=False)
    # percent-encoding only: libpq does not read "+" as a space
    return f"{base}?{urlencode(query, quote_via=quote)}"


def redact_url(url: str) -> str:
    """The URL with its password replaced, for messages and metadata."""
    try:
        return make_url(sqlalchemy_url(url)).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


def redact_es_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    # UTC sessions make timestamptz values and window bounds compare without surprises
    return sa.create_engine(
        sqlalchemy_url(url),
        pool_pre_ping=True,
        connect_args={"options": "-c timezone=UTC", "connect_timeout": 10},
    )


def es_client(url: str, request_timeout: float = 120.0) -> Elasticsearch:
    return Elasticsearch(
        url,
        request_timeout=request_timeout,
        retry_on_timeout=True,
        max_retries=3,
        retry_on_status=(502, 503, 504),
    )


class PostgresResource(dg.ConfigurableResource):
    url: str

    def engine(self) -> Engine:
        return engine_for(self.url)

    def libpq_url(self, application_name: str = "sync_pipeline") -> str:
        return libpq_url(self.url, application_name)


class ElasticsearchResource(dg.ConfigurableResource):
    url: str
    request_timeout: float = 120.0

    def client(self) -> Elasticsearch:
        return es_client(self.url, self.request_timeout)


class StagingResource(dg.ConfigurableResource):
    """Parquet/NDJSON files between the extract, documents and index assets."""

    base_dir: str

    def path(self, spec_name: str, window_key: str, suffix: str) -> Path:
        folder = Path(self.base_dir) / spec_name
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{window_key}.{suffix}"


def _from_env_or(name: str, default: str) -> str | dg.EnvVar:
    return dg.EnvVar(name) if os.environ.get(name) else default


def default_resources() -> dict[str, dg.ConfigurableResource]:
    from sync_pipeline.core.alerts import alert_channels_from_env

    local = services.local_urls()
    return {
        "alert_channels": alert_channels_from_env(),
        "postgres": PostgresResource(url=_from_env_or("SYNC_PG_URL", local.pg_url)),
        "elasticsearch": ElasticsearchResource(url=_from_env_or("SYNC_ES_URL", local.es_url)),
        "staging": StagingResource(base_dir=os.environ.get("SYNC_STAGING_DIR", ".staging")),
    }
