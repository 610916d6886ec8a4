"""What both local services share: settings, the state and runtime dirs, the lock, the
unprivileged service user, and process, port and apt helpers."""

from __future__ import annotations

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
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sync_pipeline.settings import Settings, SettingsError, load
from sync_pipeline_devtools import settings as local_settings_module
from sync_pipeline_devtools.settings import PROJECT_ROOT, LocalServiceSettings

log = logging.getLogger(__name__)

SERVICE_USER = "syncpipe"  # unprivileged account used when we run as root
FALLBACK_RUNTIME_BASE = Path("/var/tmp")
LOG_TAIL_LINES = 40


class ServiceError(RuntimeError):
    """A local service could not be installed, started, stopped or inspected."""


@dataclass(frozen=True)
class ServiceUrls:
    pg_url: str
    es_url: str


# ---------------------------------------------------------------------------------------------
# configuration


def load_settings() -> Settings:
    """`sync_pipeline.settings.load()`, its errors as ServiceError (same message), so callers
    of the services see one exception type."""
    try:
        return load()
    except SettingsError as exc:
        raise ServiceError(str(exc)) from None


def local_settings() -> LocalServiceSettings:
    """`sync_pipeline_devtools.settings.load()` (the SYNC_LOCAL_* ports, the state dir, …), its
    errors as ServiceError."""
    try:
        return local_settings_module.load()
    except SettingsError as exc:
        raise ServiceError(str(exc)) from None


def state_dir() -> Path:
    return local_settings().services_dir


def _is_root() -> bool:
    # tests patch this attribute: the other modules call it as `runtime._is_root()`
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
        gitignore.write_text("# local services state (sync_pipeline_devtools.services)\n*\n")
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
def _locked(timeout: float = 1800.0, name: str = ".lock") -> Iterator[None]:
    """Serialise up/down (or, with another `name`, apt) across processes (fcntl locks are
    released when the process dies)."""
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    lock_file = state / name
    with open(lock_file, "a+") as handle:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    log.info("waiting for another process holding %s", lock_file)
                    announced = True
                if time.monotonic() > deadline:
                    raise ServiceError(f"timed out after {timeout:.0f}s waiting for {lock_file}") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# the service user


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


def pid_in_file(pidfile: Path, owner: Path | str) -> int | None:
    """The pid a pidfile names if that process runs and is ours (its command line names `owner`,
    a dir of our install: a guard against pid reuse), else None."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) and str(owner) in _cmdline(pid) else None


def run_launcher(cmd: list[str], out: IO[bytes], env: dict[str, str], cwd: Path, timeout: float) -> int:
    """Run a server's launcher (`bin/elasticsearch -d`, …) to its exit, its output to `out`; the exit
    code. Raises subprocess.TimeoutExpired after `timeout` seconds.

    The server gets SIGTERM's default disposition whatever ours is: an ignored signal stays ignored
    across exec, and a JVM that starts with SIGTERM ignored installs no shutdown hook, so every
    stop would wait out stop_pid's grace and end in SIGKILL (a process that has run Dagster in the
    background has SIGTERM ignored: unit/test_sigterm_kept.py)."""
    return subprocess.run(
        cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
        timeout=timeout, preexec_fn=_default_sigterm,
    ).returncode  # fmt: skip


def _default_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stop_pid(pid: int, grace: float = 60.0, what: str = "process") -> None:
    """SIGTERM, then SIGKILL if it is still there after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.3)
    if _pid_alive(pid):
        log.warning("%s (pid %s) ignored SIGTERM for %.0fs: SIGKILL", what, pid, grace)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(1)


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


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


# ---------------------------------------------------------------------------------------------
# Debian packages (as root)

_apt_updated = False  # `apt-get update` runs at most once per process


def apt_install(package: str, *, what: str) -> None:
    """`apt-get update` (once per process), then `apt-get install -y <package>`, noninteractive,
    logged to <state dir>/apt.log; serialised across our processes (dpkg takes one at a time).
    The caller checks that we are root and apt-get exists."""
    global _apt_updated
    log_file = state_dir() / "apt.log"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("%s not found: installing the Debian `%s` package (log: %s)", what, package, log_file)
    with _locked(name=".apt.lock"), open(log_file, "a") as out:
        steps = [["apt-get", "install", "-y", package]]
        if not _apt_updated:
            steps.insert(0, ["apt-get", "update"])
        for cmd in steps:
            out.write(f"$ {shlex.join(cmd)}\n")
            out.flush()
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
            if rc != 0:
                raise ServiceError(_failure(f"{shlex.join(cmd)} failed (exit {rc})", log_file))
        _apt_updated = True
