"""Dagster resources: PostgreSQL, Elasticsearch, the staging area and the alert channels.

Connection URLs reach the resources as `dg.EnvVar`s, so their secrets never
appear in the UI or in a run's config. A deployment gets exactly what its
environment says: an unset SYNC_PG_URL or SYNC_ES_URL is an error naming the
variable when a run or sensor first uses the resource — never a silent
fallback to a development server. Only the CLI, which may have started the
project's local services itself, passes their URLs in directly.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import TypeVar

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from sync_pipeline import settings as settings_module
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.defs.alerts import alert_channels
from sync_pipeline.io.postgres import engine_for, libpq_url
from sync_pipeline.io.search import SearchTarget, search_client
from sync_pipeline.io.staging import StagingArea
from sync_pipeline.ops.binding import Bound, bind
from sync_pipeline.ops.prepare import TargetVerdict
from sync_pipeline.settings import ElasticsearchOptions, Settings, with_password

R = TypeVar("R", bound=dg.ConfigurableResource)


def _resolved(resource: R) -> R:
    """A copy with its EnvVars read now: a resource handed to a run as it is (hardcoded) is not
    configured by Dagster, which is what reads them otherwise."""
    values = {}
    for name in type(resource).model_fields:
        value = getattr(resource, name)
        values[name] = value.get_value() if isinstance(value, dg.EnvVar) else value
    return type(resource)(**values)


class PostgresResource(dg.ConfigurableResource):
    url: str
    password: str | None = None  # SYNC_PG_PASSWORD, for a URL that names only the user
    # the run's one engine: built at its first use, disposed when the run (or sensor tick) ends
    # and Dagster lets go of the resource (not at a teardown: that would make every
    # build_sensor_context(resources=…) need a `with`); or lent by the process that started
    # the run (`lending`), whose to dispose of
    _engine: Engine | None = PrivateAttr(default=None)
    _bound: dict[str, Bound] = PrivateAttr(default_factory=dict)  # each spec bound once per run

    @property
    def connection_url(self) -> str:
        """The URL to connect with (the password joined in): for a driver that takes a URL, never shown."""
        return with_password(self.url, self.password)

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = engine_for(self.connection_url)
            weakref.finalize(self, self._engine.dispose)
        return self._engine

    def bound(self, spec: SyncSpec) -> Bound:
        """The spec bound to its source (ops/binding.py) once for the run: the load and the checks
        after it share the binding."""
        if spec.name not in self._bound:
            self._bound[spec.name] = bind(self.engine(), spec)
        return self._bound[spec.name]

    def lending(self, engine: Engine, bound: Iterable[Bound] = ()) -> dg.ResourceDefinition:
        """This resource on an engine its caller owns (the CLI's), with the specs it bound already:
        a run started in this process uses both as they are, and leaves disposing of the engine
        to the caller."""
        lent = _resolved(self)
        lent._engine = engine
        lent._bound = {b.spec.name: b for b in bound}
        return dg.ResourceDefinition.hardcoded_resource(lent)

    def libpq_url(self, application_name: str = "sync_pipeline") -> str:
        return libpq_url(self.connection_url, application_name)


class ElasticsearchResource(dg.ConfigurableResource):
    """The options of settings.ElasticsearchOptions, those it has a field for (`_CARRIED`), as the
    run's config; credentials arrive as EnvVars."""

    url: str
    request_timeout: float = 120.0
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    ca_certs: str | None = None
    ssl_fingerprint: str | None = None
    verify_certs: bool = True
    http_compress: bool = False
    backend: str = "auto"  # the distribution expected at the URL (SYNC_SEARCH_BACKEND)
    aws_region: str | None = None  # set: every request is signed with SigV4 for this region
    aws_service: str = "es"
    # verdicts the process that started the run already reached (the CLI's preflight), by spec
    _prepared: dict[str, TargetVerdict] = PrivateAttr(default_factory=dict)

    def options(self) -> ElasticsearchOptions:
        return ElasticsearchOptions(**{name: getattr(self, name) for name in _CARRIED})

    def client(self) -> SearchTarget:
        return search_client(self.url, options=self.options())

    def take_prepared(self, spec: str) -> TargetVerdict | None:
        """The verdict on the spec's index its preflight reached, once: the run reuses its binding
        and comparison instead of making them again."""
        return self._prepared.pop(spec, None)

    def lending(self, prepared: Mapping[str, TargetVerdict]) -> dg.ResourceDefinition:
        """This resource carrying `prepared` verdicts into a run started in this process."""
        lent = _resolved(self)
        lent._prepared = dict(prepared)
        return dg.ResourceDefinition.hardcoded_resource(lent)


# the options a resource carries, in ElasticsearchOptions' order
_CARRIED = tuple(f.name for f in fields(ElasticsearchOptions) if f.name in ElasticsearchResource.model_fields)
# the options that are secrets, and the variables they are read from: the resource holds an EnvVar
_SECRETS = {
    "api_key": settings_module.ES_API_KEY,
    "password": settings_module.ES_PASSWORD,
    "bearer_token": settings_module.ES_BEARER_TOKEN,
}


class StagingResource(dg.ConfigurableResource):
    """Parquet/NDJSON files between the extract, documents and index assets."""

    base_dir: str
    # dead letters and staged files older than this are purged when a window sync ends; 0: never
    retention_days: float = 30.0

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
    es = settings.es

    def secret(variable: str, value: str | None) -> dg.EnvVar | None:
        return dg.EnvVar(variable) if value else None

    cloud = settings.es_cloud_id is not None and es_url in (None, settings.es_url)
    return {
        "alert_channels": alert_channels(settings.alerts),
        "postgres": PostgresResource(
            url=_url(settings_module.PG_URL, settings.pg_url, pg_url),
            password=secret(settings_module.PG_PASSWORD, settings.pg_password),
        ),
        "elasticsearch": ElasticsearchResource(
            # a cloud id's URL is no secret, and no variable holds it as a URL
            url=settings.require_es_url() if cloud else _url(settings_module.ES_URL, settings.es_url, es_url),
            **{
                name: secret(_SECRETS[name], value) if name in _SECRETS else value
                for name, value in ((name, getattr(es, name)) for name in _CARRIED)
            },
        ),
        "staging": StagingResource(
            base_dir=str(settings.staging_dir), retention_days=settings.retention_days
        ),
    }
