"""`sync-pipeline ui` (`dagster dev`: webserver + daemon) as the freshness and soak sections run it:
a temp DAGSTER_HOME with the project's dagster.yaml, a PostgreSQL schema of its own for the
instance, the run history read back afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import common, measure


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, timeout: float, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(1)
    return False


class DagsterDev:
    """`sync-pipeline ui` (dagster dev: webserver + daemon + code server) with its own instance
    in a fresh PostgreSQL schema and the project's dagster.yaml, as one process group."""

    def __init__(self, harness, config: Path, workdir: Path, schema: str) -> None:
        self.harness, self.config, self.workdir, self.schema = harness, config, workdir, schema
        self.home = workdir / "dagster_home"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.engine = common.engine(harness.pg_url)
        self.env = harness.env | common.run_dirs_env(config, workdir / "staging", self.home)
        self.env["SYNC_DAGSTER_URL"] = self.url
        self.env["SYNC_DAGSTER_PG_URL"] = _own_instance(self.home, self.engine, harness.pg_url, schema)
        self.logfile = workdir / "dagster-dev.log"
        self.proc: subprocess.Popen | None = None
        self.sampler: measure.RssSampler | None = None

    def start(self, timeout: float = 240) -> float:
        """Start and wait for the webserver; returns the start-up seconds (raises if it never came up)."""
        started = time.perf_counter()
        self._log = self.logfile.open("wb")
        command = [common.SYNC_PIPELINE, "--config", str(self.config), "ui", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            command, env=self.env, cwd=str(self.workdir), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one at the end
        )  # fmt: skip
        self.sampler = measure.RssSampler(self.proc.pid, interval=0.5).start()
        if not _wait_http(f"{self.url}/server_info", timeout, self.proc):
            raise RuntimeError(f"sync-pipeline ui did not come up:\n{_tail(self.logfile)}")
        return round(time.perf_counter() - started, 1)

    def stop(self) -> float:
        """Stop the group; returns the tree's peak RSS in MB."""
        if self.proc is not None:
            _stop_group(self.proc)
        if self.sampler is not None:
            self.sampler.stop()
        with contextlib.suppress(Exception):
            self._log.close()
        return self.sampler.tree_peak_mb if self.sampler else 0.0

    def drop_schema(self) -> None:
        import sqlalchemy as sa

        with self.engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))

    def runs(self, job_prefix: str = common.SPEC_NAME) -> dict[str, Any]:
        return _runs(self.home, self.env, job_prefix)


def _stop_group(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM the process group, SIGKILL whatever is left of it after `grace` seconds.

    Waiting for `proc` alone is not enough: `sync-pipeline ui` dies at once, while `dagster dev`
    and its webserver, daemon and code server (same group) can outlive it and keep polling,
    which loads the machine for every later measurement."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap it, or its zombie keeps the group alive
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _own_instance(home: Path, engine, pg_url: str, schema: str) -> str:
    """The project's dagster.yaml in the temp home, storage in a fresh schema; returns its URL.

    An empty DAGSTER_HOME would give Dagster's default instance (SQLite, no tag concurrency
    limits), which is not what `make ui` runs; a schema of its own keeps earlier runs out of
    the counts."""
    import shutil

    import sqlalchemy as sa

    from sync_pipeline.apps.instance import TEMPLATE, dagster_storage_url

    shutil.copyfile(TEMPLATE, home / "dagster.yaml")
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    return dagster_storage_url(pg_url, schema)


_RUNS_SCRIPT = """
import json, statistics, sys, time
from dagster import DagsterInstance
prefix = sys.argv[1]
records = [r for r in DagsterInstance.get().get_run_records() if r.dagster_run.job_name.startswith(prefix)]
by_job = {}
for r in records:
    job = by_job.setdefault(r.dagster_run.job_name, {"runs": 0, "statuses": {}, "spans": [], "durations": []})
    job["runs"] += 1
    tags = r.dagster_run.tags
    origin = ("backfill" if "dagster/backfill" in tags else "schedule" if "dagster/schedule_name" in tags
              else "sensor" if "dagster/sensor_name" in tags else "other")
    job.setdefault("origins", {})
    job["origins"][origin] = job["origins"].get(origin, 0) + 1
    status = r.dagster_run.status.value
    job["statuses"][status] = job["statuses"].get(status, 0) + 1
    if r.start_time:  # a run still going (a following drain) spans until now
        job["spans"].append((r.start_time, r.end_time or time.time()))
    if r.start_time and r.end_time:
        job["durations"].append(r.end_time - r.start_time)
out = {}
for name, job in by_job.items():
    events = sorted([(s, 1) for s, _ in job["spans"]] + [(e, -1) for _, e in job["spans"]])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    out[name] = {
        "runs": job["runs"],
        "statuses": job["statuses"],
        "origins": job.get("origins", {}),
        "max_concurrent": most,
        "run_seconds_p50": round(statistics.median(job["durations"]), 2) if job["durations"] else None,
    }
print(json.dumps(out))
"""


def _runs(home: Path, env: dict[str, str], job_prefix: str) -> dict[str, Any]:
    """Runs in the temp instance whose job name starts with `job_prefix`, by job: count,
    statuses, most at once, median duration. For a drain job, also flat drain_* keys."""
    import json

    proc = subprocess.run(
        [common.PYTHON, "-c", _RUNS_SCRIPT, job_prefix], env=env | {"DAGSTER_HOME": str(home)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        by_job = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"runs_error": proc.stderr[-500:]}
    out: dict[str, Any] = {"runs_by_job": by_job}
    drain = by_job.get(job_prefix) if job_prefix.endswith("_drain") else None
    if drain is not None or job_prefix.endswith("_drain"):
        drain = drain or {}
        out.update(
            {
                "drain_runs": drain.get("runs", 0),
                "drain_run_statuses": drain.get("statuses", {}),
                "max_concurrent_drains": drain.get("max_concurrent", 0),
                "drain_run_seconds_p50": drain.get("run_seconds_p50"),
            }
        )
    return out


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
