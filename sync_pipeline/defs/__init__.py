"""Dagster wiring: everything a sync spec becomes in Dagster, and nothing else.

Assets, checks, jobs, partitions, schedules, sensors and resources are built
here from specs; the work they start lives in ops/. May import ops, io, core
and settings; nothing below imports this package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg

from sync_pipeline import settings
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.memory import bound_native_memory

bound_native_memory()  # the code location's process: before its runs start threads or use Arrow


def load_specs(path: str | Path) -> list[SyncSpec]:
    """The spec file, its `source.model` references resolved (io/models.py): the code
    location's loader, as the CLI's and the Flask blueprint's."""
    from sync_pipeline.io.models import load_specs as load

    return load(path)


def build_definitions(
    specs: Sequence[SyncSpec], resources: Mapping[str, dg.ConfigurableResource] | None = None
) -> dg.Definitions:
    """One asset group, three jobs, a schedule, a buffer and a catch-up sensor per spec, plus the alert
    sensors (runs, checks, freshness); `resources` default to the deployment's
    (`resources_for(settings.load())`)."""
    from sync_pipeline.defs.alerts import quality_alerts, run_failure_alerts
    from sync_pipeline.defs.assets import all_assets
    from sync_pipeline.defs.catchup import build_catchup_sensor
    from sync_pipeline.defs.checks import build_mapping_check
    from sync_pipeline.defs.freshness import build_freshness_alert_sensor
    from sync_pipeline.defs.jobs import spec_jobs
    from sync_pipeline.defs.loggers import console_logger
    from sync_pipeline.defs.resources import resources_for
    from sync_pipeline.defs.schedules import build_window_schedule
    from sync_pipeline.defs.sensors import build_buffer_sensor

    return dg.Definitions(
        assets=[asset for spec in specs for asset in all_assets(spec)],
        sensors=[
            *(build_buffer_sensor(spec) for spec in specs),
            *(build_catchup_sensor(spec) for spec in specs if spec.schedule.catch_up),
            run_failure_alerts,
            quality_alerts,
            build_freshness_alert_sensor(specs),
        ],
        asset_checks=[build_mapping_check(spec) for spec in specs],
        schedules=[build_window_schedule(spec) for spec in specs],
        jobs=[job for spec in specs for job in spec_jobs(spec)],
        resources=dict(resources if resources is not None else resources_for(settings.load())),
        executor=_executor(settings.load()),
        loggers={"console": console_logger},  # Dagster's, or JSON lines (SYNC_LOG_FORMAT=json)
    )


def _executor(config) -> dg.ExecutorDefinition:
    """Every step in the run worker's own process, unless the deployment says otherwise.

    The default (multiprocess) executor spawns a process per step that imports Dagster and this
    code location again, seconds per step that a drain of a few rows (the freshness path) or a
    three-step sync cannot win back; the CLI runs jobs in process too. SYNC_EXECUTOR=celery puts
    each step on a Celery worker instead (docs/scaling.md): the same code location, unchanged.
    """
    if config.executor != "celery":
        return dg.in_process_executor
    from dagster_celery import celery_executor  # an optional dependency: only where it is used

    broker = {"env": "SYNC_CELERY_BROKER"}
    backend = {"env": "SYNC_CELERY_BACKEND"} if config.celery_backend else "rpc://"
    return celery_executor.configured({"broker": broker, "backend": backend})
