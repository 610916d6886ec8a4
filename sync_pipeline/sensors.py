"""Sensors: launch drains when the change buffer fills up or waits too long.

Failure alerting sensors live in alerts_sensors.py; both are thin wiring
around pure decisions (`drain_decision`) that are unit-tested without Dagster.
"""

from dataclasses import dataclass

import dagster as dg

from .buffer import BufferState, buffer_state
from .resources import PostgresResource
from .specs import BufferSensorSpec, SyncSpec

ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dataclass(frozen=True)
class DrainDecision:
    launch: bool
    reason: str


def drain_decision(state: BufferState, policy: BufferSensorSpec, draining: bool) -> DrainDecision:
    if draining:
        return DrainDecision(False, "a drain for this spec is still running")
    if state.pending == 0:
        return DrainDecision(False, "the buffer is empty")
    if state.pending >= policy.min_changes:
        return DrainDecision(True, f"{state.pending} changes buffered (≥ {policy.min_changes})")
    age = state.oldest_age_seconds or 0.0
    if age >= policy.max_wait_seconds:
        return DrainDecision(True, f"oldest change waited {age:.0f}s (≥ {policy.max_wait_seconds:.0f}s)")
    return DrainDecision(False, f"{state.pending} changes, oldest {age:.0f}s: below both thresholds")


def drain_run_key(spec: SyncSpec, state: BufferState, last_drain_run_id: str | None) -> str:
    """Same buffered work → same key, so a tick evaluated twice never launches twice; a failed
    drain changes `last_drain_run_id`, so the same work is tried again."""
    return f"{spec.name}:{state.max_id}:{last_drain_run_id or '-'}"


def build_buffer_sensor(spec: SyncSpec) -> dg.SensorDefinition:
    job_name = f"{spec.name}_drain"

    @dg.sensor(
        name=f"{spec.name}_buffer_sensor",
        job_name=job_name,
        minimum_interval_seconds=spec.buffer_sensor.interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,  # it runs itself once the daemon is up
        description=(
            f"drain '{spec.name}' when ≥ {spec.buffer_sensor.min_changes} changes are buffered or the "
            f"oldest waited {spec.buffer_sensor.max_wait_seconds:.0f}s"
        ),
    )
    def buffer_sensor(context: dg.SensorEvaluationContext, postgres: PostgresResource):
        instance = context.instance
        active = instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=ACTIVE), limit=1)
        last = instance.get_run_records(dg.RunsFilter(job_name=job_name), limit=1)
        with postgres.engine().connect() as conn:
            state = buffer_state(conn, spec)
            conn.commit()
        decision = drain_decision(state, spec.buffer_sensor, draining=bool(active))
        if not decision.launch:
            return dg.SkipReason(decision.reason)
        context.update_cursor(str(state.max_id))
        return dg.RunRequest(
            run_key=drain_run_key(spec, state, last[0].dagster_run.run_id if last else None),
            tags={"sync_pipeline/trigger": "buffer_sensor", "sync_pipeline/buffer_max_id": str(state.max_id)},
        )

    return buffer_sensor
