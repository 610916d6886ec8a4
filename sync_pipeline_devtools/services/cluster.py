"""A local three-node Elasticsearch cluster, for the faults a single node cannot have: a data
node lost mid-load, shards moving, primaries unassigned while a node is away.

The nodes share the plain node's install (integ-test zip) and each has its own config dir,
data, logs and ports (`SYNC_LOCAL_ES_CLUSTER_PORT`, default SYNC_LOCAL_ES_PORT + 20, and the
next ones; transport +100). Every node is master-eligible and holds data, as a small
production cluster does. Security is off: the secured node covers that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from sync_pipeline_devtools.services.distribution import (
    copy_distribution_config,
    process_env,
    search_distribution,
)
from sync_pipeline_devtools.services.java import find_java_home
from sync_pipeline_devtools.services.runtime import (
    ServiceError,
    _as_service_user,
    _chown_tree,
    _http_json,
    _owned_dir,
    _pid_alive,
    _port_in_use,
    _tail,
    local_settings,
    pid_in_file,
    run_launcher,
    stop_pid,
)
from sync_pipeline_devtools.services.search import install_node, node_paths

log = logging.getLogger(__name__)

NODES = 3


@dataclass(frozen=True)
class Node:
    number: int
    root: Path
    port: int

    @property
    def name(self) -> str:
        return f"node-{self.number}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def pidfile(self) -> Path:
        return self.root / "elasticsearch.pid"

    @property
    def stdout(self) -> Path:
        return self.root / "elasticsearch.stdout.log"


def nodes(runtime_dir: Path) -> list[Node]:
    base = local_settings().es_cluster_port
    return [Node(i, runtime_dir / "es-cluster" / f"node-{i}", base + i) for i in range(NODES)]


def _write_config(home: Path, node: Node, members: list[Node]) -> None:
    copy_distribution_config(search_distribution("elasticsearch"), home, node.config)
    settings = [
        "# written by sync_pipeline_devtools.services (cluster) on every start; edits are overwritten",
        "cluster.name: sync-pipeline-cluster",
        f"node.name: {node.name}",
        "network.host: 127.0.0.1",
        f"http.port: {node.port}",
        f"transport.port: {node.port + 100}",
        f"discovery.seed_hosts: {json.dumps([f'127.0.0.1:{m.port + 100}' for m in members])}",
        f"cluster.initial_master_nodes: {json.dumps([m.name for m in members])}",
        f"path.data: {json.dumps(str(node.root / 'data'))}",
        f"path.logs: {json.dumps(str(node.root / 'logs'))}",
        "xpack.security.enabled: false",
        "action.destructive_requires_name: false",
        "cluster.routing.allocation.disk.threshold_enabled: false",
        *local_settings().es_extra_settings,
    ]
    (node.config / "elasticsearch.yml").write_text("\n".join(settings) + "\n")
    options = node.config / "jvm.options.d"
    options.mkdir(exist_ok=True)
    (options / "sync-pipeline.options").write_text("-Xms256m\n-Xmx384m\n-XX:-HeapDumpOnOutOfMemoryError\n")
    _chown_tree(node.root)


def node_pid(node: Node) -> int | None:
    return pid_in_file(node.pidfile, node.root)


def start_node(runtime_dir: Path, node: Node) -> None:
    """Start one node (a no-op when it runs); returns once it answers HTTP."""
    if node_pid(node) is not None:
        return
    dist = search_distribution("elasticsearch")
    home = node_paths(dist, runtime_dir).home
    for port in (node.port, node.port + 100):
        if _port_in_use(port):
            raise ServiceError(
                f"port 127.0.0.1:{port} is taken (cluster node {node.name}); set SYNC_LOCAL_ES_CLUSTER_PORT"
            )
    for directory in (node.root, node.root / "data", node.root / "logs", node.root / "tmp"):
        _owned_dir(directory)
    _write_config(home, node, nodes(runtime_dir))
    env = process_env(dist, find_java_home(), node.root / "tmp", node.config, node.root)
    node.pidfile.unlink(missing_ok=True)
    cmd = _as_service_user([str(home / "bin" / "elasticsearch"), "-d", "-p", str(node.pidfile)])
    timeout = float(local_settings().es_start_timeout)
    with open(node.stdout, "wb") as out:
        rc = run_launcher(cmd, out, env, node.root, timeout)
    if rc != 0:
        raise ServiceError(f"cluster node {node.name} failed to start (exit {rc})\n{_tail(node.stdout)}")


def wait_status(node: Node, wanted: tuple[str, ...], timeout: float) -> str:
    """Wait until the cluster, asked through `node`, reports one of `wanted` health statuses."""
    deadline = time.monotonic() + timeout
    status = "unreachable"
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
            status = _http_json(f"{node.url}/_cluster/health?timeout=2s", timeout=5).get("status", status)
            if status in wanted:
                return status
        time.sleep(0.5)
    raise ServiceError(
        f"the local cluster did not reach {'/'.join(wanted)} in {timeout:.0f}s (last: {status})"
    )


def start_cluster(state: Path, runtime_dir: Path) -> list[Node]:
    """All three nodes, formed into one cluster (green or yellow)."""
    install_node(search_distribution("elasticsearch"), state, runtime_dir)
    members = nodes(runtime_dir)
    for node in members:
        start_node(runtime_dir, node)
    wait_status(members[0], ("green", "yellow"), float(local_settings().es_start_timeout))
    found = _http_json(f"{members[0].url}/_cat/nodes?format=json&h=name", timeout=5)
    if len(found) != NODES:  # a node still joining
        time.sleep(2)
    return members


def kill_node(node: Node) -> None:
    pid = node_pid(node)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    node.pidfile.unlink(missing_ok=True)


def stop_cluster(runtime_dir: Path) -> None:
    for node in nodes(runtime_dir):
        pid = node_pid(node)
        if pid is not None:
            stop_pid(pid, what=f"cluster node {node.name}")
        node.pidfile.unlink(missing_ok=True)
