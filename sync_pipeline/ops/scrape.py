"""What the exporter reads on a scrape, and what /healthz answers.

A scrape reads, in one read-only transaction: the runs' figures (io/metrics_log.py), the buffer's
backlog per spec (io/buffer.backlogs, the same reading `doctor` and the sensor use), the slots'
retained WAL and wal_status (one look at pg_replication_slots: no decoding), dead letters per spec,
and capture that is missing or disabled (ops/health.capture_issues, `doctor`'s own check). Each is
one or a few catalog queries per spec; the exporter also keeps a reading for a few seconds so
that scrapes close together share it.

/healthz is `doctor --spec S`'s report (ops/health.check) for each spec S of the file, grouped per
spec, with when each spec's drains and syncs last ended well (from the figures' log).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from sync_pipeline.core.cdc import logical
from sync_pipeline.core.report.metrics import (
    METRICS,
    OUTCOMES,
    QUANTILES,
    WAL_STATUSES,
    WINDOW_SECONDS,
    Sketch,
)
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.statements import SourceError
from sync_pipeline.io import buffer, deadletters, metrics_log, replication
from sync_pipeline.io.buffer import BufferState
from sync_pipeline.io.metrics_log import Totals
from sync_pipeline.io.replication import SlotState
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.ops.capture import watched_now
from sync_pipeline.ops.health import HealthReport, capture_issues, check
from sync_pipeline.ops.slots import unpublished


@dataclass
class SpecReading:
    spec: str
    capture: str
    backlog: BufferState
    slot: SlotState | None  # capture: logical only
    capture_problems: int
    dead_letters: int


@dataclass
class Reading:
    totals: list[Totals] = field(default_factory=list)
    specs: list[SpecReading] = field(default_factory=list)


def _capture_problems(conn: Connection, spec: SyncSpec, slot: SlotState | None) -> int:
    """The spec's capture objects missing or disabled, as `doctor` finds them: for triggers,
    doctor's capture findings; for a logical spec, its slot (missing or lost) and the watched
    tables its publication lacks. A watched table that cannot be read (dropped, renamed) counts
    as one: its capture cannot be checked, nor can it work."""
    try:
        with conn.begin_nested():  # a failed catalog read must not end the scrape's transaction
            if spec.capture == "triggers":
                return len(capture_issues(conn, [spec], {spec.name}))
            if slot is None or slot.lost:
                return 1
            return len(unpublished(conn, spec, [w.table for w in watched_now(conn, spec)]))
    except (SourceError, DBAPIError):
        return 1


def read(engine: Engine, specs: Sequence[SyncSpec]) -> Reading:
    """Everything a scrape exports, for the specs of the file."""
    with engine.connect() as conn:
        reading = Reading(totals=metrics_log.totals(conn, WINDOW_SECONDS))
        backlogs = buffer.backlogs(conn)
        slots = {s.slot: s for s in replication.our_slots(conn)}
        dead = deadletters.counts(conn)
        for spec in specs:
            slot = slots.get(logical.slot_name(spec.name)) if spec.capture == "logical" else None
            problems = _capture_problems(conn, spec, slot)
            reading.specs.append(
                SpecReading(
                    spec.name,
                    spec.capture,
                    backlogs.get(spec.name) or BufferState(0, None),
                    slot,
                    problems,
                    dead.get(spec.name, 0),
                )
            )
        conn.rollback()
    return reading


Sample = tuple[float, dict[str, str]]  # a value and its labels


def samples(reading: Reading) -> dict[str, list[Sample]]:
    """Every metric of core/report/metrics.METRICS: its values now, by its Prometheus name."""
    out: dict[str, list[Sample]] = {m.name: [] for m in METRICS}

    def put(name: str, value: float | None, **labels: str) -> None:
        if value is not None:
            out[name].append((float(value), labels))

    lags: dict[tuple[str, str], list[Totals]] = {}
    for t in reading.totals:
        run = {"spec": t.spec, "capture": t.capture, "op": t.op}
        c = t.counters
        for outcome in OUTCOMES.values():
            put("sync_pipeline_documents_total", c[f"docs_{outcome}"], **run, outcome=outcome)
        put("sync_pipeline_runs_total", c["runs"] - c["failed_runs"], **run, outcome="ok")
        put("sync_pipeline_runs_total", c["failed_runs"], **run, outcome="failed")
        put("sync_pipeline_run_duration_seconds_total", c["run_seconds"], **run)
        put("sync_pipeline_last_success_timestamp_seconds", t.ok_at.timestamp() if t.ok_at else None, **run)
        put("sync_pipeline_bulk_requests_total", c["bulk_requests"], **run)
        put("sync_pipeline_bulk_request_bytes_total", c["bulk_bytes"], **run)
        put("sync_pipeline_bulk_duration_seconds_total", c["bulk_seconds"], **run)
        put("sync_pipeline_bulk_retries_total", c["retries_429"], **run, status="429")
        put("sync_pipeline_bulk_retries_total", c["retries_5xx"], **run, status="5xx")
        for q in QUANTILES:
            put("sync_pipeline_bulk_latency_seconds", t.bulk_latency.quantile(q), **run, quantile=str(q))
        lags.setdefault((t.spec, t.capture), []).append(t)
    for (spec, capture), rows in lags.items():
        labels = {"spec": spec, "capture": capture}
        merged = Sketch()
        for t in rows:
            merged.merge(t.lag)
        put("sync_pipeline_lag_samples_total", sum(t.counters["lag_count"] for t in rows), **labels)
        put("sync_pipeline_lag_sum_seconds_total", sum(t.counters["lag_seconds"] for t in rows), **labels)
        for q in QUANTILES:
            put("sync_pipeline_lag_seconds", merged.quantile(q), **labels, quantile=str(q))
    for s in reading.specs:
        labels = {"spec": s.spec, "capture": s.capture}
        put("sync_pipeline_buffer_entries", s.backlog.pending, **labels)
        put("sync_pipeline_buffer_oldest_age_seconds", s.backlog.oldest_age_seconds or 0.0, **labels)
        put("sync_pipeline_capture_problems", s.capture_problems, **labels)
        put("sync_pipeline_dead_letters", s.dead_letters, **labels)
        if s.capture == "logical":
            put("sync_pipeline_slot_retained_wal_bytes", s.slot.lag_bytes if s.slot else None, **labels)
            status = (s.slot.wal_status or "reserved") if s.slot else "missing"
            for known in WAL_STATUSES:
                put("sync_pipeline_slot_wal_status", int(known == status), **labels, wal_status=known)
    return out


@dataclass
class Health:
    report: HealthReport
    last_ok: dict[str, dict[str, datetime | None]]  # spec → op → when a run last ended well

    @property
    def ok(self) -> bool:
        return self.report.findings == 0

    @property
    def status(self) -> int:
        return 200 if self.ok else 503


def health(engine: Engine, es: SearchTarget, specs: Sequence[SyncSpec], backlog_seconds: float) -> Health:
    # the file's specs only: what specs gone from the file left behind is `doctor`'s to show
    report = check(engine, es, specs, {s.name for s in specs}, backlog_seconds)
    last_ok: dict[str, dict[str, datetime | None]] = {s.name: {} for s in specs}
    with engine.connect() as conn:
        for totals in metrics_log.totals(conn, 0):
            if totals.spec in last_ok:
                last_ok[totals.spec][totals.op] = totals.ok_at
        conn.rollback()
    return Health(report, last_ok)
