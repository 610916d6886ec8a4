"""The exporter on the real servers: `sync-pipeline metrics` as a process of its own, scraped
before and after a real drain, and /healthz (the exporter's and the Flask extension's) turning
503 over a disabled trigger while the buffer sensor's capture_missing alert goes out."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from sync_pipeline.apps.cli import main
from sync_pipeline.apps.flask import SyncPipeline
from sync_pipeline.core.cdc.triggers import function_name
from sync_pipeline.core.spec.model import SyncSpec, parse_specs
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline.ops.scrape import read, samples
from sync_pipeline.ops.verify import verify_spec
from sync_pipeline_tests.conftest import Scenario, free_port, indexed, stop_process_groups, wait_until
from sync_pipeline_tests.support.capture_health import (
    SENSOR,
    _texts,
    _tick,
)
from sync_pipeline_tests.support.paths import ROOT

TOKEN = "metrics-token-5d2a"


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Exporter:
    """`sync-pipeline metrics` for a spec file, on a port of its own, reading the database afresh
    on every scrape (--cache-seconds 0)."""

    def __init__(self, config: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sync_pipeline.apps.cli", "--config", str(config), "metrics",
             "--port", str(self.port), "--cache-seconds", "0"],
            cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
        wait_until(lambda: self._answers(), 60, "the exporter to listen", pause=0.3)

    def _answers(self) -> bool:
        assert self.process.poll() is None, "the exporter exited"
        try:
            return _get(f"http://127.0.0.1:{self.port}/metrics")[0] == 200
        except OSError:
            return False

    def scrape(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        status, body = _get(f"http://127.0.0.1:{self.port}/metrics")
        assert status == 200, body
        found: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                found.setdefault(sample.name, []).append((sample.labels, sample.value))
        return found

    def healthz(self) -> tuple[int, dict]:
        status, body = _get(f"http://127.0.0.1:{self.port}/healthz")
        return status, json.loads(body)

    def stop(self) -> None:
        stop_process_groups([self.process], grace=10)


@pytest.fixture()
def exporter_for(live) -> Iterator:
    started: list[Exporter] = []

    def start(config: Path) -> Exporter:
        started.append(Exporter(config))
        return started[-1]

    yield start
    for exporter in started:
        exporter.stop()


def value(scraped: dict, name: str, **labels: str) -> float | None:
    """The sample of `name` whose labels include `labels` (None: there is none)."""
    matches = [v for have, v in scraped.get(name, []) if labels.items() <= have.items()]
    assert len(matches) <= 1, (name, labels, matches)
    return matches[0] if matches else None


def test_a_scrape_around_a_real_drain_shows_the_changes_drained_the_backlog_emptied_and_their_lag(
    scenario: Scenario, insert_rows, exporter_for, tmp_path
):
    spec = scenario.spec()
    install_capture(scenario.engine, spec)
    try:
        drain(scenario.engine, scenario.es, spec)  # nothing buffered yet: creates the index
        exporter = exporter_for(scenario.spec_file(tmp_path))
        written = time.time()
        insert_rows(range(1, 41), "2026-02-01 00:00:00+00")
        scenario.execute(f"DELETE FROM {scenario.table} WHERE id > 36")
        name = {"spec": spec.name, "capture": "triggers"}
        run = {**name, "op": "drain"}

        before = exporter.scrape()
        assert value(before, "sync_pipeline_buffer_entries", **name) == 44  # 40 inserts, 4 deletes
        assert value(before, "sync_pipeline_buffer_oldest_age_seconds", **name) > 0
        assert value(before, "sync_pipeline_runs_total", **run, outcome="ok") == 1  # the empty drain
        assert value(before, "sync_pipeline_documents_total", **run, outcome="indexed") == 0
        assert value(before, "sync_pipeline_lag_seconds", **name, quantile="0.5") is None

        totals = drain(scenario.engine, scenario.es, spec)
        assert (totals.indexed, totals.deleted) == (36, 4)
        after = exporter.scrape()
        drained = time.time()

        assert value(after, "sync_pipeline_buffer_entries", **name) == 0
        assert value(after, "sync_pipeline_buffer_oldest_age_seconds", **name) == 0
        assert value(after, "sync_pipeline_documents_total", **run, outcome="indexed") == 36
        assert value(after, "sync_pipeline_documents_total", **run, outcome="deleted") == 4
        assert value(after, "sync_pipeline_documents_total", **run, outcome="failed") == 0
        assert value(after, "sync_pipeline_runs_total", **run, outcome="ok") == 2
        assert value(after, "sync_pipeline_lag_samples_total", **name) == 44  # one per buffer entry
        p50 = value(after, "sync_pipeline_lag_seconds", **name, quantile="0.5")
        p99 = value(after, "sync_pipeline_lag_seconds", **name, quantile="0.99")
        assert 0 < p50 <= p99 <= (drained - written) * 1.05, (p50, p99, drained - written)
        assert value(after, "sync_pipeline_bulk_requests_total", **run) >= 1
        assert value(after, "sync_pipeline_bulk_request_bytes_total", **run) > 0
        assert value(after, "sync_pipeline_bulk_latency_seconds", **run, quantile="0.95") > 0
        assert value(after, "sync_pipeline_last_success_timestamp_seconds", **run) >= written - 1
        # the index holds what the counters say, and agrees with the table
        assert len(indexed(scenario.es, scenario.index)) == 36
        assert verify_spec(scenario.engine, scenario.es, spec).drift == 0
    finally:
        uninstall_capture(scenario.engine, spec)


def _sensor_spec(scenario: Scenario) -> SyncSpec:
    return parse_specs(scenario.spec_text(extra=SENSOR.format(more="600")), origin="test")[0]


def _flask_healthz(config: Path) -> tuple[int, dict]:
    app = Flask("metrics_ext")
    app.config.update(
        SYNC_PIPELINE_API_TOKEN=TOKEN,
        SYNC_PIPELINE_CONFIG=str(config),
        SYNC_PIPELINE_DAGSTER_URL=f"http://127.0.0.1:{free_port()}",
        SYNC_PIPELINE_METRICS=True,
    )
    SyncPipeline(app)
    client = app.test_client()
    assert client.get("/sync/healthz").status_code == 401  # behind the token, as every route
    response = client.get("/sync/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
    metrics = client.get("/sync/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert metrics.status_code == 200 and b"sync_pipeline_buffer_entries" in metrics.data
    return response.status_code, response.get_json()


def test_a_disabled_trigger_turns_healthz_503_naming_the_table_and_the_sensor_alerts(
    scenario: Scenario,
    insert_rows,
    exporter_for,
    pg,
    receiver,
    tmp_path,
):
    url, received = receiver
    spec = _sensor_spec(scenario)
    config = tmp_path / "sync.yaml"
    config.write_text(scenario.spec_text(extra=SENSOR.format(more="600")))
    insert_rows(range(1, 11), "2026-02-01 00:00:00+00")
    install_capture(scenario.engine, spec)
    try:
        drain(scenario.engine, scenario.es, spec)
        exporter = exporter_for(config)
        status, document = exporter.healthz()
        assert status == 200 and document["specs"][spec.name]["ok"] is True, document
        assert value(exporter.scrape(), "sync_pipeline_capture_problems", spec=spec.name) == 0

        trigger = function_name(scenario.table, scenario.table)
        scenario.execute(f"ALTER TABLE {scenario.table} DISABLE TRIGGER {trigger}")

        status, document = exporter.healthz()
        assert status == 503 and document["ok"] is False
        mine = document["specs"][spec.name]
        assert mine["ok"] is False
        (issue,) = mine["capture"]
        assert scenario.table in issue["table"] and trigger in issue["problem"] + issue["function"], issue
        assert f"sync-pipeline install-triggers --spec {spec.name}" in issue["fix"]
        assert value(exporter.scrape(), "sync_pipeline_capture_problems", spec=spec.name) == 1
        flask_status, flask_document = _flask_healthz(config)
        assert flask_status == 503 and flask_document["specs"][spec.name]["capture"] == mine["capture"]

        _tick(spec, pg, url)  # the buffer sensor's evaluation, as the daemon runs it
        (alert,) = _texts(received, "capture_missing")
        assert scenario.table in alert and trigger in alert

        install_capture(scenario.engine, spec)  # doctor's fix: ENABLE ALWAYS again
        status, document = exporter.healthz()
        assert status == 200 and document["specs"][spec.name]["ok"] is True, document
    finally:
        uninstall_capture(scenario.engine, spec)


def test_a_mapping_only_a_rebuild_changes_turns_healthz_503_and_doctor_names_the_field(
    scenario: Scenario, insert_rows, exporter_for, tmp_path, capsys
):
    spec = scenario.spec()
    config = scenario.spec_file(tmp_path)
    insert_rows(range(1, 6), "2026-02-01 00:00:00+00")
    install_capture(scenario.engine, spec)
    try:
        drain(scenario.engine, scenario.es, spec)  # the index, with price as a number
        exporter = exporter_for(config)
        status, document = exporter.healthz()
        assert status == 200, document
        assert document["specs"][spec.name]["mappings"][0]["conflicts"] == []

        scenario.execute(f"ALTER TABLE {scenario.table} ALTER COLUMN price TYPE text")  # a migration
        status, document = exporter.healthz()
        assert status == 503
        (mapping,) = document["specs"][spec.name]["mappings"]
        assert mapping["needs_action"] and any(c.startswith("price:") for c in mapping["conflicts"]), mapping
        assert mapping["fix"] == [f"sync-pipeline rebuild --spec {spec.name}"]

        capsys.readouterr()
        assert main(["--config", str(config), "doctor", "--spec", spec.name]) == 1
        out = capsys.readouterr().out
        assert "index mappings: 1 needs action" in out and "price:" in out, out
    finally:
        uninstall_capture(scenario.engine, spec)


def test_a_full_sync_and_a_logical_drain_are_measured_with_the_slots_commit_times(scenario, logical_spec):
    spec = logical_spec

    def now() -> dict:  # what a scrape would export, read the exporter's way (ops/scrape.py)
        return samples(read(scenario.engine, [spec]))

    def one(found: dict, name: str, **labels: str) -> float | None:
        (match,) = [v for v, have in found[name] if labels.items() <= have.items()] or [None]
        return match

    name = {"spec": spec.name, "capture": "logical"}
    before = now()
    sync = {**name, "op": "sync"}  # the fixture's full sync: one run over every window
    assert one(before, "sync_pipeline_documents_total", **sync, outcome="indexed") == 300
    assert one(before, "sync_pipeline_runs_total", **sync, outcome="ok") == 1
    assert one(before, "sync_pipeline_bulk_requests_total", **sync) >= 1
    assert one(before, "sync_pipeline_slot_wal_status", **name, wal_status="reserved") == 1
    assert one(before, "sync_pipeline_capture_problems", **name) == 0
    samples_before = one(before, "sync_pipeline_lag_samples_total", **name)

    scenario.execute(f"UPDATE {scenario.table} SET title = 'renamed' WHERE id <= 10")
    scenario.execute(f"DELETE FROM {scenario.table} WHERE id BETWEEN 11 AND 15")
    changed = time.time()
    totals = drain(scenario.engine, scenario.es, spec)
    drained = time.time()
    assert (totals.indexed, totals.deleted) == (10, 5)
    after = now()
    assert one(after, "sync_pipeline_lag_samples_total", **name) == samples_before + 15  # one per change
    p99 = one(after, "sync_pipeline_lag_seconds", **name, quantile="0.99")
    assert p99 is not None and p99 > 0
    # the newest changes waited at most since their commit; the 5-minute window also holds the seed's
    recent = one(after, "sync_pipeline_lag_sum_seconds_total", **name) - one(
        before, "sync_pipeline_lag_sum_seconds_total", **name
    )
    assert 0 < recent <= 15 * (drained - changed + 1)
    assert one(after, "sync_pipeline_slot_retained_wal_bytes", **name) >= 0
