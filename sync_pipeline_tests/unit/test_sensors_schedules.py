"""Buffer sensor and window schedule: the pure decisions."""

import uuid
from datetime import UTC, datetime

import dagster as dg
import pytest

from sync_pipeline.core.report.failure_alerts import alert_for_slot_lag
from sync_pipeline.core.spec.model import BufferSensorSpec
from sync_pipeline.defs import build_definitions
from sync_pipeline.defs.partitions import partitions_for
from sync_pipeline.defs.schedules import build_window_schedule, newest_closed_partition
from sync_pipeline.defs.sensors import (
    MAX_ID_TAG,
    drain_decision,
    drain_run_key,
    follow_decision,
    running_drain_max_id,
    slot_at_risk,
)
from sync_pipeline.io.buffer import BufferState
from sync_pipeline.io.replication import SlotState
from sync_pipeline_tests.conftest import Scenario

POLICY = BufferSensorSpec(min_changes=10, max_wait_seconds=30)


@pytest.fixture()
def scenario() -> Scenario:
    """A scenario's spec only, for the decisions below: they read no table and no index, so this
    module's `scenario` has no servers behind it (conftest's starts them and makes a table)."""
    return Scenario(table="t_sensors", index="t_sensors", engine=None, es=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "waiting", "running_max_id", "launch"),
    [
        (BufferState(0, None, 0), False, None, False),
        (BufferState(3, 5.0, 9), False, None, False),  # few and fresh: wait
        (BufferState(10, 1.0, 19), False, None, True),  # enough changes
        (BufferState(2, 31.0, 9), False, None, True),  # waited long enough
        (BufferState(500, 99.0, 9), True, None, False),  # a drain waiting to start takes them
        (BufferState(500, 99.0, 9), True, 5, False),  # one waiting behind the running one: enough
        (BufferState(500, 99.0, 9), False, 9, False),  # the running drain was asked for all of them
        (BufferState(500, 99.0, 12), False, 9, True),  # newer than the running drain: queue one
        (BufferState(3, 5.0, 12), False, 9, False),  # ... but only past the spec's thresholds
    ],
)
def test_drain_decision(state, waiting, running_max_id, launch):
    assert drain_decision(state, POLICY, waiting, running_max_id).launch is launch


@pytest.mark.parametrize(
    ("retained", "wal_status", "at_risk"),
    [
        (1024, "reserved", False),  # little WAL kept, safe
        (3 * 1048576, "extended", True),  # more kept than the 2 MB limit
        (1024, "unreserved", True),  # past max_slot_wal_keep_size, whatever it keeps
        (0, "lost", True),  # invalidated: its changes are gone
    ],
)
def test_slot_alert_on_retained_wal_and_on_a_slot_at_risk(retained, wal_status, at_risk):
    slot = SlotState("sync_pipeline_s", None, retained, wal_status, None, "0/0")
    assert slot_at_risk(slot, 2.0) is at_risk
    alert = alert_for_slot_lag("s", slot.slot, retained, 2.0, wal_status)
    assert alert.kind == "slot_lag" and (wal_status in alert.title) is (wal_status in ("unreserved", "lost"))


def test_running_drain_max_id_reads_the_running_drains_tag():
    def run(status, tags):
        return dg.DagsterRun(job_name="p_drain", run_id=str(uuid.uuid4()), status=status, tags=tags)

    queued = run(dg.DagsterRunStatus.NOT_STARTED, {MAX_ID_TAG: "40"})  # (QUEUED needs an origin)
    assert running_drain_max_id([queued]) is None
    assert running_drain_max_id([queued, run(dg.DagsterRunStatus.STARTED, {MAX_ID_TAG: "7"})]) == 7
    assert running_drain_max_id([run(dg.DagsterRunStatus.STARTED, {})]) == 0  # launched by hand


def _record(status: dg.DagsterRunStatus, start_time: float | None) -> dg.RunRecord:
    run = dg.DagsterRun(job_name="p_drain", run_id=str(uuid.uuid4()), status=status)
    return dg.RunRecord(1, run, datetime.now(UTC), datetime.now(UTC), start_time, None)


def test_one_drain_always_follows_and_its_successor_is_requested_before_it_ends():
    policy = BufferSensorSpec()  # the default: following, 300 s runs, handover 60 s before the end
    now = 10_000.0
    assert not follow_decision(False, [], policy, now)[0].launch  # nothing captured: no run
    decision, successor_of = follow_decision(True, [], policy, now)
    assert decision.launch and successor_of is None
    early = _record(dg.DagsterRunStatus.STARTED, now - 100)
    decision, _ = follow_decision(True, [early], policy, now)
    assert not decision.launch and "200s more" in decision.reason
    late = _record(dg.DagsterRunStatus.STARTED, now - 250)
    decision, successor_of = follow_decision(True, [late], policy, now)
    assert decision.launch and successor_of == late.dagster_run.run_id
    starting = _record(dg.DagsterRunStatus.STARTING, None)
    assert not follow_decision(True, [late, starting], policy, now)[0].launch  # already on its way
    with pytest.raises(ValueError, match="handover_seconds"):
        BufferSensorSpec(max_run_seconds=30)


def test_run_key_is_stable_for_the_same_work_and_changes_after_a_failed_drain(scenario):
    spec = scenario.spec()
    state = BufferState(12, 3.0, 120)
    assert drain_run_key(spec, state, "r1") == drain_run_key(spec, BufferState(12, 9.0, 120), "r1")
    assert drain_run_key(spec, state, "r1") != drain_run_key(spec, state, "r2")
    assert drain_run_key(spec, state, "r1") != drain_run_key(spec, BufferState(13, 3.0, 121), "r1")


def test_newest_closed_partition_skips_the_open_window(scenario):
    partitions = partitions_for(scenario.spec(grain="day", start="2026-02-01"))
    assert newest_closed_partition(partitions, datetime(2026, 2, 10, 0, 15, tzinfo=UTC)) == "2026-02-09"
    assert newest_closed_partition(partitions, datetime(2026, 2, 1, 12, tzinfo=UTC)) is None


def test_schedule_requests_the_newest_closed_window_keyed_by_partition(scenario):
    spec = scenario.spec(grain="day", start="2026-02-01")
    schedule = build_window_schedule(spec)
    assert schedule.cron_schedule == "15 0 * * *"
    repository = build_definitions([spec]).get_repository_def()
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 2, 10, 0, 15, tzinfo=UTC), repository_def=repository
    )
    (request,) = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-02-09" and request.run_key == "2026-02-09"
