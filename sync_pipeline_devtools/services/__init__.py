"""Local PostgreSQL and Elasticsearch/OpenSearch for development, tests and CI — without Docker.

    python -m sync_pipeline_devtools.services up|down|status|env [--target KIND]

PostgreSQL comes from Debian's `postgresql` package (a project-owned cluster is
initdb'ed under the state dir); a search node is the `integ-test-zip`
distribution fetched from Maven Central with `mvn` (it ships no JDK, so a Java
from the machine is used). Everything listens on 127.0.0.1 only.

Search nodes (SEARCH_KINDS, each a plain single node on its own port): "elasticsearch"
(Elasticsearch 9, SYNC_LOCAL_ES_PORT), "elasticsearch8" (SYNC_LOCAL_ES8_PORT),
"opensearch2" (SYNC_LOCAL_OPENSEARCH2_PORT) and "opensearch" (OpenSearch 3,
SYNC_LOCAL_OPENSEARCH_PORT). `up_search(kind)` starts one; `up()`, `ensure_services()`
(and so `python -m sync_pipeline_devtools --local …`) start the one SYNC_LOCAL_SEARCH names (default
"elasticsearch") and return its URL as `es_url`. `distribution` says which Java each runs on.

State lives in `<project root>/.services/` (env SYNC_SERVICES_DIR), downloads in
`.services/cache/`. All functions are idempotent and serialised with a file lock,
so pytest-xdist workers or `make demo` + tests can call `up()` concurrently.
Every SYNC_* variable is read through `sync_pipeline.settings.load()` when a
function needs it (a bad value is a ServiceError with the settings' message).

This package uses only the standard library (and sync_pipeline.settings). The
work is done in `runtime` (dirs, lock, service user, process helpers),
`postgres`, `distribution` (what each search server is, fetching, unpacking), `java` and
`search` (a search node's start, stop, status); this module is the public API and re-exports
the names callers use. Patching a name here affects `up`, `down`, `status`,
`ensure_services` and `main`, which are defined here; to patch what a submodule
function looks up (e.g. `runtime._is_root`, `postgres.PG_LIB_DIR`, `java.JVM_DIR`), patch that
submodule.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sync_pipeline_devtools.services.cluster import Node, nodes, start_cluster, start_node, stop_cluster
from sync_pipeline_devtools.services.distribution import KNOWN_ES_VERSIONS, Distribution, search_distribution
from sync_pipeline_devtools.services.java import MIN_JAVA, _java_major, find_java_home
from sync_pipeline_devtools.services.postgres import (
    DEFAULT_PG_PORT,
    PG_DATABASE,
    PG_PASSWORD,
    PG_USER,
    _pg_status,
    _start_postgres,
    _stop_postgres,
    find_pg_bin_dir,
    pg_port,
    pg_tls_files,
)
from sync_pipeline_devtools.services.redis import start_redis, stop_redis
from sync_pipeline_devtools.services.runtime import (
    FALLBACK_RUNTIME_BASE,
    LOG_TAIL_LINES,
    SERVICE_USER,
    ServiceError,
    ServiceUrls,
    _as_service_user,
    _known_runtime_dir,
    _locked,
    _prepare_dirs,
    _service_user,
    choose_runtime_dir,
    fallback_runtime_dir,
    load_settings,
    local_settings,
    state_dir,
    untraversable_parents,
)
from sync_pipeline_devtools.services.search import (
    DEFAULT_ES_PORT,
    _start_elasticsearch,
    es_port,
    es_transport_port,
    es_version,
    node_pid,
    node_status,
    start_search_node,
    stop_search_node,
)
from sync_pipeline_devtools.services.secure_es import SecureUrls, start_secure, stop_secure
from sync_pipeline_devtools.settings import DEFAULT_ES_VERSION, SEARCH_KINDS

__all__ = [
    "DEFAULT_ES_PORT",
    "DEFAULT_ES_VERSION",
    "DEFAULT_PG_PORT",
    "FALLBACK_RUNTIME_BASE",
    "KNOWN_ES_VERSIONS",
    "LOG_TAIL_LINES",
    "MIN_JAVA",
    "PG_DATABASE",
    "PG_PASSWORD",
    "PG_USER",
    "SEARCH_KINDS",
    "SERVICE_USER",
    "Distribution",
    "Node",
    "SecureUrls",
    "ServiceError",
    "ServiceUrls",
    "_as_service_user",
    "_java_major",
    "_service_user",
    "_start_elasticsearch",
    "_start_postgres",
    "choose_runtime_dir",
    "cluster_nodes",
    "down",
    "down_cluster",
    "elasticsearch_pid",
    "ensure_services",
    "env_lines",
    "es_port",
    "es_transport_port",
    "es_version",
    "fallback_runtime_dir",
    "find_java_home",
    "find_pg_bin_dir",
    "local_settings",
    "local_urls",
    "main",
    "pg_port",
    "pg_root_cert",
    "restart_cluster_node",
    "restart_postgres",
    "search_distribution",
    "search_pid",
    "search_url",
    "state_dir",
    "status",
    "untraversable_parents",
    "up",
    "up_cluster",
    "up_redis",
    "up_search",
    "up_secure",
]

log = logging.getLogger(__name__)


def search_url(kind: str | None = None) -> str:
    """The URL of the local search node of `kind` (default: SYNC_LOCAL_SEARCH's)."""
    return search_distribution(kind or local_settings().search).url


def local_urls(search: str | None = None) -> ServiceUrls:
    """The URLs of the local services (whether or not they are running); `es_url` is the search
    node of kind `search` (default: SYNC_LOCAL_SEARCH's)."""
    return ServiceUrls(
        pg_url=f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{pg_port()}/{PG_DATABASE}",
        es_url=search_url(search),
    )


def up(*, postgres: bool = True, elasticsearch: bool = True, search: str | None = None) -> ServiceUrls:
    """Start (installing/initialising on first use) the local services — PostgreSQL and the
    search node of kind `search` (default: SYNC_LOCAL_SEARCH's, else Elasticsearch 9); a fast
    no-op when they already run. Returns the local URLs."""
    dist = search_distribution(search or local_settings().search)
    with _locked():
        state, runtime = _prepare_dirs()
        if postgres:
            _start_postgres(runtime)
        if elasticsearch:
            start_search_node(dist, state, runtime)
    return local_urls(dist.kind)


def up_search(kind: str) -> str:
    """Start the local search node of `kind` (one of SEARCH_KINDS; installing it on first use),
    a fast no-op when it runs; its URL once it is healthy."""
    dist = search_distribution(kind)
    with _locked():
        state, runtime = _prepare_dirs()
        return start_search_node(dist, state, runtime)


def up_secure() -> SecureUrls:
    """Start the secured Elasticsearch (HTTPS, an API key; beside the plain node, its own port)."""
    with _locked():
        state, runtime = _prepare_dirs()
        return start_secure(state, runtime)


def pg_root_cert() -> Path:
    """The certificate the local PostgreSQL serves TLS with, and verifies as its own root."""
    return pg_tls_files(_known_runtime_dir())[0]


def up_cluster() -> list[Node]:
    """Start the local three-node Elasticsearch cluster (beside the single node; its own ports)."""
    with _locked():
        state, runtime = _prepare_dirs()
        return start_cluster(state, runtime)


def cluster_nodes() -> list[Node]:
    return nodes(_known_runtime_dir())


def down_cluster() -> None:
    with _locked():
        stop_cluster(_known_runtime_dir())


def restart_cluster_node(node: Node) -> None:
    """Start one node of the cluster again (after a fault test killed it)."""
    with _locked():
        start_node(_known_runtime_dir(), node)


def up_redis() -> str:
    """The local Redis (the Celery test's broker); its URL."""
    with _locked():
        _, runtime = _prepare_dirs()
        return start_redis(runtime)


def restart_postgres(mode: str = "fast") -> None:
    """Stop and start the local PostgreSQL (fault-injection tests: a restart mid-drain). `mode`
    "immediate" stops it as a crash would: a fast shutdown waits for every logical walsender's
    client to confirm what it was sent, and a drain stopped inside its batch confirms nothing
    until wal_sender_timeout (60 s)."""
    with _locked():
        _, runtime = _prepare_dirs()
        _stop_postgres(runtime, mode)
        _start_postgres(runtime)


def down_search(kind: str) -> None:
    """Stop one local search node (data is kept); PostgreSQL and the other nodes keep running."""
    with _locked():
        stop_search_node(search_distribution(kind), _known_runtime_dir())


def down() -> None:
    """Stop the local services (data is kept)."""
    with _locked():
        runtime = _known_runtime_dir()
        stop_secure(runtime)
        stop_cluster(runtime)
        stop_redis(runtime)
        for kind in SEARCH_KINDS:
            stop_search_node(search_distribution(kind), runtime)
        _stop_postgres(runtime)


def status() -> dict[str, str]:
    """PostgreSQL's state and each search node's, by kind ("elasticsearch" is ES 9)."""
    runtime = _known_runtime_dir()
    nodes = {kind: node_status(search_distribution(kind), runtime) for kind in SEARCH_KINDS}
    return {"postgresql": _pg_status(runtime), **nodes}


def search_pid(kind: str | None = None) -> int | None:
    """Pid of the local search node of `kind` (default: SYNC_LOCAL_SEARCH's), if ours runs."""
    return node_pid(kind or local_settings().search, _known_runtime_dir())


def elasticsearch_pid() -> int | None:
    """Pid of the local search node `up()` starts, if ours is running (fault-injection tests kill it)."""
    return search_pid()


def env_lines(urls: ServiceUrls | None = None) -> list[str]:
    """Shell lines exporting the service URLs (the local ones by default)."""
    urls = urls or local_urls()
    return [
        f"export SYNC_PG_URL={shlex.quote(urls.pg_url)}",
        f"export SYNC_ES_URL={shlex.quote(urls.es_url)}",
    ]


def ensure_services() -> ServiceUrls:
    """URLs to use: SYNC_PG_URL / SYNC_ES_URL when set (nothing is started for them), the
    local services otherwise (started as needed)."""
    settings = load_settings()
    pg_url, es_url = settings.pg_url or "", settings.es_url or ""
    if pg_url and es_url:
        return ServiceUrls(pg_url=pg_url, es_url=es_url)
    local = up(postgres=not pg_url, elasticsearch=not es_url)
    return ServiceUrls(pg_url=pg_url or local.pg_url, es_url=es_url or local.es_url)


def local_dagster_storage() -> str:
    """Dagster's run history in schema `dagster` of the local dev database (made when it starts:
    the database is the project's own): the SYNC_DAGSTER_PG_URL of `--local` runs and `services env`."""
    from sync_pipeline.io.postgres import search_path_url

    return search_path_url(local_urls().pg_url, "dagster")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sync_pipeline_devtools.services",
        description="Local PostgreSQL and Elasticsearch/OpenSearch for development, tests and CI.",
    )
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument(
        "--target",
        choices=SEARCH_KINDS,
        help="the search node up starts, env names and down stops alone "
        "(default: $SYNC_LOCAL_SEARCH, else elasticsearch; down without it stops everything)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="services: %(message)s", stream=sys.stderr)
    try:
        if args.command == "up":
            started = time.monotonic()
            urls = up(search=args.target)
            print(f"SYNC_PG_URL={urls.pg_url}")
            print(f"SYNC_ES_URL={urls.es_url}")
            log.info("up in %.1fs", time.monotonic() - started)
        elif args.command == "down":
            down_search(args.target) if args.target else down()
        elif args.command == "status":
            for name, state in status().items():
                print(f"{name}: {state}")
        else:
            print("\n".join(env_lines(local_urls(args.target))))
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
