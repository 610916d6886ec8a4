"""Freshness: commit → searchable latency, per capture mode, through runs Dagster records.

Starts what `make ui` starts (`sync-pipeline ui`: `dagster dev`, i.e. webserver +
daemon) with a temp DAGSTER_HOME holding the project's dagster.yaml (PostgreSQL
storage in a schema of its own, the queued run coordinator and its tag
concurrency limits: what `make ui` runs with) and a spec on bench_products with
the **default spec settings** (no `buffer_sensor` block: a drain run always following the
changes, woken at commit; `--freshness-sensor fast` is one drain per run at the fastest
triggers, `follow` the earlier opt-in `follow_seconds: 10`), installs the
spec's capture (`triggers`, or `logical`: a publication + a replication slot),
and commits single-row updates:

- steady: `steady` changes at `rate` per second, one at a time;
- bursts: `bursts` × `burst_size` changes committed back to back, `burst_gap_s` apart.

Every change is a distinct row. Elasticsearch is searched every 50 ms (a search, so only
refreshed documents count) until each change's new value is searchable. Reports p50 / p95 /
p99 / max of commit → searchable over every change (and steady / burst apart), the first
(cold) change separately, and what the daemon did: drain runs by status, the most drains
that ever ran at once (must be 1), and the median run duration — every drained batch is a
Dagster run in the run history, never a loop outside Dagster.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import common

INDEX = "bench_fresh"
# None: the spec's defaults (what a user gets: since sub-second freshness, a drain run that
# always follows the changes, woken by NOTIFY or the slot, and hands over to its successor);
# "fast": one drain per run at the fastest triggers the spec allows (follow_seconds: 0);
# "follow": the earlier opt-in, a drain run that follows for 10 s idle, 30 s at most
SENSORS: dict[str, dict[str, Any] | None] = {
    "default": None,
    "fast": {"follow_seconds": 0, "min_changes": 1, "max_wait_seconds": 1, "interval_seconds": 1},
    "follow": {
        "min_changes": 1,
        "max_wait_seconds": 1,
        "interval_seconds": 1,
        "follow_seconds": 10,
        "max_run_seconds": 30,
    },
}


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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float]) -> dict[str, Any]:
    """p50 / p95 / p99 / max / mean of latencies in seconds."""
    if not values:
        return {"changes": 0, "p50_s": None, "p95_s": None, "p99_s": None, "max_s": None}
    return {
        "changes": len(values),
        "p50_s": round(statistics.median(values), 3),
        "p95_s": round(percentile(values, 0.95), 3),
        "p99_s": round(percentile(values, 0.99), 3),
        "max_s": round(max(values), 3),
        "min_s": round(min(values), 3),
        "mean_s": round(statistics.fmean(values), 3),
    }


class Prober:
    """Commits single-row updates (a token in `name`) and times each until a search finds it."""

    def __init__(self, engine, es, index: str, table: str = common.TABLE, poll_s: float = 0.05) -> None:
        self.engine, self.es, self.index, self.table, self.poll_s = engine, es, index, table, poll_s
        self.pending: dict[int, tuple[str, float, str]] = {}
        self.latencies: list[tuple[str, int, float]] = []  # (kind, id, seconds)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.number = 0

    def start(self) -> Prober:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join()

    def _poll(self) -> None:
        while not self.stop_event.is_set():
            with self.lock:
                waiting = dict(self.pending)
            if waiting:
                try:
                    hits = self.es.search(
                        index=self.index,
                        query={"terms": {"id": list(waiting)}},
                        size=len(waiting),
                        source=["id", "name"],
                    )["hits"]["hits"]
                except Exception:
                    hits = []
                now = time.monotonic()
                for hit in hits:
                    doc_id = int(hit["_source"]["id"])
                    token, committed, kind = waiting.get(doc_id, (None, 0.0, ""))
                    if token and hit["_source"].get("name") == token:
                        with self.lock:
                            self.pending.pop(doc_id, None)
                            self.latencies.append((kind, doc_id, now - committed))
            self.stop_event.wait(self.poll_s)

    def change(self, doc_id: int, kind: str) -> None:
        import sqlalchemy as sa

        self.number += 1
        token = f"fresh {self.number} {doc_id}"
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(f"UPDATE {self.table} SET name = :token, updated_at = now() WHERE id = :id"),
                {"token": token, "id": doc_id},
            )
        committed = time.monotonic()
        with self.lock:
            self.pending[doc_id] = (token, committed, kind)

    def wait_all(self, limit: float) -> int:
        """Wait until nothing is pending (or `limit` seconds); returns how many still are."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with self.lock:
                if not self.pending:
                    return 0
            time.sleep(0.1)
        with self.lock:
            return len(self.pending)

    def values(self, kind: str | None = None) -> list[float]:
        with self.lock:
            return [s for k, _, s in self.latencies if kind is None or k == kind]


class DagsterDev:
    """`sync-pipeline ui` (dagster dev: webserver + daemon + code server) with its own instance
    in a fresh PostgreSQL schema and the project's dagster.yaml, as one process group."""

    def __init__(self, harness, config: Path, workdir: Path, schema: str) -> None:
        self.harness, self.config, self.workdir, self.schema = harness, config, workdir, schema
        self.home = workdir / "dagster_home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.engine = common.engine(harness.pg_url)
        self.env = harness.env | {
            "SYNC_CONFIG": str(config),
            "DAGSTER_HOME": str(self.home),
            "SYNC_STAGING_DIR": str(workdir / "staging"),
            "SYNC_DAGSTER_URL": self.url,
        }
        self.env["SYNC_DAGSTER_PG_URL"] = _own_instance(self.home, self.engine, harness.pg_url, schema)
        self.logfile = workdir / "dagster-dev.log"
        self.proc: subprocess.Popen | None = None
        self.sampler: common.RssSampler | None = None

    def start(self, timeout: float = 240) -> float:
        """Start and wait for the webserver; returns the start-up seconds (raises if it never came up)."""
        started = time.perf_counter()
        self._log = self.logfile.open("wb")
        command = [common.SYNC_PIPELINE, "--config", str(self.config), "ui", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            command, env=self.env, cwd=str(self.workdir), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one at the end
        )  # fmt: skip
        self.sampler = common.RssSampler(self.proc.pid, interval=0.5).start()
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


def run(
    harness,
    capture: str = "triggers",
    changes: int = 240,
    sensor: str = "default",
    rate: float = 4.0,
    burst_size: int = 20,
    burst_gap_s: float = 5.0,
    timeout_per_change: float = 150.0,
) -> dict[str, Any]:
    """Commit → searchable for one capture mode; half the changes steady, half in bursts."""
    import sqlalchemy as sa

    from sync_pipeline.io.elasticsearch import drop_target
    from sync_pipeline.ops.capture import install_capture, uninstall_capture

    report: dict[str, Any] = {"capture": capture, "changes_requested": changes, "sensor": sensor}
    try:
        common.require_capture(capture)
    except common.CaptureUnavailable as exc:
        report["status"] = str(exc)
        return report
    if sensor not in SENSORS:
        raise ValueError(f"unknown freshness sensor settings {sensor!r} (one of {sorted(SENSORS)})")
    report["sensor_settings"] = SENSORS[sensor] or "spec defaults"
    tmp: Path = harness.tmp / f"freshness-{capture}"
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "sync.yaml"
    config.write_text(
        common.spec_yaml(
            index=INDEX, sensor=SENSORS[sensor], capture=None if capture == "triggers" else capture
        )
    )
    spec = common.load_spec(config)[1]
    engine = common.engine(harness.pg_url)
    es = harness.es
    drop_target(es, INDEX)
    steady = changes // 2
    bursts = max(1, (changes - steady + burst_size - 1) // burst_size)
    report.update(
        {"steady_changes": steady, "steady_rate_per_s": rate, "bursts": bursts, "burst_size": burst_size,
         "burst_gap_s": burst_gap_s}
    )  # fmt: skip
    dev = DagsterDev(harness, config, tmp, f"bench_fresh_{capture}_{os.getpid()}")
    installed = False
    try:
        report["startup_s"] = dev.start()
        with engine.begin() as conn:
            _clear_buffer(conn, spec)
        install_capture(engine, spec)  # triggers, or a publication + a slot (outside any transaction)
        installed = True
        with engine.connect() as conn:
            max_id = conn.execute(sa.text(f"SELECT max(id) FROM {common.TABLE}")).scalar() or 1
        rng = random.Random(7)
        ids = iter(rng.sample(range(1, int(max_id) + 1), min(int(max_id), 1 + steady + bursts * burst_size)))
        prober = Prober(engine, es, INDEX).start()
        # the first change pays for cold caches (first sensor tick, first run launch): reported apart
        prober.change(next(ids), "cold")
        prober.wait_all(timeout_per_change * 2)
        cold = prober.values("cold")
        report["cold_first_change_s"] = round(cold[0], 2) if cold else None
        measure_started = time.monotonic()
        for _ in range(steady):
            prober.change(next(ids), "steady")
            time.sleep(1.0 / rate)
        for _ in range(bursts):
            time.sleep(burst_gap_s)
            for _ in range(burst_size):
                prober.change(next(ids), "burst")
        timed_out = prober.wait_all(timeout_per_change)
        prober.stop()
        report["measure_seconds"] = round(time.monotonic() - measure_started, 1)
        values = prober.values("steady") + prober.values("burst")
        report.update(summary(values))
        report["steady"] = summary(prober.values("steady"))
        report["burst"] = summary(prober.values("burst"))
        report["timed_out"] = timed_out
        report.update(dev.runs(f"{spec.name}_drain"))
        report["status"] = "ok" if values and not timed_out else "incomplete"
    except Exception as exc:
        report["status"] = f"failed: {type(exc).__name__}: {exc}"[:2000]
    finally:
        report["process_tree_peak_rss_mb"] = dev.stop()
        if installed:
            uninstall_capture(engine, spec)
        with engine.begin() as conn:
            _clear_buffer(conn, spec)
        dev.drop_schema()
        drop_target(es, INDEX)
    return report


def _clear_buffer(conn, spec) -> None:
    import sqlalchemy as sa

    if conn.execute(sa.text("SELECT to_regclass('public.sync_pipeline_buffer')")).scalar():
        conn.execute(sa.text("DELETE FROM sync_pipeline_buffer WHERE spec = :s"), {"s": spec.name})


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
