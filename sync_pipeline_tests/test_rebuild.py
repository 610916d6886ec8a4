"""Zero-downtime rebuild against the real servers: alias swap, writes during the rebuild, rollback."""

import threading

import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli.runner import run_drain, run_sync, run_verify
from sync_pipeline.io.buffer import BUFFER
from sync_pipeline.io.elasticsearch import backing_indices
from sync_pipeline.ops.capture import install_triggers, uninstall_triggers
from sync_pipeline.ops.rebuild import rebuild, rollback, versioned_name

pytestmark = pytest.mark.integration


def test_versioned_names_follow_the_highest_existing_version():
    assert versioned_name("p", []) == "p_v1"
    assert versioned_name("p", ["p_v1", "p_v3", "p_v10", "p_vx", "other_v99"]) == "p_v11"


def test_rebuild_swaps_the_alias_and_loses_no_write_made_meanwhile(scenario, insert_rows, es):
    insert_rows(range(1, 3001), "2026-02-01 00:00:00+00")
    spec = scenario.spec(batch_size="200")
    assert run_sync([spec], spec).success
    assert backing_indices(es, scenario.index) == [f"{scenario.index}_v1"]

    stop = threading.Event()

    def write_meanwhile() -> None:
        with scenario.engine.connect() as conn:
            n = 0
            while not stop.is_set() and n < 300:
                n += 1
                conn.execute(
                    sa.text(
                        f"UPDATE {scenario.table} SET title = 'during rebuild', "
                        "updated_at = now() WHERE id = :id"
                    ),
                    {"id": n},
                )
                conn.execute(sa.text(f"DELETE FROM {scenario.table} WHERE id = :id"), {"id": 3000 - n})
                conn.execute(
                    sa.text(
                        f"INSERT INTO {scenario.table} (id, title, updated_at) VALUES (:id, 'new', now())"
                    ),
                    {"id": 10_000 + n},
                )
                conn.commit()

    with scenario.engine.begin() as conn:
        install_triggers(conn, spec)
    writer = threading.Thread(target=write_meanwhile)
    writer.start()
    try:
        report = rebuild(scenario.engine, es, spec)
        stop.set()
        writer.join()
        # what changed after the rebuild's last repair pass arrives the ordinary way
        assert run_drain([spec], spec).success
    finally:
        stop.set()
        with scenario.engine.begin() as conn:
            uninstall_triggers(conn, spec)
            conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))

    assert report.old_indices == [f"{scenario.index}_v1"] and report.new_index == f"{scenario.index}_v2"
    assert backing_indices(es, scenario.index) == [f"{scenario.index}_v2"]
    assert es.indices.exists(index=f"{scenario.index}_v1")  # kept for rollback
    assert report.before_swap.ok
    (after,) = run_verify([spec], [spec])
    assert after.ok, after.lines()

    back_from, back_to = rollback(es, spec)
    assert (back_from, back_to) == (f"{scenario.index}_v2", f"{scenario.index}_v1")
    assert backing_indices(es, scenario.index) == [f"{scenario.index}_v1"]
    (caught_up,) = run_verify([spec], [spec], fix=True)
    (final,) = run_verify([spec], [spec])
    assert final.ok and caught_up.drift > 0  # v1 had missed the writes made during the rebuild


def test_rebuild_replaces_a_plain_index_named_like_the_alias(scenario, insert_rows, es):
    insert_rows(range(1, 51), "2026-02-01 00:00:00+00")
    spec = scenario.spec()
    es.indices.create(index=scenario.index)  # what a pre-alias version of the target looks like
    es.index(index=scenario.index, id="1", document={"id": 1, "title": "old"}, refresh=True)

    report = rebuild(scenario.engine, es, spec)

    assert report.old_indices == [scenario.index] and report.new_index == f"{scenario.index}_v1"
    assert es.indices.exists_alias(name=scenario.index)
    (after,) = run_verify([spec], [spec])
    assert after.ok and after.pg_count == 50
