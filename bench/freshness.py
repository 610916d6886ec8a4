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
that ever ran at once (2 during a hand-over, by design), and the median run duration —
every drained batch is a Dagster run in the run history, never a loop outside Dagster.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from bench import capture_modes, common
from bench.dagster_dev import DagsterDev

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

    from sync_pipeline.io.search.indices import drop_target
    from sync_pipeline.ops.capture import install_capture, uninstall_capture

    report: dict[str, Any] = {"capture": capture, "changes_requested": changes, "sensor": sensor}
    try:
        capture_modes.require_capture(capture)
    except capture_modes.CaptureUnavailable as exc:
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
            clear_buffer(conn, spec)
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
            clear_buffer(conn, spec)
        dev.drop_schema()
        drop_target(es, INDEX)
    return report


def clear_buffer(conn, spec) -> None:
    import sqlalchemy as sa

    if conn.execute(sa.text("SELECT to_regclass('public.sync_pipeline_buffer')")).scalar():
        conn.execute(sa.text("DELETE FROM sync_pipeline_buffer WHERE spec = :s"), {"s": spec.name})
