"""The pure parts of the metrics: the quantile sketch, the catalog of names, what a reading turns
into, /healthz's grouping per spec — and that docs/operating.md lists every metric."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sync_pipeline.apps.health_json import healthz_document
from sync_pipeline.core.report.metrics import GAMMA, METRICS, OUTCOMES, Figures, Sketch
from sync_pipeline.io.buffer import BufferState
from sync_pipeline.io.metrics_log import Totals
from sync_pipeline.io.replication import SlotState
from sync_pipeline.io.search.measured import _item_answers
from sync_pipeline.ops.health import (
    BacklogStatus,
    CaptureIssue,
    DeadLetterStatus,
    HealthReport,
    IndexStatus,
    MappingStatus,
)
from sync_pipeline.ops.scrape import Health, Reading, SpecReading, samples

ACCURACY = (GAMMA - 1) / (GAMMA + 1)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "operating.md"


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sketch_quantiles_are_within_its_relative_accuracy_of_the_exact_ones(seed):
    rng = random.Random(seed)
    values = [rng.lognormvariate(0, 2) for _ in range(5000)]  # 0.01 s … minutes
    sketch = Sketch()
    sketch.add_all(values)
    for q in (0.5, 0.95, 0.99):
        want = exact(values, q)
        assert abs(sketch.quantile(q) - want) <= ACCURACY * want + 1e-12, (q, sketch.quantile(q), want)
    assert sketch.count == 5000 and sketch.total == pytest.approx(sum(values))


def test_sketches_merged_or_stored_give_the_quantiles_of_all_their_values():
    first, second, both = Sketch(), Sketch(), Sketch()
    first.add_all([0.2] * 90)
    second.add_all([30.0] * 10)
    both.add_all([0.2] * 90 + [30.0] * 10)
    first.merge(Sketch.from_json(second.to_json()))
    assert (first.buckets, first.count) == (both.buckets, both.count)
    assert first.total == pytest.approx(both.total)
    assert first.quantile(0.5) == pytest.approx(0.2, rel=ACCURACY)
    assert first.quantile(0.95) == pytest.approx(30.0, rel=ACCURACY)
    assert Sketch().quantile(0.5) is None


def test_a_negative_age_counts_as_zero_and_nan_is_ignored():
    sketch = Sketch()
    sketch.add(-0.5)  # a clock a moment behind: no negative lag
    sketch.add(float("nan"))
    assert sketch.count == 1 and sketch.quantile(0.99) == pytest.approx(0.001)


def test_bulk_items_answered_429_or_5xx_are_counted_and_a_clean_response_is_not_read():
    response = {
        "errors": True,
        "items": [
            {"index": {"status": 201}},
            {"index": {"status": 429}},
            {"delete": {"status": 503}},
            {"index": {"status": 400}},
        ],
    }
    assert _item_answers(response) == (1, 1)
    assert _item_answers({"errors": False, "items": [{"index": {"status": 429}}]}) == (0, 0)


def test_instrument_names_drop_the_suffixes_the_prometheus_exporter_adds_back():
    names = {m.name: m.instrument for m in METRICS}
    assert names["sync_pipeline_documents_total"] == "sync_pipeline_documents"
    assert names["sync_pipeline_bulk_request_bytes_total"] == "sync_pipeline_bulk_request"
    assert names["sync_pipeline_lag_seconds"] == "sync_pipeline_lag"
    assert len(set(names.values())) == len(names)
    for metric in METRICS:  # low cardinality: never a key, a value or a table
        assert set(metric.labels) <= {"spec", "capture", "op", "outcome", "quantile", "status", "wal_status"}


def _reading() -> Reading:
    lag = Sketch()
    lag.add_all([0.5] * 98 + [9.0] * 2)
    counters = {name: 0.0 for name in ("runs", "failed_runs", "run_seconds", "bulk_requests", "bulk_bytes")}
    counters |= {f"docs_{o}": 0.0 for o in OUTCOMES.values()}
    counters |= {
        "bulk_seconds": 1.5,
        "retries_429": 2,
        "retries_5xx": 0,
        "lag_count": 100,
        "lag_seconds": 58.5,
    }
    counters |= {"runs": 3, "failed_runs": 1, "docs_indexed": 70, "docs_deleted": 30, "bulk_requests": 4}
    at = datetime(2026, 12, 1, tzinfo=UTC)
    totals = Totals("orders", "triggers", "drain", counters, at, lag=lag)
    slot = SlotState("sync_pipeline_items", None, 4096, "extended", None, "0/1")
    return Reading(
        totals=[totals],
        specs=[
            SpecReading("orders", "triggers", BufferState(12, 40.0, 99), None, 1, 2),
            SpecReading("items", "logical", BufferState(0, None), slot, 0, 0),
        ],
    )


def test_a_reading_becomes_each_metrics_values_with_their_labels():
    found = samples(_reading())
    assert set(found) == {m.name for m in METRICS}

    def value(name: str, **labels: str) -> float:
        (match,) = [v for v, have in found[name] if labels.items() <= have.items()]
        return match

    drain = {"spec": "orders", "capture": "triggers", "op": "drain"}
    assert value("sync_pipeline_documents_total", **drain, outcome="indexed") == 70
    assert value("sync_pipeline_runs_total", **drain, outcome="ok") == 2
    assert value("sync_pipeline_runs_total", **drain, outcome="failed") == 1
    assert value("sync_pipeline_bulk_retries_total", **drain, status="429") == 2
    assert (
        value("sync_pipeline_last_success_timestamp_seconds", **drain)
        == datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    )
    assert value("sync_pipeline_lag_seconds", spec="orders", quantile="0.5") == pytest.approx(
        0.5, rel=ACCURACY
    )
    assert value("sync_pipeline_lag_seconds", spec="orders", quantile="0.99") == pytest.approx(
        9.0, rel=ACCURACY
    )
    assert value("sync_pipeline_lag_samples_total", spec="orders") == 100
    assert value("sync_pipeline_buffer_entries", spec="orders") == 12
    assert value("sync_pipeline_buffer_oldest_age_seconds", spec="items") == 0.0
    assert value("sync_pipeline_capture_problems", spec="orders") == 1
    assert value("sync_pipeline_dead_letters", spec="orders") == 2
    assert value("sync_pipeline_slot_retained_wal_bytes", spec="items") == 4096
    statuses = {have["wal_status"]: v for v, have in found["sync_pipeline_slot_wal_status"]}
    assert statuses == {"reserved": 0, "extended": 1, "unreserved": 0, "lost": 0, "missing": 0}
    assert not [s for s in found["sync_pipeline_slot_retained_wal_bytes"] if s[1]["spec"] == "orders"]
    assert found["sync_pipeline_bulk_latency_seconds"] == []  # nothing measured in the window


def test_figures_count_documents_by_the_loads_names():
    figures = Figures("orders", "triggers", "drain")
    assert figures.is_empty()
    figures.count_documents({"indexed": 3, "stale_skipped": 2, "dead_lettered": 1, "batches": 9})
    assert figures.documents == {
        "indexed": 3, "deleted": 0, "stale": 2, "conflict": 0, "failed": 0, "dead_lettered": 1,
    }  # fmt: skip
    assert not figures.is_empty()


def test_healthz_groups_doctors_findings_per_spec_and_is_503_when_any_needs_action():
    fix = ["sync-pipeline install-triggers --spec orders"]
    report = HealthReport(
        capture=[CaptureIssue("orders", "public.orders", "public.orders_fn", "trigger disabled", fix)],
        backlog=[BacklogStatus("orders", True, 3, 0, 5.0), BacklogStatus("items", True, 0, 0, None)],
        dead_letters=[DeadLetterStatus("items", 0)],
        indexes=[IndexStatus("orders", "orders", ["orders_v1"]), IndexStatus("items", "items", ["items_v1"])],
    )
    health = Health(report, {"orders": {"drain": None}, "items": {"sync": datetime(2026, 12, 1, tzinfo=UTC)}})
    document = healthz_document(health)
    assert health.status == 503 and document["ok"] is False and document["findings"] == 1
    orders, items = document["specs"]["orders"], document["specs"]["items"]
    assert orders["ok"] is False and items["ok"] is True
    (issue,) = orders["capture"]
    assert issue["table"] == "public.orders" and issue["fix"] == fix
    assert items["last_ok"] == {"sync": "2026-12-01T00:00:00+00:00"}
    healthy = Health(HealthReport([], report.backlog, [], report.indexes), {})
    assert healthy.status == 200 and healthz_document(healthy)["ok"] is True
    conflict = MappingStatus(
        "items", "items_v1", ["price: type long → keyword"], ["sync-pipeline rebuild --spec items"]
    )
    in_step = MappingStatus("orders", "orders_v1", [])
    drifted = healthz_document(
        Health(HealthReport([], [], [], [], mappings=[conflict, in_step]), {"items": {}})
    )
    assert drifted["ok"] is False and drifted["findings"] == 1
    assert drifted["specs"]["items"]["mappings"][0]["conflicts"] == ["price: type long → keyword"]
    assert [row["spec"] for row in drifted["others"]] == ["orders"]  # not a spec of this file


def test_operating_docs_list_every_metric_with_its_type_and_labels():
    text = DOCS.read_text(encoding="utf-8")
    for metric in METRICS:
        (row,) = [line for line in text.splitlines() if line.startswith(f"| `{metric.name}` |")]
        assert f"| {metric.kind} |" in row, row
        documented = set(re.findall(r"`(\w+)`", row.split("|")[4]))
        assert documented == set(metric.labels), (metric.name, documented)


def test_the_grafana_dashboard_queries_only_metrics_the_exporter_has():
    dashboard = json.loads((DOCS.parent.parent / "deploy" / "grafana" / "sync_pipeline.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bsync_pipeline_\w+", target["expr"])
    }
    assert queried and queried <= {m.name for m in METRICS}, queried - {m.name for m in METRICS}
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("lag", "backlog", "wal", "documents/s", "failures", "bulk latency"):
        assert topic in titles, topic
