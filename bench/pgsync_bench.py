"""PGSync against the same Elasticsearch: setup, one timed full sync, teardown.

PGSync needs logical decoding (wal_level = logical), which the shared dev
cluster does not have and must not be restarted for; so a throwaway cluster is
initdb'ed on 127.0.0.1:55440 (as the unprivileged service user when we are
root, like sync_pipeline_devtools.services does), seeded with the same bench_products
rows, next to a Redis on 127.0.0.1:56379. PGSync lives in its own venv
(bench/.pgsync-venv, git-ignored) so its pinned dependencies never touch ours.

Every step records what went wrong instead of raising: "PGSync could not run,
because …" is a valid benchmark outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import common, measure

PGSYNC_VERSION = "7.3.0"
VENV = common.BENCH_DIR / ".pgsync-venv"
SHIM = common.BENCH_DIR / "pgsync_shim.py"
PG_PORT = 55440
REDIS_PORT = 56379
RUNTIME = Path("/var/tmp/sync-pipeline-bench-pgsync")
DATABASE = "bench"
INDEX = "bench_pgsync"


class SetupError(RuntimeError):
    pass


def _run(cmd: list[str], what: str, timeout: float = 600, **kw: Any) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise SetupError(f"{what} failed (exit {proc.returncode}): {tail}")
    return proc.stdout


# --- venv and redis ---------------------------------------------------------------------------


def ensure_venv() -> Path:
    """bench/.pgsync-venv with pgsync installed from PyPI (pinned); returns its python."""
    python = VENV / "bin" / "python"
    if (VENV / "bin" / "pgsync").exists():
        return python
    base = shutil.which("python3.11") or sys.executable
    _run([base, "-m", "venv", str(VENV)], "creating bench/.pgsync-venv")
    _run([str(python), "-m", "pip", "install", "-q", f"pgsync=={PGSYNC_VERSION}"], "pip install pgsync")
    return python


def pgsync_versions(python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({n: m.version(n) for n in "
        "('pgsync', 'elasticsearch', 'elastic-transport', 'elasticsearch-dsl', 'opensearch-py', 'redis')}))"
    )
    return json.loads(_run([str(python), "-c", code], "reading pgsync versions"))


def ensure_redis() -> dict[str, Any]:
    server = shutil.which("redis-server")
    if server is None:
        if os.geteuid() != 0:
            raise SetupError("redis-server is not installed (apt-get install redis-server needs root)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "install", "-y", "-q", "redis-server"], "apt-get install redis-server", env=env)
        server = shutil.which("redis-server")
        if server is None:
            raise SetupError("redis-server still missing after apt-get install")
    RUNTIME.mkdir(parents=True, exist_ok=True)
    if _redis_ping():
        return {"redis": server, "port": REDIS_PORT, "started": False}
    pidfile = RUNTIME / "redis.pid"
    cmd = [server, "--bind", "127.0.0.1", "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no"]
    cmd += ["--daemonize", "yes", "--pidfile", str(pidfile), "--dir", str(RUNTIME)]
    cmd += ["--logfile", str(RUNTIME / "redis.log")]
    _run(cmd, "starting redis-server")
    deadline = time.monotonic() + 20
    while not _redis_ping():
        if time.monotonic() > deadline:
            raise SetupError("redis-server did not answer PING on 127.0.0.1:56379")
        time.sleep(0.2)
    return {"redis": server, "port": REDIS_PORT, "started": True}


def _redis_command(*parts: str) -> str:
    import socket

    payload = f"*{len(parts)}\r\n" + "".join(f"${len(p)}\r\n{p}\r\n" for p in parts)
    with socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=2) as sock:
        sock.sendall(payload.encode())
        return sock.recv(4096).decode(errors="replace")


def _redis_ping() -> bool:
    try:
        return "PONG" in _redis_command("PING")
    except OSError:
        return False


def stop_redis() -> None:
    with contextlib.suppress(OSError):
        _redis_command("SHUTDOWN", "NOSAVE")


# --- the throwaway PostgreSQL cluster (wal_level = logical) -----------------------------------


def _pg_bin() -> Path:
    from sync_pipeline_devtools.services import find_pg_bin_dir

    return find_pg_bin_dir()


def _as_service_user(cmd: list[str]) -> list[str]:
    from sync_pipeline_devtools.services import (
        _as_service_user as wrap,  # the project's root → syncpipe wrapper
    )

    return wrap(cmd)


def _chown(path: Path) -> None:
    from sync_pipeline_devtools.services import _service_user

    user = _service_user()
    if user is not None:
        for root, dirs, files in os.walk(path):
            os.lchown(root, user.pw_uid, user.pw_gid)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def pg_url() -> str:
    return f"postgresql://postgres@127.0.0.1:{PG_PORT}/{DATABASE}"


def ensure_cluster() -> dict[str, Any]:
    bin_dir = _pg_bin()
    data, sockets, log = RUNTIME / "pg" / "data", RUNTIME / "pg" / "run", RUNTIME / "pg" / "postgresql.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C.UTF-8"}
    RUNTIME.mkdir(parents=True, exist_ok=True)
    os.chmod(RUNTIME, 0o755)
    if not (data / "PG_VERSION").exists():
        shutil.rmtree(data, ignore_errors=True)
        (RUNTIME / "pg").mkdir(parents=True, exist_ok=True)
        _chown(RUNTIME / "pg")
        # trust on loopback only: a throwaway cluster for one benchmark, never reachable from outside
        cmd = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--no-locale"]
        cmd += ["--auth-local=trust", "--auth-host=trust"]
        _run(_as_service_user(cmd), "initdb (pgsync cluster)", env=env, cwd=str(RUNTIME / "pg"))
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# --- bench/pgsync_bench.py: throwaway cluster for PGSync ---\n"
                "listen_addresses = '127.0.0.1'\n"
                "wal_level = logical\nmax_replication_slots = 8\nmax_wal_senders = 8\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "shared_buffers = 256MB\nmax_connections = 50\n"
            )
    sockets.mkdir(parents=True, exist_ok=True)
    _chown(RUNTIME / "pg")
    ready = subprocess.run(
        [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(PG_PORT)], capture_output=True
    )
    if ready.returncode != 0:
        cmd = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60"]
        cmd += ["-o", f"-p {PG_PORT} -k {sockets}", "start"]
        _run(
            _as_service_user(cmd), "starting the pgsync PostgreSQL cluster", env=env, cwd=str(RUNTIME / "pg")
        )
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            conn.execute(f"CREATE DATABASE {DATABASE}")
        version = conn.execute("SHOW server_version").fetchone()[0]
        wal = conn.execute("SHOW wal_level").fetchone()[0]
    return {"port": PG_PORT, "server_version": version, "wal_level": wal, "data": str(data)}


def stop_cluster() -> None:
    data = RUNTIME / "pg" / "data"
    if not (data / "postmaster.pid").exists():
        return
    cmd = [str(_pg_bin() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    with contextlib.suppress(SetupError):
        _run(_as_service_user(cmd), "stopping the pgsync cluster", env=env, cwd=str(RUNTIME / "pg"))


def seed(rows: int) -> float:
    import sqlalchemy as sa

    from sync_pipeline.io.postgres import engine_for

    started = time.perf_counter()
    with engine_for(pg_url()).begin() as conn:
        for statement in common.seed_statements():
            conn.execute(sa.text(statement), {"rows": rows} if ":rows" in statement else {})
    return time.perf_counter() - started


# --- running pgsync -----------------------------------------------------------------------------

COLUMNS = [
    "id", "sku", "name", "description", "category", "brand", "price", "stock", "rating",
    "weight_kg", "tags", "attributes", "created_at", "updated_at",
]  # fmt: skip


def write_schema(path: Path) -> None:
    schema = [
        {
            "database": DATABASE,
            "index": INDEX,
            "nodes": {"table": common.TABLE, "schema": "public", "columns": COLUMNS},
        }
    ]
    path.write_text(json.dumps(schema, indent=2))


def pgsync_env(workdir: Path, es_url: str) -> dict[str, str]:
    from urllib.parse import urlsplit

    es = urlsplit(es_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "SYNC_", "VIRTUAL_ENV"))}
    env |= {
        "PG_HOST": "127.0.0.1",
        "PG_PORT": str(PG_PORT),
        "PG_USER": "postgres",
        "PG_PASSWORD": "",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(REDIS_PORT),
        "ELASTICSEARCH_SCHEME": es.scheme,
        "ELASTICSEARCH_HOST": es.hostname or "127.0.0.1",
        "ELASTICSEARCH_PORT": str(es.port or 9200),
        "ELASTICSEARCH_TIMEOUT": "120",
        "CHECKPOINT_PATH": str(workdir),
        "LOG_LEVEL": "WARNING",
        "CONSOLE_LOGGING_HANDLER_MIN_LEVEL": "WARNING",
    }
    return env


def _index_count(es_url: str, index: str = INDEX) -> int | None:
    es = common.es_client(es_url, timeout=60)
    if not es.indices.exists(index=index):
        return None
    es.indices.refresh(index=index)
    return es.count(index=index)["count"]


def run_once(
    workdir: Path,
    es_url: str,
    shim: bool,
    timeout: float,
    schema_file: str = "schema.json",
    index: str = INDEX,
) -> dict[str, Any]:
    """Bootstrap (untimed), then one timed `pgsync --config <schema_file>` (initial sync, no daemon)
    into `index`; pg_cpu_s: its cluster's CPU during the timed sync (measure.postgres_cpu_seconds)."""
    python = VENV / "bin" / "python"
    schema = workdir / schema_file
    env = pgsync_env(workdir, es_url) | ({"BENCH_PGSYNC_SHIM": "1"} if shim else {})
    es = common.es_client(es_url)
    es.indices.delete(index=index, ignore_unavailable=True)
    for checkpoint in workdir.glob(".*"):
        checkpoint.unlink()
    _redis_command("FLUSHALL")

    def tool(name: str, *extra: str) -> list[str]:
        return [str(python), str(SHIM), str(VENV / "bin" / name), "--config", str(schema), *extra]

    # teardown of a previous run is allowed to fail (nothing to tear down)
    subprocess.run(tool("bootstrap", "--teardown"), env=env, capture_output=True, timeout=300)
    boot = subprocess.run(tool("bootstrap"), env=env, capture_output=True, text=True, timeout=600)
    if boot.returncode != 0:
        return {"ok": False, "stage": "bootstrap", "error": _error_text(boot.stdout + boot.stderr)}
    postmaster = measure.postmaster_pid(pg_url())
    pg_cpu_before = measure.postgres_cpu_seconds(postmaster)
    measured = measure.run_measured(tool("pgsync"), env, timeout, cwd=workdir, log=workdir / "pgsync.log")
    pg_cpu = measure.postgres_cpu_seconds(postmaster) - pg_cpu_before
    count = _index_count(es_url, index)
    result = {
        "pg_cpu_s": round(pg_cpu, 2),
        "process_cpu_s": measured["cpu_s"],
        "ok": measured["rc"] == 0 and bool(count),
        "stage": "sync",
        "seconds": measured["wall_s"],
        "peak_rss_mb": measured["peak_rss_mb"],
        "tree_peak_rss_mb": measured["tree_peak_rss_mb"],
        "rc": measured["rc"],
        "docs_in_es": count,
    }
    if measured["rc"] != 0:
        result["error"] = _error_text(measured["output_tail"])
    subprocess.run(tool("bootstrap", "--teardown"), env=env, capture_output=True, timeout=300)
    return result


def _error_text(output: str) -> str:
    """The last exception line of a traceback (or the last lines of output)."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line.strip()[:600]
    return " | ".join(lines[-3:])[:600]
