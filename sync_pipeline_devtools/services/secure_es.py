"""A second local Elasticsearch with security and HTTPS on, as a default install has them.

The same integ-test-zip install as the plain node (it ships x-pack-security and
`elasticsearch-certutil`), its own config, data and ports: a CA and a node certificate
from certutil, TLS on HTTP and transport, a file-realm superuser for setting up, and a
file-realm user for sync_pipeline itself with a file-based role — what `services env
--secure` exports. The plain node keeps serving the rest of the suite meanwhile.

Why not an API key: Elasticsearch keeps API keys (and native users and roles) in its
`.security` index, whose mapping uses an analysis-common filter (`pattern_capture`) that
the integ-test zip lacks, so creating one fails there. The file realm and `roles.yml` need
no index; on a full distribution `SYNC_ES_API_KEY` takes the same client path.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
import ssl
import time
import urllib.error
import urllib.request
import zipfile
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
    _owned_dir,
    _port_in_use,
    _run,
    _tail,
    local_settings,
    pid_in_file,
    run_launcher,
    stop_pid,
)
from sync_pipeline_devtools.services.search import install_node, node_paths

log = logging.getLogger(__name__)

ADMIN_USER = "sync_admin"
SYNC_USER = "sync_pipeline"
SYNC_ROLE = "sync_pipeline_local"
# what the local user may do: everything sync_pipeline does, on every index (for the least
# privilege a spec needs, see `sync-pipeline grants`)
ROLES = f"""# written by sync_pipeline_devtools.services (secure node); roles tests add are appended below
{SYNC_ROLE}:
  cluster: [monitor]
  indices:
    - names: ["*"]
      privileges: [all]
      allow_restricted_indices: false
"""


@dataclass(frozen=True)
class SecureUrls:
    es_url: str
    username: str
    password: str
    ca_certs: Path

    def env_lines(self) -> list[str]:
        return [
            f"export SYNC_ES_URL={self.es_url}",
            f"export SYNC_ES_USERNAME={self.username}",
            f"export SYNC_ES_PASSWORD={self.password}",
            f"export SYNC_ES_CA_CERTS={self.ca_certs}",
        ]


@dataclass(frozen=True)
class _Paths:
    root: Path
    config: Path
    data: Path
    logs: Path
    tmp: Path
    pidfile: Path
    stdout: Path
    credentials: Path  # the admin password and the API key (0600, the service user's)

    @property
    def ca(self) -> Path:
        return self.config / "certs" / "ca" / "ca.crt"


def secure_port() -> int:
    return local_settings().es_secure_port


def _paths(runtime_dir: Path, version: str) -> _Paths:
    root = runtime_dir / "es-secure"
    return _Paths(
        root=root,
        config=root / "config",
        data=root / f"data-{version}",
        logs=root / "logs",
        tmp=root / "tmp",
        pidfile=root / "elasticsearch.pid",
        stdout=root / "elasticsearch.stdout.log",
        credentials=root / "credentials.json",
    )


def _tool_env(home: Path, paths: _Paths, java_home: Path) -> dict[str, str]:
    return process_env(search_distribution("elasticsearch"), java_home, paths.tmp, paths.config, paths.root)


def _tool(home: Path, paths: _Paths, env: dict[str, str], name: str, *args: str) -> str:
    cmd = _as_service_user([str(home / "bin" / name), *args])
    return _run(cmd, what=f"{name} {args[0]}", timeout=180, env=env, cwd=paths.root)


def _certificates(home: Path, paths: _Paths, env: dict[str, str]) -> None:
    """A CA and a certificate for 127.0.0.1/localhost signed by it, once."""
    certs = paths.config / "certs"
    if (certs / "node" / "node.crt").exists() and paths.ca.exists():
        return
    _owned_dir(certs)
    _tool(
        home, paths, env, "elasticsearch-certutil", "ca", "--pem", "--silent", "--out", str(certs / "ca.zip")
    )
    with zipfile.ZipFile(certs / "ca.zip") as zf:
        zf.extractall(certs)
    _chown_tree(certs)
    _tool(
        home, paths, env, "elasticsearch-certutil", "cert", "--pem", "--silent",
        "--ca-cert", str(certs / "ca" / "ca.crt"), "--ca-key", str(certs / "ca" / "ca.key"),
        "--name", "node", "--dns", "localhost", "--ip", "127.0.0.1", "--out", str(certs / "node.zip"),
    )  # fmt: skip
    with zipfile.ZipFile(certs / "node.zip") as zf:
        zf.extractall(certs)
    _chown_tree(certs)


def _write_config(home: Path, paths: _Paths) -> None:
    copy_distribution_config(search_distribution("elasticsearch"), home, paths.config)
    port = secure_port()
    tls = [
        "key: certs/node/node.key",
        "certificate: certs/node/node.crt",
        "certificate_authorities: certs/ca/ca.crt",
    ]
    settings = [
        "# written by sync_pipeline_devtools.services (secure node) on every start; edits are overwritten",
        "cluster.name: sync-pipeline-secure",
        "node.name: sync-pipeline-secure",
        "discovery.type: single-node",
        "network.host: 127.0.0.1",
        f"http.port: {port}",
        f"transport.port: {port + 100}",
        f"path.data: {json.dumps(str(paths.data))}",
        f"path.logs: {json.dumps(str(paths.logs))}",
        "cluster.routing.allocation.disk.threshold_enabled: false",
        "xpack.security.enabled: true",
        "xpack.security.http.ssl.enabled: true",
        *(f"xpack.security.http.ssl.{line}" for line in tls),
        "xpack.security.transport.ssl.enabled: true",
        "xpack.security.transport.ssl.verification_mode: certificate",
        *(f"xpack.security.transport.ssl.{line}" for line in tls),
        "xpack.security.authc.api_key.enabled: true",
    ]
    (paths.config / "elasticsearch.yml").write_text("\n".join(settings) + "\n")
    roles = paths.config / "roles.yml"
    if not roles.exists() or not roles.read_text().startswith(ROLES.splitlines()[0]):
        roles.write_text(ROLES)
    options = paths.config / "jvm.options.d"
    options.mkdir(exist_ok=True)
    (options / "sync-pipeline.options").write_text("-Xms256m\n-Xmx512m\n-XX:-HeapDumpOnOutOfMemoryError\n")
    _chown_tree(paths.config)


def _credentials(paths: _Paths) -> dict:
    try:
        return json.loads(paths.credentials.read_text())
    except (OSError, ValueError):
        return {}


def _save_credentials(paths: _Paths, found: dict) -> None:
    paths.credentials.write_text(json.dumps(found))
    paths.credentials.chmod(0o600)
    _chown_tree(paths.credentials)


def add_user(home: Path, paths: _Paths, env: dict[str, str], user: str, password: str, role: str) -> None:
    """A file-realm user (Elasticsearch reloads the file within seconds, running or not)."""
    with contextlib.suppress(ServiceError):
        _tool(home, paths, env, "elasticsearch-users", "userdel", user)
    _tool(home, paths, env, "elasticsearch-users", "useradd", user, "-p", password, "-r", role)


def _users(home: Path, paths: _Paths, env: dict[str, str]) -> dict:
    """The setup superuser and sync_pipeline's own user, their passwords kept 0600."""
    found = _credentials(paths)
    users = paths.config / "users"
    listed = users.read_text() if users.exists() else ""
    if found.get("admin_password") and f"{ADMIN_USER}:" in listed and f"{SYNC_USER}:" in listed:
        return found
    found = {"admin_password": secrets.token_urlsafe(18), "sync_password": secrets.token_urlsafe(18)}
    add_user(home, paths, env, ADMIN_USER, found["admin_password"], "superuser")
    add_user(home, paths, env, SYNC_USER, found["sync_password"], SYNC_ROLE)
    _save_credentials(paths, found)
    return found


def request(
    paths: _Paths, method: str, path: str, authorization: str, body: dict | None = None, timeout: float = 10.0
) -> dict:
    """One HTTPS call to the secure node, trusting its CA."""
    context = ssl.create_default_context(cafile=str(paths.ca))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": authorization, "Content-Type": "application/json"}
    call = urllib.request.Request(f"https://127.0.0.1:{secure_port()}{path}", data, headers, method=method)
    with opener.open(call, timeout=timeout) as response:
        return json.loads(response.read().decode() or "{}")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _pid(paths: _Paths) -> int | None:
    return pid_in_file(paths.pidfile, paths.root)


def _wait_healthy(paths: _Paths, admin: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "unreachable"
    while time.monotonic() < deadline:
        try:
            status = request(paths, "GET", "/_cluster/health", basic(ADMIN_USER, admin), timeout=3).get(
                "status"
            )
            if status in ("yellow", "green"):
                return
            last = str(status)
        except (OSError, ValueError, urllib.error.URLError) as exc:
            last = str(exc)
        if _pid(paths) is None:
            raise ServiceError(f"the secure Elasticsearch exited during startup\n{_tail(paths.stdout)}")
        time.sleep(0.5)
    raise ServiceError(f"the secure Elasticsearch was not healthy after {timeout:.0f}s ({last})")


def start_secure(state: Path, runtime_dir: Path) -> SecureUrls:
    """Start the secure node (installing, certificates, users on first use); its URL, API key, CA."""
    local = local_settings()
    version, port, timeout = local.es_version, local.es_secure_port, float(local.es_start_timeout)
    home = install_node(search_distribution("elasticsearch"), state, runtime_dir)
    paths = _paths(runtime_dir, version)
    java_home = find_java_home()
    for directory in (paths.root, paths.config, paths.data, paths.logs, paths.tmp):
        _owned_dir(directory)
    env = _tool_env(home, paths, java_home)
    if _pid(paths) is None:
        for p in (port, port + 100):
            if _port_in_use(p):
                raise ServiceError(
                    f"port 127.0.0.1:{p} is taken (the secure Elasticsearch uses SYNC_LOCAL_ES_SECURE_PORT "
                    "and +100); stop that process or choose another port"
                )
        _write_config(home, paths)
        _certificates(home, paths, env)
        _users(home, paths, env)
        paths.pidfile.unlink(missing_ok=True)
        cmd = _as_service_user([str(home / "bin" / "elasticsearch"), "-d", "-p", str(paths.pidfile)])
        log.info("starting the secure Elasticsearch %s on https://127.0.0.1:%s", version, port)
        with open(paths.stdout, "wb") as out:
            rc = run_launcher(cmd, out, env, paths.root, timeout)
        if rc != 0:
            raise ServiceError(f"the secure Elasticsearch failed to start (exit {rc})\n{_tail(paths.stdout)}")
    found = _users(home, paths, env)
    _wait_healthy(paths, found["admin_password"], timeout)
    return SecureUrls(f"https://127.0.0.1:{port}", SYNC_USER, found["sync_password"], paths.ca)


def secure_admin(runtime_dir: Path) -> tuple[_Paths, str]:
    """The secure node's paths and its superuser's Authorization header (tests look with it)."""
    paths = _paths(runtime_dir, local_settings().es_version)
    return paths, basic(ADMIN_USER, _credentials(paths)["admin_password"])


def add_role(runtime_dir: Path, name: str, definition: str, user: str, password: str) -> None:
    """A file-based role (YAML text, indented as under its name) and a user holding only it."""
    version = local_settings().es_version
    paths = _paths(runtime_dir, version)
    home = node_paths(search_distribution("elasticsearch"), runtime_dir).home
    roles = paths.config / "roles.yml"
    roles.write_text(roles.read_text() + f"{name}:\n{definition}")
    add_user(home, paths, _tool_env(home, paths, find_java_home()), user, password, name)


def stop_secure(runtime_dir: Path) -> None:
    paths = _paths(runtime_dir, local_settings().es_version)
    pid = _pid(paths)
    if pid is not None:
        stop_pid(pid, what="the secure Elasticsearch")
    paths.pidfile.unlink(missing_ok=True)
