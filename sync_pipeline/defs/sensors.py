"""The buffer sensor: launch a drain when the change buffer fills up or waits too long.

Thin wiring around a pure decision (`drain_decision`). It also alerts on what only it can see
(a lagging buffer, a slot at risk, capture triggers gone), each condition once and once more when
it clears; the alert channels and the run alert sensors are in defs/alerts.py.
"""

import json
import time
from dataclasses import dataclass

import dagster as dg

from sync_pipeline.core import naming
from sync_pipeline.core.report.alert_state import OPEN_KEY, conditions_json, open_conditions, track
from sync_pipeline.core.report.failure_alerts import (
    SLOT_AT_RISK,
    Alert,
    alert_for_buffer_lag,
    alert_for_capture_missing,
    alert_for_slot_lag,
)
from sync_pipeline.core.spec.model import BufferSensorSpec, SyncSpec
from sync_pipeline.defs.alerts import AlertChannels
from sync_pipeline.defs.resources import PostgresResource
from sync_pipeline.io.buffer import BufferState, buffer_state, has_capture
from sync_pipeline.io.replication import SlotState, slot_state
from sync_pipeline.io.trigger_state import trigger_gaps
from sync_pipeline.ops.slots import slot_backlog

# a drain in one of these states has not claimed anything yet: it will take whatever is buffered
# when it gets going, so a second one would only queue up behind it with nothing left to do
WAITING = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
]
ACTIVE = [*WAITING, dg.DagsterRunStatus.STARTED]
MAX_ID_TAG = naming.BUFFER_MAX_ID_TAG


@dataclass(frozen=True)
class DrainDecision:
    launch: bool
    reason: str


def drain_decision(
    state: BufferState, policy: BufferSensorSpec, waiting: bool, running_max_id: int | None = None
) -> DrainDecision:
    """Launch a drain, or say why not.

    `waiting`: a drain of this spec is queued or starting; it will take these changes.
    `running_max_id`: None when no drain of this spec is running, else the buffer's max id when
    the running drain was requested. Changes above it may arrive after that drain claimed its
    rows, so one more drain is requested: it waits in the queue (the `sync_pipeline/drain` tag
    concurrency limit runs two drains per spec at a time; claims never overlap) and starts as soon
    as a slot frees, instead of the sensor waiting for the end and then paying a whole run launch.
    """
    if waiting:
        return DrainDecision(False, "a drain for this spec is waiting to start; it takes these changes")
    if state.pending == 0:
        return DrainDecision(False, "the buffer is empty")
    if running_max_id is not None and state.max_id <= running_max_id:
        return DrainDecision(False, f"the running drain was requested for changes up to id {running_max_id}")
    behind = " (queued behind the running drain)" if running_max_id is not None else ""
    if state.pending >= policy.min_changes:
        return DrainDecision(True, f"{state.pending} changes buffered (≥ {policy.min_changes}){behind}")
    age = state.oldest_age_seconds or 0.0
    if age >= policy.max_wait_seconds:
        return DrainDecision(
            True, f"oldest change waited {age:.0f}s (≥ {policy.max_wait_seconds:.0f}s){behind}"
        )
    return DrainDecision(False, f"{state.pending} changes, oldest {age:.0f}s: below both thresholds")


def follow_decision(
    installed: bool, active: list[dg.RunRecord], policy: BufferSensorSpec, now: float
) -> tuple[DrainDecision, str | None]:
    """With `follow_seconds: None` one drain run is always following the spec's changes: launch
    one when none is, and its successor `handover_seconds` before the running one's end (it
    starts meanwhile and takes over the moment the other stops). Also the run id the launch
    follows on, which keys it: each run gets exactly one successor."""
    if not installed:
        return DrainDecision(False, "no change capture installed (install-triggers)"), None
    if any(r.dagster_run.status in WAITING for r in active):
        return DrainDecision(False, "the next following drain is starting"), None
    running = [r for r in active if r.dagster_run.status == dg.DagsterRunStatus.STARTED]
    if not running:
        return DrainDecision(True, "no drain is following the changes"), None
    newest = max(running, key=lambda r: r.start_time or 0.0)
    ends = (newest.start_time or now) + policy.max_run_seconds
    if now >= ends - policy.handover_seconds:
        left = max(0.0, ends - now)
        reason = f"run {newest.dagster_run.run_id[:8]} ends in {left:.0f}s: its successor"
        return DrainDecision(True, reason), newest.dagster_run.run_id
    return DrainDecision(
        False, f"run {newest.dagster_run.run_id[:8]} follows for {ends - now:.0f}s more"
    ), None


def running_drain_max_id(runs: list[dg.DagsterRun]) -> int | None:
    """The highest buffer id a running drain was requested for; 0 for a drain launched by hand
    (no tag: what it covers is unknown, so anything buffered is worth one more drain)."""
    running = [run for run in runs if run.status == dg.DagsterRunStatus.STARTED]
    if not running:
        return None
    return max(int(run.tags.get(MAX_ID_TAG) or 0) for run in running)


def drain_run_key(spec: SyncSpec, state: BufferState, last_drain_run_id: str | None) -> str:
    """Same buffered work → same key, so a tick evaluated twice never launches twice; a failed
    drain, or a drain requested since, changes `last_drain_run_id`, so new work gets a new key."""
    return f"{spec.name}:{state.max_id}:{last_drain_run_id or '-'}"


def parse_cursor(cursor: str | None) -> dict:
    """The sensor's cursor: {"max_id", "open_alerts"}; a bare number from before is the max id."""
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {"max_id": value}


# what cursors kept before alerts were deduplicated (the time of each kind's last alert)
_THROTTLE_KEYS = ("lag_alerted_at", "slot_alerted_at", "capture_alerted_at")


def buffer_lagging(state: BufferState, policy: BufferSensorSpec) -> bool:
    """The oldest buffered change waited at least `lag_alert_seconds`."""
    return state.pending > 0 and (state.oldest_age_seconds or 0.0) >= policy.lag_alert_seconds


def slot_at_risk(slot: SlotState, limit_mb: float) -> bool:
    """The slot keeps more WAL than the threshold (from its restart_lsn) or is unreserved/lost."""
    return slot.lag_bytes > limit_mb * 1024 * 1024 or slot.wal_status in SLOT_AT_RISK


def firing_alerts(
    spec: SyncSpec, state: BufferState, slot: SlotState | None, gaps: list[str], reason: str
) -> list[Alert]:
    """The spec's conditions that hold at this tick: a lagging buffer, a slot at risk, capture
    triggers missing or bypassed (`gaps`: one line each)."""
    policy = spec.buffer_sensor
    firing = []
    if buffer_lagging(state, policy):
        firing.append(alert_for_buffer_lag(spec.name, state.pending, state.oldest_age_seconds or 0.0, reason))
    if slot is not None and slot_at_risk(slot, policy.slot_lag_alert_mb):
        firing.append(
            alert_for_slot_lag(
                spec.name, slot.slot, slot.lag_bytes, policy.slot_lag_alert_mb, slot.wal_status
            )
        )
    if gaps:
        firing.append(alert_for_capture_missing(spec.name, gaps))
    return firing


def build_buffer_sensor(spec: SyncSpec) -> dg.SensorDefinition:
    job_name = naming.drain_job(spec.name)

    @dg.sensor(
        name=naming.buffer_sensor(spec.name),
        job_name=job_name,
        minimum_interval_seconds=spec.buffer_sensor.interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,  # it runs itself once the daemon is up
        description=(
            f"keep a drain of '{spec.name}' following its changes, each run handing over to the next"
            if spec.buffer_sensor.always_following
            else f"drain '{spec.name}' when ≥ {spec.buffer_sensor.min_changes} changes are buffered or "
            f"the oldest waited {spec.buffer_sensor.max_wait_seconds:.0f}s"
        ),
    )
    def buffer_sensor(
        context: dg.SensorEvaluationContext, postgres: PostgresResource, alert_channels: AlertChannels
    ):
        instance = context.instance
        # at most one waiting and two running drains per spec, so a handful covers them all
        records = instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=ACTIVE), limit=10)
        active = [r.dagster_run for r in records]
        last = instance.get_run_records(dg.RunsFilter(job_name=job_name), limit=1)
        slot, installed, leftover, gaps = None, False, "", []
        policy = spec.buffer_sensor
        with postgres.engine().connect() as conn:
            if spec.capture == "logical":
                slot = slot_state(conn, spec.name)
                # a following drain reads the slot: the age of what waits is known to it alone
                state = slot_backlog(conn, spec) if not policy.always_following else BufferState(0, None)
                installed = slot is not None
            else:
                state = buffer_state(conn, spec)
                installed = policy.always_following and has_capture(conn, spec)
                left = slot_state(conn, spec.name)
                if left is not None:  # the install that switched to triggers did not finish
                    leftover = (
                        f"replication slot {left.slot} left by capture: logical holds "
                        f"{left.lag_bytes} bytes of WAL and changes no drain applies: run "
                        f"`sync-pipeline install-triggers --spec {spec.name}`"
                    )
                    context.log.warning(leftover)
                gaps = trigger_gaps(conn, spec)
            conn.commit()
        successor_of = None
        if policy.always_following:
            decision, successor_of = follow_decision(installed, records, policy, time.time())
        else:
            decision = drain_decision(
                state,
                policy,
                waiting=any(run.status in WAITING for run in active),
                running_max_id=running_drain_max_id(active),
            )
        cursor = parse_cursor(context.cursor)
        firing = firing_alerts(spec, state, slot, [gap.line() for gap in gaps], decision.reason)
        # each condition once when it starts and once, resolved, when it clears (core/report/alert_state.py)
        to_send, still_open = track(open_conditions(cursor), firing, time.time())
        for alert in to_send:
            alert_channels.deliver(alert, context.log)
        cursor = {k: v for k, v in cursor.items() if k not in _THROTTLE_KEYS}
        cursor[OPEN_KEY] = conditions_json(still_open)
        if not decision.launch:
            context.update_cursor(json.dumps(cursor))
            return dg.SkipReason("; ".join(filter(None, (decision.reason, leftover))))
        context.update_cursor(json.dumps({**cursor, "max_id": state.max_id}))
        last_run_id = last[0].dagster_run.run_id if last else None
        if policy.always_following:
            run_key = f"{spec.name}:follow:{successor_of or last_run_id or '-'}"
        else:
            run_key = drain_run_key(spec, state, last_run_id)
        return dg.RunRequest(
            run_key=run_key,
            tags={naming.TRIGGER_TAG: "buffer_sensor", MAX_ID_TAG: str(state.max_id)},
        )

    return buffer_sensor
