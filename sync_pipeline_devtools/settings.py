"""The settings of the project's own dev/test servers (`python -m sync_pipeline_devtools services`,
`sync_pipeline_devtools.services`): their ports, the Elasticsearch version, the state dir, and
which search server `--local` starts. The dev harness's own: the product's settings
(`sync_pipeline.settings`) know nothing of them. `load()` reads them when called."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sync_pipeline.settings.values import SettingsError, _choice, _int, _text

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout

LOCAL_PG_PORT = "SYNC_LOCAL_PG_PORT"
LOCAL_ES_PORT = "SYNC_LOCAL_ES_PORT"
LOCAL_ES_SECURE_PORT = "SYNC_LOCAL_ES_SECURE_PORT"
LOCAL_ES_CLUSTER_PORT = "SYNC_LOCAL_ES_CLUSTER_PORT"
LOCAL_ES8_PORT = "SYNC_LOCAL_ES8_PORT"
LOCAL_OPENSEARCH2_PORT = "SYNC_LOCAL_OPENSEARCH2_PORT"
LOCAL_OPENSEARCH_PORT = "SYNC_LOCAL_OPENSEARCH_PORT"
LOCAL_REDIS_PORT = "SYNC_LOCAL_REDIS_PORT"
LOCAL_SEARCH = "SYNC_LOCAL_SEARCH"
ES_VERSION = "SYNC_ES_VERSION"
SERVICES_DIR = "SYNC_SERVICES_DIR"
ES_EXTRA_SETTINGS = "SYNC_ES_EXTRA_SETTINGS"
PG_START_TIMEOUT = "SYNC_PG_START_TIMEOUT"
ES_START_TIMEOUT = "SYNC_ES_START_TIMEOUT"

DEFAULT_LOCAL_PG_PORT = 55432
DEFAULT_LOCAL_ES_PORT = 59200
DEFAULT_ES_VERSION = "9.2.4"
# the search servers the project starts locally, each a single plain node on its own ports:
# "elasticsearch" is the Elasticsearch 9 node (SYNC_ES_VERSION), the others are pinned versions
SEARCH_KINDS = ("elasticsearch", "elasticsearch8", "opensearch2", "opensearch")
DEFAULT_LOCAL_SEARCH = "elasticsearch"
# a search node's transport port is its HTTP port + 100
TRANSPORT_OFFSET = 100


@dataclass(frozen=True)
class LocalServiceSettings:
    """The project's own dev/test servers (`python -m sync_pipeline_devtools services`)."""

    pg_port: int = DEFAULT_LOCAL_PG_PORT
    es_port: int = DEFAULT_LOCAL_ES_PORT
    es_secure_port: int = DEFAULT_LOCAL_ES_PORT + 10  # the secured node (`services up --secure`)
    es_cluster_port: int = DEFAULT_LOCAL_ES_PORT + 20  # the first of the three-node cluster's
    es8_port: int = DEFAULT_LOCAL_ES_PORT + 30  # Elasticsearch 8 (`services up --target elasticsearch8`)
    opensearch2_port: int = DEFAULT_LOCAL_ES_PORT + 40  # OpenSearch 2
    opensearch_port: int = DEFAULT_LOCAL_ES_PORT + 50  # OpenSearch 3
    redis_port: int = DEFAULT_LOCAL_PG_PORT + 947  # the Celery test's broker
    search: str = DEFAULT_LOCAL_SEARCH  # the search node `up()` and `--local` start (SEARCH_KINDS)
    es_version: str = DEFAULT_ES_VERSION
    services_dir: Path = PROJECT_ROOT / ".services"
    es_extra_settings: tuple[str, ...] = ()
    pg_start_timeout: int = 60
    es_start_timeout: int = 180

    def search_port(self, kind: str) -> int:
        """The HTTP port of the local search node of `kind` (one of SEARCH_KINDS)."""
        ports = (self.es_port, self.es8_port, self.opensearch2_port, self.opensearch_port)
        return dict(zip(SEARCH_KINDS, ports, strict=True))[kind]


def _port(env: Mapping[str, str], name: str, default: int, offset: int = 0) -> int:
    """A TCP port; with `offset`, the port + offset (a node's transport port) must be one too."""
    port = _int(env, name, default)
    if not 1 <= port <= 65535 - offset:
        more = f" (its transport port is +{offset})" if offset else ""
        raise SettingsError(f"{name} must be a port number from 1 to {65535 - offset}{more}, not {port}")
    return port


def load(environ: Mapping[str, str] | None = None) -> LocalServiceSettings:
    """The local services' settings from `environ` (default: the process environment), validated
    (a bad value is a SettingsError naming the variable)."""
    env = os.environ if environ is None else environ
    services_dir = _text(env, SERVICES_DIR)
    extra = tuple(line for line in env.get(ES_EXTRA_SETTINGS, "").splitlines() if line.strip())
    es_port = _port(env, LOCAL_ES_PORT, DEFAULT_LOCAL_ES_PORT, TRANSPORT_OFFSET)
    pg_port = _port(env, LOCAL_PG_PORT, DEFAULT_LOCAL_PG_PORT)

    def search_port(name: str, step: int) -> int:  # the others follow SYNC_LOCAL_ES_PORT by default
        return _port(env, name, es_port + step, TRANSPORT_OFFSET)

    return LocalServiceSettings(
        pg_port=pg_port,
        es_port=es_port,
        es_secure_port=search_port(LOCAL_ES_SECURE_PORT, 10),
        es_cluster_port=search_port(LOCAL_ES_CLUSTER_PORT, 20),
        es8_port=search_port(LOCAL_ES8_PORT, 30),
        opensearch2_port=search_port(LOCAL_OPENSEARCH2_PORT, 40),
        opensearch_port=search_port(LOCAL_OPENSEARCH_PORT, 50),
        redis_port=_port(env, LOCAL_REDIS_PORT, pg_port + 947),
        search=_choice(env, LOCAL_SEARCH, SEARCH_KINDS, DEFAULT_LOCAL_SEARCH),
        es_version=_text(env, ES_VERSION) or DEFAULT_ES_VERSION,
        services_dir=(
            Path(services_dir).expanduser().absolute() if services_dir else PROJECT_ROOT / ".services"
        ),
        es_extra_settings=extra,
        pg_start_timeout=_int(env, PG_START_TIMEOUT, 60),
        es_start_timeout=_int(env, ES_START_TIMEOUT, 180),
    )
