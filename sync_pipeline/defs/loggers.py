"""The console logger of every job: Dagster's own, or JSON lines with SYNC_LOG_FORMAT=json.

Named `console` like Dagster's default, with the same config (`log_level`, `name`), so the
CLI's run config and a run launched from the UI or the daemon configure it the same way. With
`json`, each record of a step is one object (io/logs.py) with the run id, job, step, spec and
partition from the run's tags, and for an asset event its asset and numeric metadata (a batch's
counts, a load's totals, seconds) and for a step's success its duration. Those events are
Dagster's DEBUG records: they are logged at INFO here, so the counts reach a log at the usual
threshold.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

import dagster as dg

from sync_pipeline import settings
from sync_pipeline.core import naming
from sync_pipeline.io.logs import JsonFormatter

# Dagster events that carry counts or durations: logged at INFO (Dagster logs them at DEBUG)
COUNTED_EVENTS = {
    dg.DagsterEventType.ASSET_OBSERVATION,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
}


def _event(extra: Mapping[str, Any] | None) -> Any:
    return (extra or {}).get("dagster_event")


class _CountsAtInfo(logging.Logger):
    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        event = _event(kwargs.get("extra"))
        if event is not None and event.event_type in COUNTED_EVENTS:
            level = max(level, logging.INFO)
        super().log(level, msg, *args, **kwargs)


def _numbers(metadata: Mapping[str, Any]) -> dict[str, int | float]:
    values = {key: getattr(value, "value", value) for key, value in metadata.items()}
    return {k: v for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class StepFormatter(JsonFormatter):
    """A Dagster record's run, step and event as fields; its own message, not Dagster's line."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        meta = getattr(record, "dagster_meta", None)
        if not meta:
            return super().fields(record)
        tags = meta.get("job_tags") or {}
        fields: dict[str, Any] = {
            "run_id": meta.get("run_id"),
            "job": meta.get("job_name"),
            "step": meta.get("step_key"),
            "spec": tags.get(naming.SPEC_TAG),
            "partition": naming.partition_label(tags),
        }
        event = meta.get("dagster_event")
        if event is not None:
            fields["event"] = event.event_type_value.lower()
            data = event.event_specific_data
            asset_event = getattr(data, "materialization", None) or getattr(data, "asset_observation", None)
            if asset_event is not None:
                fields["asset"] = asset_event.asset_key.to_user_string()
                fields["partition"] = asset_event.partition or fields["partition"]
                fields.update(_numbers(asset_event.metadata))
            if getattr(data, "duration_ms", None) is not None:
                fields["seconds"] = round(data.duration_ms / 1000, 3)
        return fields

    def message(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None)
        return meta["orig_message"] if meta else record.getMessage()


_CONFIG = dg.Field(
    {
        "log_level": dg.Field(str, is_required=False, default_value="INFO"),
        "name": dg.Field(str, is_required=False, default_value="dagster"),
    }
)


@dg.logger(_CONFIG, description="Dagster's console logger; JSON lines with SYNC_LOG_FORMAT=json.")
def console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    if settings.log_format() != "json":
        return dg.colored_console_logger.logger_fn(init_context)
    config = init_context.logger_config
    logger = _CountsAtInfo(config["name"], level=logging.getLevelName(config["log_level"].upper()))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StepFormatter())
    logger.addHandler(handler)
    return logger
