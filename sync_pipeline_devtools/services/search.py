"""A local search node — Elasticsearch 9 (the default), Elasticsearch 8, OpenSearch 2 or 3 —
from its `integ-test-zip` (see `distribution`), configured as a plain loopback single node on
its own ports, run as the service user, with a pid file, its log's tail on a failure, and a
wait until it is healthy. Every kind goes through the same code; `Distribution` says how they
differ."""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from sync_pipeline_devtools.services.distribution import (
    Distribution,
    install,
    process_env,
    search_distribution,
)
from sync_pipeline_devtools.services.java import find_java_home
from sync_pipeline_devtools.services.runtime import (
    ServiceError,
    _as_service_user,
    _chown_tree,
    _cmdline,
    _http_json,
    _owned_dir,
    _port_in_use,
    _tail,
    local_settings,
    pid_in_file,
    run_launcher,
    stop_pid,
)
from sync_pipeline_devtools.settings import DEFAULT_LOCAL_ES_PORT

log = logging.getLogger(__name__)

DEFAULT_ES_PORT = DEFAULT_LOCAL_ES_PORT
CLUSTER_NAME = "sync-pipeline-dev"
PIDFILE_GRACE = 30.0  # OpenSearch's `-d` returns before the JVM has written its pid file


HTTP_MAX_CONTENT_MB = 32  # the local nodes' http.max_content_length


def es_port() -> int:
    return local_settings().es_port


def es_transport_port() -> int:
    return search_distribution("elasticsearch").transport_port


def es_version() -> str:
    return local_settings().es_version


@dataclass(frozen=True)
class NodePaths:
    root: Path  # owned by the service user
    home: Path  # the unzipped distribution
    data: Path
    logs: Path
    tmp: Path
    pidfile: Path
    stdout: Path

    @property
    def server_log(self) -> Path:
        return self.logs / f"{CLUSTER_NAME}.log"  # <cluster.name>.log


def node_paths(dist: Distribution, runtime_dir: Path) -> NodePaths:
    root = runtime_dir / dist.dir_name
    return NodePaths(
        root=root,
        home=root / f"{dist.product}-{dist.version}",
        # one data dir per version: a node cannot open data written by a newer version
        data=root / f"data-{dist.version}",
        logs=root / "logs",
        tmp=root / "tmp",
        pidfile=root / f"{dist.product}.pid",
        stdout=root / f"{dist.product}.stdout.log",
    )


def install_node(dist: Distribution, state: Path, runtime_dir: Path) -> Path:
    """The distribution unpacked (fetched first if needed); its home."""
    paths = node_paths(dist, runtime_dir)
    install(dist, paths.root, paths.home, state / "cache")
    return paths.home


def _log_tail(paths: NodePaths) -> str:
    return _tail(paths.server_log if paths.server_log.exists() else paths.stdout)


def _write_config(dist: Distribution, paths: NodePaths) -> None:
    config = paths.home / "config"
    settings = [
        "# written by sync_pipeline_devtools.services on every start; edits are overwritten",
        f"cluster.name: {CLUSTER_NAME}",
        f"node.name: {CLUSTER_NAME}",
        # single-node discovery + a loopback-only bind keep the node in "development mode":
        # bootstrap checks (vm.max_map_count >= 262144, file descriptors, heap min == max) only warn
        "discovery.type: single-node",
        "network.host: 127.0.0.1",
        f"http.port: {dist.port}",
        f"transport.port: {dist.transport_port}",
        f"path.data: {json.dumps(str(paths.data))}",  # a JSON string is a valid YAML scalar
        f"path.logs: {json.dumps(str(paths.logs))}",
        "action.destructive_requires_name: false",
        # a nearly full dev disk must not flip indices to read-only
        "cluster.routing.allocation.disk.threshold_enabled: false",
        # below the 100mb default so the suite can produce a real 413 (a request over the limit)
        # with a document of a reasonable size; far above a load's bodies (bulk_max_mb: 5 MiB)
        f"http.max_content_length: {HTTP_MAX_CONTENT_MB}mb",
    ]
    if (paths.home / "modules" / "x-pack-security").is_dir():
        # the ES integ-test-zip ships x-pack-security: left on, the first start auto-generates TLS
        # certs (~35 s) and serves HTTPS only; a loopback dev node wants plain HTTP, no auth
        settings.append("xpack.security.enabled: false")
    # extra node settings, one per line (fault-injection tests start a node with a tiny write queue)
    settings += local_settings().es_extra_settings
    (config / dist.config_file).write_text("\n".join(settings) + "\n")
    options = config / "jvm.options.d"
    options.mkdir(exist_ok=True)
    # no heap dumps on OOM (enabled by default): a dev node would litter its dir with 1 GB files
    (options / "sync-pipeline.options").write_text("-Xms512m\n-Xmx1g\n-XX:-HeapDumpOnOutOfMemoryError\n")
    _chown_tree(config)


def _node_pid(paths: NodePaths) -> int | None:
    """The pid of our running node (pidfile + /proc check), else None."""
    return pid_in_file(paths.pidfile, paths.root)


def node_pid(kind: str, runtime_dir: Path) -> int | None:
    return _node_pid(node_paths(search_distribution(kind), runtime_dir))


def _health(port: int, timeout: float = 3.0) -> str | None:
    try:
        return _http_json(f"http://127.0.0.1:{port}/_cluster/health", timeout=timeout).get("status")
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _wait_healthy(dist: Distribution, paths: NodePaths, timeout: float) -> None:
    started = time.monotonic()
    while True:
        status = _health(dist.port)
        if status in ("yellow", "green"):
            return
        waited = time.monotonic() - started
        if _node_pid(paths) is None and (paths.pidfile.exists() or waited > PIDFILE_GRACE):
            raise ServiceError(f"{dist.title} exited during startup\n{_log_tail(paths)}")
        if waited > timeout:
            raise ServiceError(
                f"{dist.title} on 127.0.0.1:{dist.port} was not healthy after {timeout:.0f}s "
                f"(last status: {status or 'unreachable'}; SYNC_ES_START_TIMEOUT raises the limit)\n"
                f"{_log_tail(paths)}"
            )
        time.sleep(0.5)


def _is_our_port(dist: Distribution, paths: NodePaths) -> bool:
    try:
        return f"http.port: {dist.port}\n" in (paths.home / "config" / dist.config_file).read_text()
    except OSError:
        return False


def start_search_node(dist: Distribution, state: Path, runtime_dir: Path) -> str:
    """Start the node (installing it first if needed); a no-op when ours runs. Its URL."""
    timeout = float(local_settings().es_start_timeout)
    paths = node_paths(dist, runtime_dir)
    down_first = "run `python -m sync_pipeline_devtools.services down` first"
    pid = _node_pid(paths)
    if pid is not None:
        if str(paths.home) not in _cmdline(pid):
            raise ServiceError(
                f"our {dist.name} (pid {pid}) runs another version than {dist.version}; {down_first}"
            )
        if not _is_our_port(dist, paths):
            raise ServiceError(
                f"our {dist.name} (pid {pid}) was started on another port than {dist.port} "
                f"({dist.port_setting}); {down_first}"
            )
        _wait_healthy(dist, paths, timeout)
        return dist.url

    for port in (dist.port, dist.transport_port):
        if _port_in_use(port):
            raise ServiceError(
                f"port 127.0.0.1:{port} is taken by another process (not our {dist.title}); stop it or "
                f"choose another HTTP port with {dist.port_setting} (transport uses port+100)"
            )
    java_home = find_java_home(dist.min_java, dist.max_java, dist.java_env, dist.name)
    install(dist, paths.root, paths.home, state / "cache")
    shutil.rmtree(paths.tmp, ignore_errors=True)  # scratch from earlier runs
    for directory in (paths.data, paths.logs, paths.tmp):
        _owned_dir(directory)
    _write_config(dist, paths)
    paths.pidfile.unlink(missing_ok=True)

    env = process_env(dist, java_home, paths.tmp, paths.home / "config", paths.root)
    cmd = _as_service_user([str(paths.home / "bin" / dist.product), "-d", "-p", str(paths.pidfile)])
    log.info("starting %s on 127.0.0.1:%s (Java %s)", dist.title, dist.port, java_home)
    started = time.monotonic()
    # `-d`: Elasticsearch returns once the node has started (or failed), OpenSearch at once; the
    # output before the node's own log opens goes to the stdout log
    with open(paths.stdout, "wb") as out:
        try:
            rc = run_launcher(cmd, out, env, paths.root, timeout)
        except subprocess.TimeoutExpired:
            stop_search_node(dist, runtime_dir)
            limit = f"{timeout:.0f}s (SYNC_ES_START_TIMEOUT)"
            raise ServiceError(f"{dist.title} did not start within {limit}\n{_log_tail(paths)}") from None
    if rc != 0:
        raise ServiceError(
            f"{dist.title} failed to start (exit {rc}): {shlex.join(cmd)}\n{_tail(paths.stdout)}"
        )
    _wait_healthy(dist, paths, max(10.0, timeout - (time.monotonic() - started)))
    log.info("%s is up after %.1fs", dist.title, time.monotonic() - started)
    return dist.url


def stop_search_node(dist: Distribution, runtime_dir: Path) -> None:
    paths = node_paths(dist, runtime_dir)  # the pidfile and its check do not depend on the version
    pid = _node_pid(paths)
    if pid is None:
        return
    log.info("stopping %s (pid %s)", dist.name, pid)
    stop_pid(pid, what=dist.name)
    paths.pidfile.unlink(missing_ok=True)


def node_status(dist: Distribution, runtime_dir: Path) -> str:
    pid = _node_pid(node_paths(dist, runtime_dir))
    if pid is None:
        return "stopped"
    health = _health(dist.port)
    if health is None:
        return f"not responding on 127.0.0.1:{dist.port} (pid {pid})"
    return f"running on 127.0.0.1:{dist.port} ({health})"


# the default Elasticsearch node, by the names the rest of the package and its tests use


def _start_elasticsearch(state: Path, runtime_dir: Path) -> None:
    start_search_node(search_distribution("elasticsearch"), state, runtime_dir)


def _stop_elasticsearch(runtime_dir: Path) -> None:
    stop_search_node(search_distribution("elasticsearch"), runtime_dir)


def _es_status(runtime_dir: Path) -> str:
    return node_status(search_distribution("elasticsearch"), runtime_dir)
