"""Every measure of a drain or a sync is taken here, and only here.

`measured_drain` and `measured_sync` decorate the drains (ops/drain.drain, follow) and a window's
sync (ops/sync_window.sync_window, index_stage), as pgstream wraps its store with a metrics
decorator: for the call they open a `Measure`, hand the work a search target that reports each
bulk request to it (io/search/measured.py), and record the outcome. Inside, the two places that
finish a batch (ops/drain/batches.Batches, sync_window.load) and the two that learn a change's age (a
buffer entry removed, a slot's transaction applied) report through `observe_batch` and
`observe_lag`, which reach the measure of the call they run in (a context variable; nothing is
measured outside one).

Figures reach the exporter through the database (io/metrics_log.py says why): every
FLUSH_SECONDS while the call runs, and when it ends. Storing them never fails the work: a
database that refuses them costs one warning per run, and the figures.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from sync_pipeline.core.report.metrics import OUTCOMES, Figures
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.io import metrics_log
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.io.search.measured import MeasuredTarget

FLUSH_SECONDS = 15.0
log = logging.getLogger(__name__)
_ACTIVE: ContextVar[Measure | None] = ContextVar("sync_pipeline_measure", default=None)
F = TypeVar("F", bound=Callable[..., Any])


def _counts(source: object) -> dict[str, int]:
    """A batch's or a load's document counts, by LoadTotals' names."""
    return {name: int(getattr(source, name, 0) or 0) for name in OUTCOMES}


class Measure:
    """One drain's or sync's figures, stored in stretches (thread-safe: bulk requests report
    from the senders' threads)."""

    def __init__(self, engine: Engine, spec: SyncSpec, op: str) -> None:
        self.engine, self.spec, self.op = engine, spec, op
        self._lock = threading.Lock()
        self._figures = self._fresh()
        self._counted = dict.fromkeys(OUTCOMES, 0)  # documents seen batch by batch
        self._started = self._flushed = time.monotonic()
        self._broken = False

    def _fresh(self) -> Figures:
        return Figures(self.spec.name, self.spec.capture, self.op)

    def target(self, es: SearchTarget) -> SearchTarget:
        return MeasuredTarget(es, self)

    def record_bulk(self, seconds: float, size: int, throttled: int, server_errors: int) -> None:
        with self._lock:
            figures = self._figures
            figures.bulk_requests += 1
            figures.bulk_bytes += size
            figures.bulk_latency.add(seconds)
            figures.retries_429 += throttled
            figures.retries_5xx += server_errors

    def batch(self, result: object) -> None:
        counts = _counts(result)
        with self._lock:
            self._figures.count_documents(counts)
            for name, count in counts.items():
                self._counted[name] += count
        self._flush_if_due()

    def lag(self, ages: Iterable[float]) -> None:
        with self._lock:
            self._figures.lag.add_all(ages)
        self._flush_if_due()

    def finish(self, totals: object | None, ok: bool) -> None:
        """The run ended: what its totals hold beyond the batches seen (rows dead-lettered
        before they were sent, a TRUNCATE's reconcile), its duration and outcome, stored."""
        with self._lock:
            if totals is not None:
                rest = {name: count - self._counted[name] for name, count in _counts(totals).items()}
                self._figures.count_documents({name: max(0, count) for name, count in rest.items()})
            self._figures.runs += 1
            self._figures.failed_runs += 0 if ok else 1
            self._figures.run_seconds += time.monotonic() - self._started
        self.flush(ended_ok=ok)

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self.flush()

    def flush(self, ended_ok: bool = False) -> None:
        with self._lock:
            figures, self._figures = self._figures, self._fresh()
            self._flushed = time.monotonic()
        if self._broken or (figures.is_empty() and not ended_ok):
            return
        try:
            with self.engine.begin() as conn:
                metrics_log.append(conn, figures, ended_ok)
                if figures.runs:  # once per run: fold the old rows
                    metrics_log.compact(conn)
        except Exception as exc:  # the work goes on; the exporter misses these figures
            self._broken = True
            log.warning("sync_pipeline metrics: not stored (%s: %s)", type(exc).__name__, exc)


def _measure(engine: Engine, spec: SyncSpec, op: str, work: Callable[[Measure], Any]) -> Any:
    measure = Measure(engine, spec, op)
    token = _ACTIVE.set(measure)
    try:
        result = work(measure)
    except BaseException as exc:
        if getattr(exc, "ran", True):  # a stop before any work (TargetNotReady) is no run at all
            measure.finish(getattr(exc, "totals", None), ok=False)  # a failed load carries its totals
        raise
    finally:
        _ACTIVE.reset(token)
    totals = getattr(result, "totals", result)  # a window's result holds its load's totals
    measure.finish(totals, ok=not getattr(totals, "failed", 0))
    return result


def measured_drain(drain: F) -> F:
    """For `drain(engine, es, spec, …)` and its kin: the call measured as op "drain"."""

    @functools.wraps(drain)
    def measured(engine: Engine, es: SearchTarget, spec: SyncSpec, *args: Any, **kwargs: Any) -> Any:
        return _measure(engine, spec, "drain", lambda m: drain(engine, m.target(es), spec, *args, **kwargs))

    return measured  # type: ignore[return-value]


def measured_sync(sync: F) -> F:
    """For a window's `sync_window(run, es, …)` / `index_stage(run, es, …)`: measured as op "sync"
    (on the run's own engine)."""

    @functools.wraps(sync)
    def measured(run: Any, es: SearchTarget, *args: Any, **kwargs: Any) -> Any:
        if _ACTIVE.get() is not None:  # called by a measured caller (defs readies the index first)
            return sync(run, es, *args, **kwargs)
        return _measure(run.engine, run.spec, "sync", lambda m: sync(run, m.target(es), *args, **kwargs))

    return measured  # type: ignore[return-value]


def observe_batch(result: object) -> None:
    """A batch Elasticsearch answered (a BatchResult), counted by the measure running now."""
    measure = _ACTIVE.get()
    if measure is not None:
        measure.batch(result)


def observe_lag(ages: Iterable[float]) -> None:
    """Seconds from each change's commit to its acknowledgement, for the measure running now."""
    measure = _ACTIVE.get()
    if measure is not None:
        measure.lag(ages)
