"""Buffer sensor and window schedule: pure decisions, then the real sensor against PostgreSQL."""

import uuid
from datetime import UTC, datetime

import dagster as dg

from sync_pipeline.core.specs import BufferSensorSpec
from sync_pipeline.defs import build_definitions
from sync_pipeline.defs.alerts import AlertChannels
from sync_pipeline.defs.partitions import partitions_for
from sync_pipeline.defs.resources import PostgresResource
from sync_pipeline.defs.schedules import build_window_schedule, newest_closed_partition
from sync_pipeline.defs.sensors import (
    MAX_ID_TAG,
    build_buffer_sensor,
    drain_run_key,
)
from sync_pipeline.io.buffer import BUFFER, BufferState
from sync_pipeline.ops.capture import install_capture, uninstall_capture


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


def test_the_default_sensor_keeps_a_follower_only_where_capture_is_installed(scenario, pg):
    spec = scenario.spec()
    sensor = build_buffer_sensor(spec)
    resources = {
        "postgres": PostgresResource(url=pg.url.render_as_string(hide_password=False)),
        "alert_channels": AlertChannels(),
    }
    with dg.instance_for_test() as instance:
        idle = sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert "no change capture installed" in idle.skip_message
        install_capture(scenario.engine, spec)
        try:
            request = sensor(dg.build_sensor_context(instance=instance, resources=resources))
            assert isinstance(request, dg.RunRequest) and request.run_key == f"{spec.name}:follow:-"
        finally:
            uninstall_capture(scenario.engine, spec)


def test_buffer_sensor_launches_once_per_batch_of_work_and_queues_at_most_one_more(scenario, insert_rows, pg):
    spec = scenario.spec().model_copy(
        update={"buffer_sensor": BufferSensorSpec(min_changes=5, max_wait_seconds=3600, follow_seconds=0)}
    )
    sensor = build_buffer_sensor(spec)
    postgres = PostgresResource(url=pg.url.render_as_string(hide_password=False))
    resources = {"postgres": postgres, "alert_channels": AlertChannels()}
    install_capture(scenario.engine, spec)
    try:
        with dg.instance_for_test() as instance:
            insert_rows(range(1, 4), "2026-02-01 00:00:00+00")
            context = dg.build_sensor_context(instance=instance, resources=resources)
            assert "below both thresholds" in sensor(context).skip_message

            insert_rows(range(4, 8), "2026-02-01 00:00:00+00")
            first = sensor(dg.build_sensor_context(instance=instance, resources=resources))
            again = sensor(dg.build_sensor_context(instance=instance, resources=resources))
            assert isinstance(first, dg.RunRequest) and first.run_key == again.run_key

            def add_drain(status: dg.DagsterRunStatus, max_id: int) -> dg.DagsterRun:
                run = dg.DagsterRun(
                    job_name=f"{spec.name}_drain",
                    run_id=str(uuid.uuid4()),
                    status=status,
                    tags={MAX_ID_TAG: str(max_id)},
                )
                instance.add_run(run)
                return run

            # a drain requested for all of it is running: nothing to add
            running = add_drain(dg.DagsterRunStatus.STARTED, int(first.tags[MAX_ID_TAG]))
            busy = sensor(dg.build_sensor_context(instance=instance, resources=resources))
            assert "running drain was requested" in busy.skip_message

            # newer changes: one more drain, queued behind the running one, under a new key
            insert_rows(range(8, 13), "2026-02-01 00:00:00+00")
            behind = sensor(dg.build_sensor_context(instance=instance, resources=resources))
            assert isinstance(behind, dg.RunRequest) and behind.run_key != first.run_key
            assert running.run_id in behind.run_key

            # once that one waits (dequeued, not yet started: QUEUED would need a code origin),
            # nothing more until it runs
            add_drain(dg.DagsterRunStatus.NOT_STARTED, int(behind.tags[MAX_ID_TAG]))
            insert_rows(range(13, 18), "2026-02-01 00:00:00+00")
            waiting = sensor(dg.build_sensor_context(instance=instance, resources=resources))
            assert "waiting to start" in waiting.skip_message
    finally:
        uninstall_capture(scenario.engine, spec)
        with scenario.engine.begin() as conn:
            conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))
