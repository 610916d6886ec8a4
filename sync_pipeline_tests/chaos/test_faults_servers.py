"""Server-side faults production clusters meet: the disk flood-stage watermark, PostgreSQL
restarted under a drain (real servers; each scenario ends in verify at zero drift)."""

from __future__ import annotations

import threading
import time

import pytest

from sync_pipeline.core.windows import Window
from sync_pipeline.defs.assets import load_window
from sync_pipeline.io import deadletters
from sync_pipeline.io.buffer import BUFFER
from sync_pipeline.io.bulk_load import _blocked
from sync_pipeline.io.staging import StagingArea
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline.ops.sync_window import LoadFailed, WindowRun
from sync_pipeline_devtools import services
from sync_pipeline_tests.conftest import wait_until
from sync_pipeline_tests.support.faults import record, seed

FLOOD = {
    "cluster.routing.allocation.disk.threshold_enabled": True,
    # as free space: every disk has less than this, so every watermark is exceeded at once
    "cluster.routing.allocation.disk.watermark.low": "100tb",
    "cluster.routing.allocation.disk.watermark.high": "100tb",
    "cluster.routing.allocation.disk.watermark.flood_stage": "100tb",
    "cluster.info.update.interval": "10s",  # the shortest Elasticsearch allows
}


def test_a_cluster_block_is_a_wait_never_a_dead_letter():
    block = {"status": 429, "error": {"type": "cluster_block_exception", "reason": "flood-stage"}}
    assert _blocked(block) and _blocked({**block, "status": 403})  # older versions answer 403
    assert not _blocked({"status": 400, "error": {"type": "document_parsing_exception"}})


def blocked(es, index: str) -> bool:
    found = es.indices.get_settings(index=index, name="index.blocks.read_only_allow_delete").body
    return any(s["settings"].get("index", {}).get("blocks") for s in found.values())


def _run(scenario, spec, tmp_path, key: str):
    run = WindowRun(spec, Window(None, None), key, scenario.engine, StagingArea(tmp_path), log=lambda _: None)
    return load_window(run, scenario.es)


@pytest.fixture()
def flood_stage(es):
    def reach() -> None:
        es.cluster.put_settings(transient=FLOOD)

    def lift() -> None:
        es.cluster.put_settings(transient=dict.fromkeys(FLOOD))

    yield reach, lift
    lift()


def test_the_flood_stage_watermark_blocks_a_load_that_waits_and_resumes_when_it_lifts(
    scenario, tmp_path, es, flood_stage
):
    reach, lift = flood_stage
    seed(scenario, 1)
    patient = scenario.spec().model_copy(
        update={
            "retry": scenario.spec().retry.model_copy(
                update={"attempts": 50, "max_backoff_seconds": 3.0, "max_total_seconds": 240.0}
            )
        }
    )
    assert _run(scenario, patient, tmp_path, "first").totals.indexed == 1  # the index exists
    reach()
    wait_until(lambda: blocked(es, scenario.index), 90, "the flood-stage block on the index")
    seed(scenario, 3_000, first_id=2)
    outcome: dict = {}
    loader = threading.Thread(
        target=lambda: outcome.update(result=_run(scenario, patient, tmp_path, "blocked"))
    )
    loader.start()
    time.sleep(8)  # the load meets the block, and waits
    assert loader.is_alive() and es.count(index=scenario.index)["count"] <= 1
    lift()  # disk freed: Elasticsearch lifts the block itself
    loader.join(timeout=300)
    totals = outcome["result"].totals
    assert totals.failed == 0 and totals.dead_lettered == 0 and totals.indexed == 3_001
    record("disk flood-stage block during a load, lifted", 3_000, scenario.spec())


def test_a_flood_stage_block_outlasting_the_retries_fails_the_run_and_keeps_no_dead_letter(
    scenario, tmp_path, es, flood_stage
):
    reach, lift = flood_stage
    seed(scenario, 1)
    assert _run(scenario, scenario.spec(), tmp_path, "first").totals.indexed == 1
    reach()
    wait_until(lambda: blocked(es, scenario.index), 90, "the flood-stage block on the index")
    seed(scenario, 500, first_id=2)
    hasty = scenario.spec().model_copy(
        update={"retry": scenario.spec().retry.model_copy(update={"attempts": 3, "max_total_seconds": 3.0})}
    )
    with pytest.raises(LoadFailed) as caught:
        _run(scenario, hasty, tmp_path, "blocked")
    assert caught.value.totals.failed == 501 and caught.value.totals.dead_lettered == 0
    with scenario.engine.begin() as conn:
        assert deadletters.list_dead_letters(conn, scenario.table) == []
    lift()
    wait_until(lambda: not blocked(es, scenario.index), 90, "the block to lift")
    assert _run(scenario, scenario.spec(), tmp_path, "again").totals.failed == 0  # the next run
    record("flood-stage block outlasting the retries: run failed, re-run", 500, scenario.spec())


def test_postgres_restarted_mid_drain_keeps_the_buffer_and_the_next_drain_finishes(scenario, tmp_path):
    spec = scenario.spec()
    seed(scenario, 2_000)
    assert _run(scenario, spec, tmp_path, "first").totals.indexed == 2_000
    install_capture(scenario.engine, spec)
    try:
        scenario.execute(f"UPDATE {scenario.table} SET title = 'changed ' || id, updated_at = now()")
        scenario.execute(f"DELETE FROM {scenario.table} WHERE id % 10 = 0")
        outcome: dict = {}

        def restart_once(_batch) -> None:
            # after the drain's first acknowledged batch, inside its claim: deterministic, however
            # fast the drain would otherwise finish
            if not outcome:
                outcome["restarted"] = True
                services.restart_postgres()

        try:
            drain(scenario.engine, scenario.es, spec, batch_size=20, on_batch=restart_once)
        except Exception as exc:  # the restart cut the drain's connection
            outcome["error"] = exc
        assert "error" in outcome, "the drain finished before the restart: nothing was tested"
        scenario.engine.dispose()  # the pool's connections died with the server
        with scenario.engine.connect() as conn:
            left = conn.execute(BUFFER.select().where(BUFFER.c.spec == spec.name)).all()
        assert left, "the interrupted drain's claim must stay buffered"
        totals = drain(scenario.engine, scenario.es, spec)
        assert totals.failed == 0 and totals.dead_lettered == 0
        with scenario.engine.connect() as conn:
            assert conn.execute(BUFFER.select().where(BUFFER.c.spec == spec.name)).all() == []
        record(f"PostgreSQL restarted mid-drain ({len(left)} entries left), drained", 2_200, spec)
    finally:
        scenario.engine.dispose()
        uninstall_capture(scenario.engine, spec)
        with scenario.engine.begin() as conn:
            conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))
