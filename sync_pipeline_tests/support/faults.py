"""Seeding a scenario, running the CLI's sync, counting documents, and `record`: a row of the
fault-injection drift table printed at the end of a run (verify must find 0 drift)."""

import os
import subprocess
import sys
from pathlib import Path

from sync_pipeline.apps.cli.runner import run_verify
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline_tests.conftest import CHAOS_RESULTS
from sync_pipeline_tests.support.metrics_agreement import metrics_agree
from sync_pipeline_tests.support.paths import ROOT


def seed(scenario, rows: int, first_id: int = 1, pad: int = 0) -> None:
    scenario.execute(
        f"""INSERT INTO {scenario.table} (id, title, price, payload, tags, updated_at)
            SELECT g, 'item ' || g || ' 商品' || repeat('x', {int(pad)}), (g % 1000) / 10.0,
                   jsonb_build_object('n', g), ARRAY['t' || (g % 7)],
                   timestamptz '2026-02-01 00:00:00+00' + (g / 50) * interval '1 minute'
            FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) g""",
        {"first": first_id, "last": first_id + rows - 1},
    )


def cli_sync(config: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    spec_name = parse_specs(config.read_text())[0].name
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sync_pipeline.apps.cli",
            "--config",
            str(config),
            "sync",
            "--spec",
            spec_name,
            "--full",
            *extra,
        ],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def doc_count(es, index: str) -> int:
    try:
        es.indices.refresh(index=index)
        return es.count(index=index)["count"]
    except Exception:
        return 0


def record(name: str, rows_changed: int, spec, dead_letters: int = 0, scenario=None) -> None:
    """The scenario's row of the chaos table; given its `scenario`, also checks that the metrics
    and /healthz agree with it (metrics_agreement.metrics_agree)."""
    (report,) = run_verify([spec], [spec])
    # documents parked as dead letters are accounted for, not drift
    drift = report.drift - dead_letters if set(report.missing_ids) else report.drift
    if drift or scenario is None:
        CHAOS_RESULTS.append((name, rows_changed, drift, dead_letters))  # a drift shows in the table
        assert drift == 0, report.lines()
        return
    agree = metrics_agree(scenario.engine, scenario.es, spec, rows_changed, drift, dead_letters)
    CHAOS_RESULTS.append((name, rows_changed, drift, dead_letters, agree))
