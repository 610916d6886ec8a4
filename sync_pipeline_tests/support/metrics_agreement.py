"""The metrics against the drift table (issue 28): at the end of a chaos scenario, what the
exporter would export for the spec and what its /healthz would answer, read the exporter's own
way (ops/scrape.read, samples and health), must agree with the scenario's own figures.

`metrics_agree` asserts, and returns the chaos table's "metrics agree" cell: a disagreement
fails the scenario, it is never printed as "no".
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from sync_pipeline.apps.cli.parser import DEFAULT_BACKLOG_MINUTES
from sync_pipeline.core.report.metrics import QUANTILES
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.ops.scrape import Sample, health, read, samples

# WAL a caught-up slot may still keep from its restart_lsn (an open transaction elsewhere on the
# shared server holds it back): one WAL segment; the slot's changes are confirmed, not pending
CAUGHT_UP_SLOT_BYTES = 16 * 1024 * 1024


def _values(found: dict[str, list[Sample]], name: str, **labels: str) -> list[float]:
    return [value for value, have in found[name] if labels.items() <= have.items()]


def _one(found: dict[str, list[Sample]], name: str, **labels: str) -> float:
    values = _values(found, name, **labels)
    assert len(values) == 1, (name, labels, found[name])
    return values[0]


def metrics_agree(
    engine: Engine, es: SearchTarget, spec: SyncSpec, rows_changed: int, drift: int, dead_letters: int
) -> str:
    """'yes' once the spec's metrics and health agree with the scenario's figures: its buffer (or
    slot) holds nothing more, the documents counted indexed or deleted cover the rows changed but
    those dead-lettered, the dead letters waiting are the scenario's, its lags were measured and
    are not negative, and /healthz is 200 when the drift is 0 and no dead letter waits, 503 (a
    dead letter is something doctor says needs action) when one does."""
    found = samples(read(engine, [spec]))
    name = {"spec": spec.name, "capture": spec.capture}

    assert _one(found, "sync_pipeline_buffer_entries", **name) == 0
    assert _one(found, "sync_pipeline_buffer_oldest_age_seconds", **name) == 0
    assert _one(found, "sync_pipeline_capture_problems", **name) == 0
    if spec.capture == "logical":
        assert _one(found, "sync_pipeline_slot_wal_status", **name, wal_status="reserved") == 1
        assert 0 <= _one(found, "sync_pipeline_slot_retained_wal_bytes", **name) < CAUGHT_UP_SLOT_BYTES

    def documents(outcome: str) -> float:  # over the spec's drains and syncs
        return sum(_values(found, "sync_pipeline_documents_total", **name, outcome=outcome))

    landed, parked = documents("indexed") + documents("deleted"), documents("dead_lettered")
    assert landed > 0 and landed >= rows_changed - parked, (landed, parked, rows_changed)
    # documents "failed" are not checked: a request a transient fault failed, sent again by a
    # later run, counts there and lands too (the counters are history, not the index's state)
    assert _one(found, "sync_pipeline_dead_letters", **name) == dead_letters

    assert _one(found, "sync_pipeline_lag_samples_total", **name) > 0
    assert _one(found, "sync_pipeline_lag_sum_seconds_total", **name) >= 0
    lags = [_one(found, "sync_pipeline_lag_seconds", **name, quantile=str(q)) for q in QUANTILES]
    assert 0 <= lags[0] <= lags[1] <= lags[2], lags

    answer = health(engine, es, [spec], DEFAULT_BACKLOG_MINUTES * 60)
    (letters,) = answer.report.dead_letters
    assert letters.count == dead_letters
    assert drift == 0
    assert answer.status == (503 if dead_letters else 200), (answer.status, answer.report)
    return "yes"
