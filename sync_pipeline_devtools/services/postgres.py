"""PostgreSQL from Debian's `postgresql` package: a project-owned cluster initdb'ed under the
runtime dir, listening on 127.0.0.1 only, with the role and database the URLs name."""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sync_pipeline_devtools.services import runtime
from sync_pipeline_devtools.services.runtime import (
    ServiceError,
    _as_service_user,
    _failure,
    _owned_dir,
    _pid_alive,
    _port_in_use,
    _run,
    _version_key,
    apt_install,
    local_settings,
)
from sync_pipeline_devtools.settings import DEFAULT_LOCAL_PG_PORT

log = logging.getLogger(__name__)

DEFAULT_PG_PORT = DEFAULT_LOCAL_PG_PORT
PG_USER = "sync"
PG_PASSWORD = "sync"
PG_DATABASE = "sync_pipeline"
PG_LIB_DIR = Path("/usr/lib/postgresql")  # Debian/Ubuntu: <version>/bin/{initdb,pg_ctl,psql}


def pg_port() -> int:
    return local_settings().pg_port


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
    if install and runtime._is_root() and shutil.which("apt-get"):
        _apt_install_postgresql()
        return find_pg_bin_dir(install=False)
    raise ServiceError(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; "
        "install them with `sudo apt-get install -y postgresql` (Debian/Ubuntu), "
        "or point SYNC_PG_URL at an existing server"
    )


def _apt_install_postgresql() -> None:
    apt_install("postgresql", what="PostgreSQL")


@dataclass(frozen=True)
class _PgPaths:
    root: Path  # owned by the service user
    data: Path
    sockets: Path
    log: Path


def _pg_paths(runtime_dir: Path) -> _PgPaths:
    root = runtime_dir / "pg"
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
            "\n# --- sync_pipeline_devtools.services (dev/test cluster) ---\n"
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


def pg_tls_files(runtime_dir: Path) -> tuple[Path, Path]:
    """(certificate, key) the local PostgreSQL serves TLS with: self-signed for localhost and
    127.0.0.1, so the certificate is also the root a client verifies it against
    (`sslmode=verify-full&sslrootcert=<certificate>`). Made once, with openssl."""
    tls = runtime_dir / "pg" / "tls"
    cert, key = tls / "server.crt", tls / "server.key"
    if cert.exists() and key.exists():
        return cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ServiceError(
            "openssl is needed to make the local PostgreSQL's TLS certificate (apt-get install openssl)"
        )
    _owned_dir(tls, 0o755)  # the key stays 0600; clients read the certificate
    _run(
        _as_service_user([
            openssl, "req", "-new", "-x509", "-days", "3650", "-nodes", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ]),
        what="making the PostgreSQL TLS certificate",
        cwd=tls,
    )  # fmt: skip
    return cert, key


def _start_postgres(runtime_dir: Path) -> None:
    bin_dir = find_pg_bin_dir(install=True)
    paths = _pg_paths(runtime_dir)
    local = local_settings()
    port, timeout = local.pg_port, local.pg_start_timeout

    running = _pg_running_port(paths)
    if running is not None and running != port:
        raise ServiceError(
            f"our PostgreSQL is already running on port {running}, not {port} (SYNC_LOCAL_PG_PORT); "
            "run `python -m sync_pipeline_devtools.services down` first"
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
        log.info("starting PostgreSQL on 127.0.0.1:%s (data %s)", port, paths.data)
        cmd = [str(bin_dir / "pg_ctl"), "-D", str(paths.data), "-l", str(paths.log), "-w", "-t", str(timeout)]
        # port, socket dir and TLS on the command line, so none of them needs a re-init; TLS is
        # on for clients that ask (sslmode=require … verify-full), plain TCP still accepted
        cert, key = pg_tls_files(runtime_dir)
        options = f"-p {port} -k {shlex.quote(str(paths.sockets))} -c ssl=on"
        options += f" -c ssl_cert_file={shlex.quote(str(cert))} -c ssl_key_file={shlex.quote(str(key))}"
        # logical decoding for `capture: logical` (a replication slot per spec); on the command
        # line too, so a cluster made before it needs no re-init
        options += " -c wal_level=logical -c max_replication_slots=32 -c max_wal_senders=32"
        # two-phase commit for the tests that show capture never refuses it
        options += " -c max_prepared_transactions=16"
        # asynchronous commits reach the slot when the WAL writer flushes them: every 10 ms here
        options += " -c wal_writer_delay=10ms"
        cmd += ["-o", options, "start"]
        _run(
            _as_service_user(cmd),
            what="starting PostgreSQL",
            log_file=paths.log,
            env=_pg_env(paths),
            cwd=paths.root,
            timeout=timeout + 30,
        )

    deadline = time.monotonic() + timeout
    while not _pg_ready(bin_dir, port):
        if time.monotonic() > deadline:
            raise ServiceError(
                _failure(f"PostgreSQL on 127.0.0.1:{port} is not accepting connections", paths.log)
            )
        time.sleep(0.3)
    _pg_ensure_role_and_db(bin_dir, paths, port)


def pg_superuser_url() -> str:
    """The local cluster's superuser over its unix socket (trust; the socket's directory is the
    service user's, 0700, so only it and root reach it): for tests that must act as one."""
    paths = _pg_paths(runtime._known_runtime_dir())
    return f"postgresql://postgres@/{PG_DATABASE}?host={paths.sockets}&port={pg_port()}"


def _pg_ensure_role_and_db(bin_dir: Path, paths: _PgPaths, port: int) -> None:
    psql = [str(bin_dir / "psql"), "-h", str(paths.sockets), "-p", str(port), "-U", "postgres"]
    psql += ["-d", "postgres", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"]
    env, cwd = _pg_env(paths), paths.root
    # CREATEDB and CREATEROLE let tests create throwaway databases and roles as `sync`, REPLICATION
    # lets it own the replication slots of `capture: logical` (managed services call it
    # rds_replication, cloudsqlsuperuser, …: docs/grants.md); the
    # password is (re)set every time so the documented URL always works
    role_sql = (
        "DO $$BEGIN "
        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_USER}') THEN "
        f"CREATE ROLE {PG_USER} LOGIN CREATEDB CREATEROLE REPLICATION PASSWORD '{PG_PASSWORD}'; "
        f"ELSE ALTER ROLE {PG_USER} LOGIN CREATEDB CREATEROLE REPLICATION PASSWORD '{PG_PASSWORD}'; "
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
    # Dagster's run history of `--local` runs: a schema of the dev database, named explicitly
    in_database = [
        PG_DATABASE if arg == "postgres" and psql[i - 1] == "-d" else arg for i, arg in enumerate(psql)
    ]
    _run(
        _as_service_user(
            [*in_database, "-c", f"CREATE SCHEMA IF NOT EXISTS dagster AUTHORIZATION {PG_USER}"]
        ),
        what="creating schema dagster",
        log_file=paths.log,
        env=env,
        cwd=cwd,
    )


def _stop_postgres(runtime_dir: Path, mode: str = "fast") -> None:
    paths = _pg_paths(runtime_dir)
    if _pg_running_port(paths) is None:
        return
    bin_dir = find_pg_bin_dir()
    log.info("stopping PostgreSQL (%s)", paths.data)
    cmd = [str(bin_dir / "pg_ctl"), "-D", str(paths.data), "-m", mode, "-w", "-t", "60", "stop"]
    _run(
        _as_service_user(cmd),
        what="stopping PostgreSQL",
        log_file=paths.log,
        env=_pg_env(paths),
        cwd=paths.root,
    )


def _pg_status(runtime_dir: Path) -> str:
    port = _pg_running_port(_pg_paths(runtime_dir))
    if port is None:
        return "stopped"
    try:
        ready = _pg_ready(find_pg_bin_dir(), port)
    except ServiceError:
        ready = True  # binaries gone but the server runs: report what we know
    return f"running on 127.0.0.1:{port}" if ready else f"starting or not responding on 127.0.0.1:{port}"
