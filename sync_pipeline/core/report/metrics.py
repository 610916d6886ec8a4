"""What sync_pipeline measures, named once: the exported metrics, a run's figures, and the
quantile sketch its lag and bulk latencies are kept in.

Figures are counted where the work happens (ops/metrics.py: a decorator around the search target
and the drains), stored as rows of a small table (io/metrics_log.py), and turned into
OpenTelemetry instruments by the exporter (apps/metrics.py). This module is the list of names,
types, units and labels that docs/operating.md documents and a test holds the exporter to.

Labels are few and bounded: the spec, its capture mode, the operation (drain or sync), and a
handful of fixed values (outcome, quantile, status class). Never a key, a value or a table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

OPS = ("drain", "sync")

# the sketch's relative accuracy: a quantile is within (GAMMA - 1) / (GAMMA + 1) ≈ 4.8% of the
# value observed at that rank (DDSketch's log buckets); below MIN_SECONDS everything is one bucket
GAMMA = 1.1
MIN_SECONDS = 0.001
QUANTILES = (0.5, 0.95, 0.99)
# the lag and latency quantiles are of what was measured this long before a scrape
WINDOW_SECONDS = 300.0


@dataclass
class Sketch:
    """Observations in log-spaced buckets: mergeable across processes (a JSON object of bucket
    counts), bounded in size (about 24 buckets per decade), quantiles within ≈ 4.8%."""

    buckets: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total: float = 0.0

    @staticmethod
    def index(value: float) -> int:
        if value <= MIN_SECONDS:
            return 0
        return max(0, math.ceil(math.log(value / MIN_SECONDS) / math.log(GAMMA)))

    @staticmethod
    def representative(index: int) -> float:
        """The value a bucket stands for: its bounds' harmonic middle (DDSketch)."""
        if index == 0:
            return MIN_SECONDS
        return 2 * MIN_SECONDS * GAMMA**index / (GAMMA + 1)

    def add(self, value: float, count: int = 1) -> None:
        if count <= 0 or math.isnan(value):
            return
        value = max(0.0, value)
        key = self.index(value)
        self.buckets[key] = self.buckets.get(key, 0) + count
        self.count += count
        self.total += value * count

    def add_all(self, values: Iterable[float]) -> None:
        for value in values:
            self.add(value)

    def merge(self, other: Sketch) -> None:
        for key, count in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + count
        self.count += other.count
        self.total += other.total

    def quantile(self, q: float) -> float | None:
        """The value at rank q (0..1) of the observations; None when there are none."""
        if not self.count:
            return None
        rank = q * (self.count - 1)
        seen = 0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen > rank:
                return self.representative(key)
        return self.representative(max(self.buckets))

    def to_json(self) -> dict[str, object]:
        return {"b": {str(k): v for k, v in self.buckets.items()}, "n": self.count, "s": self.total}

    @classmethod
    def from_json(cls, data: Mapping[str, object] | None) -> Sketch:
        if not data:
            return cls()
        buckets: Mapping[str, int] = data.get("b") or {}  # type: ignore[assignment]
        count, total = int(data.get("n") or 0), float(data.get("s") or 0)  # type: ignore[call-overload, arg-type]
        return cls({int(k): int(v) for k, v in buckets.items()}, count, total)


# the document outcomes a load counts (core/load/bulk.LoadTotals' names), as the `outcome` label
OUTCOMES = {
    "indexed": "indexed",
    "deleted": "deleted",
    "stale_skipped": "stale",
    "conflicts": "conflict",
    "failed": "failed",
    "dead_lettered": "dead_lettered",
}


@dataclass
class Figures:
    """What one drain or sync did since its figures were last stored (one row of the log)."""

    spec: str
    capture: str
    op: str
    runs: int = 0  # runs that ended in this stretch (0 for a stretch of a running one)
    failed_runs: int = 0
    run_seconds: float = 0.0
    documents: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES.values(), 0))
    bulk_requests: int = 0
    bulk_bytes: int = 0
    retries_429: int = 0  # requests or documents answered 429: sent again after a backoff
    retries_5xx: int = 0
    lag: Sketch = field(default_factory=Sketch)  # commit → acknowledged, per change entry
    bulk_latency: Sketch = field(default_factory=Sketch)  # per bulk request

    def count_documents(self, counts: Mapping[str, int]) -> None:
        """Add counts keyed by LoadTotals' names (indexed, deleted, stale_skipped, …)."""
        for name, outcome in OUTCOMES.items():
            self.documents[outcome] += int(counts.get(name, 0))

    def is_empty(self) -> bool:
        return not (self.runs or any(self.documents.values()) or self.bulk_requests or self.lag.count)


@dataclass(frozen=True)
class Metric:
    """One exported metric, as Prometheus shows it (OpenTelemetry's name, unit and type mapped by
    the Prometheus exporter: a counter's name ends in _total, the unit comes before it)."""

    name: str
    kind: str  # counter | gauge
    unit: str  # as OpenTelemetry spells it: s, By, 1
    labels: tuple[str, ...]
    help: str

    @property
    def instrument(self) -> str:
        """The OpenTelemetry instrument's name: the Prometheus name without the suffixes the
        exporter adds back (_total; the unit)."""
        name = self.name.removesuffix("_total")
        return name.removesuffix({"s": "_seconds", "By": "_bytes"}.get(self.unit, ""))


RUN = ("spec", "capture", "op")
SPEC = ("spec", "capture")
METRICS = (
    Metric("sync_pipeline_documents_total", "counter", "1", (*RUN, "outcome"),
           "documents by outcome: indexed, deleted, stale, conflict, failed, dead_lettered"),
    Metric("sync_pipeline_runs_total", "counter", "1", (*RUN, "outcome"),
           "drain and sync runs that ended, outcome ok or failed"),
    Metric("sync_pipeline_run_duration_seconds_total", "counter", "s", RUN,
           "time spent in drains and syncs (rate / runs rate: mean duration)"),
    Metric("sync_pipeline_last_success_timestamp_seconds", "gauge", "s", RUN,
           "when a drain or sync of the spec last ended without failing (Unix time)"),
    Metric("sync_pipeline_bulk_requests_total", "counter", "1", RUN, "bulk requests sent"),
    Metric("sync_pipeline_bulk_request_bytes_total", "counter", "By", RUN, "bulk request bodies sent"),
    Metric("sync_pipeline_bulk_duration_seconds_total", "counter", "s", RUN,
           "time bulk requests took (rate / requests rate: mean latency)"),
    Metric("sync_pipeline_bulk_latency_seconds", "gauge", "s", (*RUN, "quantile"),
           "bulk request latency p50/p95/p99 over the last window (≈5% accuracy)"),
    Metric("sync_pipeline_bulk_retries_total", "counter", "1", (*RUN, "status"),
           "requests or documents answered 429 or 5xx, sent again after a backoff"),
    Metric("sync_pipeline_lag_seconds", "gauge", "s", (*SPEC, "quantile"),
           "commit → acknowledged by the search server, p50/p95/p99 of the changes drained in the "
           "last window, from the buffer rows' and the slot's own commit times (≈5% accuracy)"),
    Metric("sync_pipeline_lag_samples_total", "counter", "1", SPEC, "changes whose lag was measured"),
    Metric("sync_pipeline_lag_sum_seconds_total", "counter", "s", SPEC,
           "the measured lags added up (rate / samples rate: mean lag)"),
    Metric("sync_pipeline_buffer_entries", "gauge", "1", SPEC, "change entries waiting in the buffer"),
    Metric("sync_pipeline_buffer_oldest_age_seconds", "gauge", "s", SPEC,
           "how long the buffer's oldest entry has waited (0: empty)"),
    Metric("sync_pipeline_slot_retained_wal_bytes", "gauge", "By", SPEC,
           "WAL the spec's replication slot keeps, from its restart_lsn (capture: logical)"),
    Metric("sync_pipeline_slot_wal_status", "gauge", "1", (*SPEC, "wal_status"),
           "1 for the slot's wal_status (reserved, extended, unreserved, lost, missing)"),
    Metric("sync_pipeline_capture_problems", "gauge", "1", SPEC,
           "capture objects missing or disabled: triggers, functions, publication or slot"),
    Metric("sync_pipeline_dead_letters", "gauge", "1", SPEC, "dead letters waiting for a replay"),
)  # fmt: skip
WAL_STATUSES = ("reserved", "extended", "unreserved", "lost", "missing")


def metric(name: str) -> Metric:
    return next(m for m in METRICS if m.name == name)
