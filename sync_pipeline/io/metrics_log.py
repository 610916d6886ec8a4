"""Where a run's figures wait for the exporter: one small table in the project's own tables.

Drains and syncs run in short-lived Dagster run processes; the exporter (`sync-pipeline metrics`)
is a long-lived one, and may restart. So each run appends a row of what it counted since its last
row (every FLUSH_SECONDS while it runs, and when it ends), and the exporter adds the rows up on
each scrape: its counters survive its own restarts and the runs' ends, and no run needs to know
where the exporter is. Rows older than COMPACT_AFTER are folded, per spec, capture mode and
operation, into one row holding their sums (what any row adds to a counter is kept; what only
the quantiles read, their sketches, is let go), so a scrape reads a few hundred rows at most.

The cost on the primary: one INSERT per running drain or sync every FLUSH_SECONDS, and one
aggregate over this table per scrape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from sync_pipeline.core.report.metrics import OUTCOMES, Figures, Sketch

COMPACT_AFTER_SECONDS = 3600

metadata = sa.MetaData()


def _counter(name: str) -> sa.Column:
    kind = sa.Float if name.endswith("seconds") else sa.BigInteger
    return sa.Column(name, kind, nullable=False, server_default="0")


_COUNTERS = (
    "runs", "failed_runs", "run_seconds", *(f"docs_{o}" for o in OUTCOMES.values()), "bulk_requests",
    "bulk_bytes", "bulk_seconds", "retries_429", "retries_5xx", "lag_count", "lag_seconds",
)  # fmt: skip
METRICS_LOG = sa.Table(
    "sync_pipeline_metrics",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False, index=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("capture", sa.Text, nullable=False),
    sa.Column("op", sa.Text, nullable=False),
    *(_counter(name) for name in _COUNTERS),
    sa.Column("ok_at", sa.DateTime(timezone=True)),  # a run that ended without failing, then
    sa.Column("lag", JSONB),  # core/report/metrics.Sketch of the stretch's lags (none once compacted)
    sa.Column("bulk_latency", JSONB),
)


def ensure_table(conn: Connection) -> None:
    metadata.create_all(conn, tables=[METRICS_LOG], checkfirst=True)


def _exists(conn: Connection) -> bool:
    return conn.exec_driver_sql("SELECT to_regclass('sync_pipeline_metrics')").scalar() is not None


def append(conn: Connection, figures: Figures, ended_ok: bool = False) -> None:
    """One stretch of a run's figures; `ended_ok`: the run ended here without failing."""
    ensure_table(conn)
    row: dict[str, object] = {
        "spec": figures.spec,
        "capture": figures.capture,
        "op": figures.op,
        "runs": figures.runs,
        "failed_runs": figures.failed_runs,
        "run_seconds": figures.run_seconds,
        "bulk_requests": figures.bulk_requests,
        "bulk_bytes": figures.bulk_bytes,
        "bulk_seconds": figures.bulk_latency.total,
        "retries_429": figures.retries_429,
        "retries_5xx": figures.retries_5xx,
        "lag_count": figures.lag.count,
        "lag_seconds": figures.lag.total,
        "lag": figures.lag.to_json() if figures.lag.count else None,
        "bulk_latency": figures.bulk_latency.to_json() if figures.bulk_latency.count else None,
        "ok_at": sa.func.now() if ended_ok else None,
    }
    row.update({f"docs_{outcome}": count for outcome, count in figures.documents.items()})
    conn.execute(METRICS_LOG.insert().values(**row))


def compact(conn: Connection, older_than_seconds: float = COMPACT_AFTER_SECONDS) -> None:
    """Fold the rows older than `older_than_seconds` into one per (spec, capture, op), in one
    statement: a concurrent compaction's DELETE waits for this one's and then finds those rows
    gone, so no row is ever added up twice."""
    sums = ", ".join(f"sum({c})" for c in _COUNTERS)
    conn.exec_driver_sql(
        f"WITH gone AS (DELETE FROM sync_pipeline_metrics "
        f"WHERE at < now() - make_interval(secs => %(s)s) RETURNING *) "
        f"INSERT INTO sync_pipeline_metrics (at, spec, capture, op, {', '.join(_COUNTERS)}, ok_at) "
        f"SELECT max(at), spec, capture, op, {sums}, max(ok_at) FROM gone GROUP BY spec, capture, op",
        {"s": float(older_than_seconds)},
    )


@dataclass
class Totals:
    """One (spec, capture, op)'s figures since the log began, and its recent sketches."""

    spec: str
    capture: str
    op: str
    counters: dict[str, float]
    ok_at: datetime | None
    lag: Sketch = field(default_factory=Sketch)
    bulk_latency: Sketch = field(default_factory=Sketch)


def totals(conn: Connection, window_seconds: float) -> list[Totals]:
    """Every (spec, capture, op)'s sums, with the sketches of the last `window_seconds` merged.
    Read only: no table yet, no figures."""
    if not _exists(conn):
        return []
    sums = ", ".join(f"sum({c})" for c in _COUNTERS)
    rows = conn.exec_driver_sql(
        f"SELECT spec, capture, op, {sums}, max(ok_at) FROM sync_pipeline_metrics GROUP BY spec, capture, op"
    )
    found = {
        (r[0], r[1], r[2]): Totals(*r[:3], dict(zip(_COUNTERS, map(float, r[3:-1]), strict=True)), r[-1])
        for r in rows
    }
    recent = conn.exec_driver_sql(
        "SELECT spec, capture, op, lag, bulk_latency FROM sync_pipeline_metrics "
        "WHERE at >= now() - make_interval(secs => %(s)s) AND (lag IS NOT NULL OR bulk_latency IS NOT NULL)",
        {"s": float(window_seconds)},
    )
    for spec, capture, op, lag, latency in recent:
        entry = found.get((spec, capture, op))
        if entry is None:  # appended between the two statements: the next scrape has it
            continue
        entry.lag.merge(Sketch.from_json(_json(lag)))
        entry.bulk_latency.merge(Sketch.from_json(_json(latency)))
    return list(found.values())


def _json(value: object) -> dict | None:
    return json.loads(value) if isinstance(value, str) else value  # type: ignore[return-value]
