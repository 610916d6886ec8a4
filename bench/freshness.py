"""Freshness: commit → searchable latency through the change buffer and the buffer sensor.

Starts what `make ui` starts (`sync-pipeline ui`: `dagster dev`, i.e. webserver +
daemon) with a temp DAGSTER_HOME holding the project's dagster.yaml (PostgreSQL
storage in a schema of its own, the queued run coordinator and its tag
concurrency limits: what `make ui` runs with) and a spec whose buffer sensor reacts to the
first change (min_changes 1, max_wait 1 s, interval 1 s: the fastest the spec
allows), installs the change-buffer triggers, commits single-row updates one
at a time and polls Elasticsearch (a search, so only refreshed documents count)
until each change is searchable. Reports p50/p95/max of commit → searchable,
plus the first (cold) change separately, and what the daemon did: drain runs
by status, the most drains that ever ran at once (must be 1), and the median
run duration.
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
# the fastest triggers the spec allows; "dagster" also lets each drain run follow the buffer
# (buffer_sensor.follow_seconds), with a run limit short enough that the measurement includes
# hand-overs from one run to the next; "dagster-single" is one drain per run
SENSORS = {
    "dagster": {
        "min_changes": 1,
        "max_wait_seconds": 1,
        "interval_seconds": 1,
        "follow_seconds": 10,
        "max_run_seconds": 30,
    },
    "dagster-single": {"min_changes": 1, "max_wait_seconds": 1, "interval_seconds": 1},
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


def _wait_log(path: Path, text: str, timeout: float, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if text in path.read_text(errors="replace"):
            return True
        time.sleep(0.5)
    return False


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def run(
    harness, changes: int = 60, timeout_per_change: float = 120.0, mode: str = "dagster"
) -> dict[str, Any]:
    """mode "dagster": `sync-pipeline ui` (dagster dev) and the buffer sensor, as shipped;
    mode "dagster-single": the same with one drain per run (no follow_seconds)."""
    import sqlalchemy as sa

    from sync_pipeline.core.specs import load_specs
    from sync_pipeline.io.buffer import BUFFER
    from sync_pipeline.io.elasticsearch import drop_target
    from sync_pipeline.ops.capture import install_triggers, uninstall_triggers

    tmp: Path = harness.tmp / f"freshness-{mode}"
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "sync.yaml"
    if mode not in SENSORS:
        raise ValueError(f"unknown freshness mode {mode!r} (one of {sorted(SENSORS)})")
    dagster = True
    config.write_text(common.spec_yaml(index=INDEX, sensor=SENSORS.get(mode)))
    spec = load_specs(config)[0]
    engine = common.engine(harness.pg_url)
    es = harness.es
    drop_target(es, INDEX)
    report: dict[str, Any] = {"mode": mode, "changes_requested": changes}
    if dagster:
        report["sensor"] = SENSORS[mode]
    port = _free_port()
    env = harness.env | {
        "SYNC_CONFIG": str(config),
        "DAGSTER_HOME": str(tmp / "dagster_home"),
        "SYNC_STAGING_DIR": str(tmp / "staging"),
    }
    home = tmp / "dagster_home"
    home.mkdir(exist_ok=True)
    schema = f"bench_fresh_{os.getpid()}"
    if dagster:
        env["SYNC_DAGSTER_PG_URL"] = _own_instance(home, engine, harness.pg_url, schema)
    log = (tmp / "dagster-dev.log").open("wb")
    started = time.perf_counter()
    command = [common.SYNC_PIPELINE, "--config", str(config), "ui", "--port", str(port)]
    proc = subprocess.Popen(
        command,
        env=env,
        cwd=str(tmp),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as one at the end
    )
    sampler = common.RssSampler(proc.pid, interval=0.5).start()
    try:
        if dagster:
            up = _wait_http(f"http://127.0.0.1:{port}/server_info", 240, proc)
        else:
            up = _wait_log(tmp / "dagster-dev.log", "drain loop ready", 120, proc)
        if not up:
            report["status"] = f"failed: {command[-4:]} did not come up"
            report["log_tail"] = _tail(tmp / "dagster-dev.log")
            return report
        report["startup_s"] = round(time.perf_counter() - started, 1)
        with engine.begin() as conn:
            install_triggers(conn, spec)
            conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))
        with engine.connect() as conn:
            max_id = conn.execute(sa.text(f"SELECT max(id) FROM {common.TABLE}")).scalar() or 1
        rng = random.Random(7)
        ids = rng.sample(range(1, int(max_id) + 1), changes + 1)
        pending: dict[int, tuple[str, float]] = {}
        latencies: dict[int, float] = {}
        lock = threading.Lock()
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                with lock:
                    waiting = dict(pending)
                if waiting:
                    try:
                        hits = es.search(
                            index=INDEX,
                            query={"terms": {"id": list(waiting)}},
                            size=len(waiting),
                            source=["id", "name"],
                        )["hits"]["hits"]
                    except Exception:
                        hits = []
                    now = time.monotonic()
                    for hit in hits:
                        doc_id = int(hit["_source"]["id"])
                        token, committed = waiting.get(doc_id, (None, 0.0))
                        if token and hit["_source"].get("name") == token:
                            with lock:
                                pending.pop(doc_id, None)
                                latencies[doc_id] = now - committed
                stop.wait(0.1)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()

        def change(doc_id: int, number: int) -> None:
            token = f"fresh {number} {doc_id}"
            with engine.begin() as conn:
                conn.execute(
                    sa.text(f"UPDATE {common.TABLE} SET name = :token, updated_at = now() WHERE id = :id"),
                    {"token": token, "id": doc_id},
                )
            with lock:
                pending[doc_id] = (token, time.monotonic())

        def wait_for(doc_ids: list[int], limit: float) -> None:
            deadline = time.monotonic() + limit
            while time.monotonic() < deadline:
                with lock:
                    if not any(d in pending for d in doc_ids):
                        return
                time.sleep(0.1)

        # the first change pays for cold caches (first sensor tick, first run launch): reported apart
        change(ids[0], 0)
        wait_for([ids[0]], timeout_per_change * 2)
        report["cold_first_change_s"] = round(latencies.pop(ids[0], float("nan")), 2)
        for number, doc_id in enumerate(ids[1:], start=1):
            change(doc_id, number)
            time.sleep(rng.uniform(0.5, 1.5))
        wait_for(ids[1:], timeout_per_change)
        stop.set()
        poller.join()
        values = [latencies[d] for d in ids[1:] if d in latencies]
        report.update(
            {
                "changes": len(values),
                "timed_out": len(ids) - 1 - len(values),
                "p50_s": round(statistics.median(values), 2) if values else None,
                "p95_s": round(_percentile(values, 0.95), 2) if values else None,
                "max_s": round(max(values), 2) if values else None,
                "min_s": round(min(values), 2) if values else None,
                "mean_s": round(statistics.fmean(values), 2) if values else None,
                **(_drain_runs(home, env) if dagster else {}),
                "status": "ok" if values and len(values) == len(ids) - 1 else "incomplete",
            }
        )
    finally:
        _stop_group(proc)
        sampler.stop()
        log.close()
        report["process_tree_peak_rss_mb"] = sampler.tree_peak_mb
        with engine.begin() as conn:
            uninstall_triggers(conn, spec)
            conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))
            if dagster:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        drop_target(es, INDEX)
    return report


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
import json, statistics
from dagster import DagsterInstance, RunsFilter
records = DagsterInstance.get().get_run_records(RunsFilter(job_name="bench_products_drain"))
statuses = {}
spans, durations = [], []
for r in records:
    statuses[r.dagster_run.status.value] = statuses.get(r.dagster_run.status.value, 0) + 1
    if r.start_time and r.end_time:
        spans.append((r.start_time, r.end_time))
        durations.append(r.end_time - r.start_time)
events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
running = most = 0
for _, step in events:
    running += step
    most = max(most, running)
print(json.dumps({
    "drain_runs": len(records),
    "drain_run_statuses": statuses,
    "max_concurrent_drains": most,
    "drain_run_seconds_p50": round(statistics.median(durations), 2) if durations else None,
}))
"""


def _drain_runs(home: Path, env: dict[str, str]) -> dict[str, Any]:
    """Drain runs the daemon launched (from the temp instance): count, statuses, overlap."""
    import json

    proc = subprocess.run([common.PYTHON, "-c", _RUNS_SCRIPT], env=env | {"DAGSTER_HOME": str(home)},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"drain_runs": None, "drain_runs_error": proc.stderr[-500:]}


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
