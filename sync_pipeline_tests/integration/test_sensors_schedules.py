"""Buffer sensor and window schedule: the real sensor against PostgreSQL."""

import uuid

import dagster as dg

from sync_pipeline.core.spec.model import BufferSensorSpec
from sync_pipeline.defs.alerts import AlertChannels
from sync_pipeline.defs.resources import PostgresResource
from sync_pipeline.defs.sensors import (
    MAX_ID_TAG,
    build_buffer_sensor,
)
from sync_pipeline.io.buffer import BUFFER
from sync_pipeline.ops.capture import install_capture, uninstall_capture


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
