"""A local Redis (Debian's `redis-server`), the broker of the Celery executor in the test that
runs a backfill on workers in separate processes (docs/scaling.md). Loopback only, nothing
persisted; port SYNC_LOCAL_REDIS_PORT (default SYNC_LOCAL_PG_PORT + 947: 56379)."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

from sync_pipeline_devtools.services.runtime import (
    ServiceError,
    _as_service_user,
    _is_root,
    _owned_dir,
    _run,
    apt_install,
    local_settings,
    pid_in_file,
    stop_pid,
)


def redis_url(db: int = 0) -> str:
    return f"redis://127.0.0.1:{local_settings().redis_port}/{db}"


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _server() -> str:
    found = shutil.which("redis-server")
    if found is None and _is_root() and shutil.which("apt-get"):
        apt_install("redis-server", what="Redis")
        found = shutil.which("redis-server")
    if found is None:
        raise ServiceError("redis-server is not installed (apt-get install redis-server)")
    return found


def start_redis(runtime_dir: Path) -> str:
    """Start Redis unless it answers already; its URL."""
    port = local_settings().redis_port
    if _ping(port):
        return redis_url()
    root = runtime_dir / "redis"
    _owned_dir(root)
    # a Debian install starts its own redis on 6379 too: ours is a separate, throwaway instance
    cmd = [_server(), "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes", "--save", "",
           "--appendonly", "no", "--dir", str(root), "--pidfile", str(root / "redis.pid"),
           "--logfile", str(root / "redis.log")]  # fmt: skip
    _run(_as_service_user(cmd), what="starting Redis", cwd=root)
    deadline = time.monotonic() + 20
    while not _ping(port):
        if time.monotonic() > deadline:
            raise ServiceError(f"Redis on 127.0.0.1:{port} did not answer PING within 20s")
        time.sleep(0.2)
    return redis_url()


def stop_redis(runtime_dir: Path) -> None:
    root = runtime_dir / "redis"
    pid = pid_in_file(root / "redis.pid", "redis-server")
    if pid is not None:
        stop_pid(pid, grace=10, what="Redis")
