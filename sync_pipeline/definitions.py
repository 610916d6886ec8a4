"""The Dagster code location: one asset group and one job per sync spec."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from sync_pipeline.core.specs import SyncSpec, load_specs
from sync_pipeline.defs.assets import (
    build_drain_asset,
    build_drain_job,
    build_rebuild_job,
    build_spec_assets,
    build_sync_job,
)
from sync_pipeline.defs.resources import default_resources
from sync_pipeline.defs.schedules import build_window_schedule
from sync_pipeline.defs.sensors import build_buffer_sensor, quality_alerts, run_failure_alerts
from sync_pipeline.settings import PROJECT_ROOT


def config_path() -> Path:
    """SYNC_CONFIG, else ./sync.yaml, else the project's own sync.yaml."""
    if os.environ.get("SYNC_CONFIG"):
        return Path(os.environ["SYNC_CONFIG"])
    local = Path("sync.yaml")
    return local if local.exists() else PROJECT_ROOT / "sync.yaml"


def build_definitions(specs: list[SyncSpec]) -> dg.Definitions:
    assets = [a for spec in specs for a in (*build_spec_assets(spec), build_drain_asset(spec))]
    return dg.Definitions(
        assets=assets,
        sensors=[*(build_buffer_sensor(spec) for spec in specs), run_failure_alerts, quality_alerts],
        schedules=[build_window_schedule(spec) for spec in specs],
        jobs=[
            job
            for spec in specs
            for job in (build_sync_job(spec), build_drain_job(spec), build_rebuild_job(spec))
        ],
        resources=default_resources(),
        # every step in the run worker's own process: the default (multiprocess) executor spawns a
        # process per step that imports Dagster and this code location again, seconds per step
        # that a drain of a few rows (the freshness path) or a three-step sync cannot win back;
        # the CLI already runs jobs this way (execute_in_process)
        executor=dg.in_process_executor,
    )


def load_definitions() -> dg.Definitions:
    return build_definitions(load_specs(config_path()))
