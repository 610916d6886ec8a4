"""Dagster resources: PostgreSQL, Elasticsearch, the staging area and the alert channels.

Connection URLs reach the resources as `dg.EnvVar`s, so their secrets never
appear in the UI or in a run's config. A deployment gets exactly what its
environment says: an unset SYNC_PG_URL or SYNC_ES_URL is an error naming the
variable when a run or sensor first uses the resource — never a silent
fallback to a development server. Only the CLI, which may have started the
project's local services itself, passes their URLs in directly.
"""

from __future__ import annotations

import dagster as dg
from elasticsearch import Elasticsearch
from sqlalchemy.engine import Engine

from sync_pipeline import settings as settings_module
from sync_pipeline.defs.alerts import alert_channels
from sync_pipeline.io.elasticsearch import es_client
from sync_pipeline.io.postgres import engine_for, libpq_url
from sync_pipeline.io.staging import StagingArea
from sync_pipeline.settings import Settings


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

    def area(self) -> StagingArea:
        return StagingArea(self.base_dir)


def _url(variable: str, configured: str | None, given: str | None) -> str | dg.EnvVar:
    # the variable's own value stays an EnvVar (a secret); a URL the caller chose is its own
    if given is None or given == configured:
        return dg.EnvVar(variable)
    return given


def resources_for(
    settings: Settings, *, pg_url: str | None = None, es_url: str | None = None
) -> dict[str, dg.ConfigurableResource]:
    """The resources of one deployment. Without URLs: SYNC_PG_URL / SYNC_ES_URL, required."""
    return {
        "alert_channels": alert_channels(settings.alerts),
        "postgres": PostgresResource(url=_url(settings_module.PG_URL, settings.pg_url, pg_url)),
        "elasticsearch": ElasticsearchResource(url=_url(settings_module.ES_URL, settings.es_url, es_url)),
        "staging": StagingResource(base_dir=str(settings.staging_dir)),
    }
