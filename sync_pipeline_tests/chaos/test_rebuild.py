"""Zero-downtime rebuild against the real servers: alias swap, writes during the rebuild, rollback."""

import threading
import time

import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli.runner import run_drain, run_sync, run_verify
from sync_pipeline.io.buffer import BUFFER
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.rebuild import rebuild
from sync_pipeline_tests.conftest import CHAOS_RESULTS

# the rebuilds leave backing indices behind (kept for rollback): dropped after each test
pytestmark = pytest.mark.usefixtures("no_index_left_behind")


def churn(scenario, stop: threading.Event, first_id: int, rows: int) -> int:
    """An insert, an update and a delete, one commit each round, until stopped; rows changed."""
    statements = [
        sa.text(f"INSERT INTO {scenario.table} (id, title, updated_at) VALUES (:new, 'new', now())"),
        sa.text(f"UPDATE {scenario.table} SET title = 'upd ' || now(), updated_at = now() WHERE id = :upd"),
        sa.text(f"DELETE FROM {scenario.table} WHERE id = :gone"),
    ]
    changed = 0
    with scenario.engine.connect() as conn:
        while not stop.is_set():
            n = changed // 3 + 1
            keys = {"new": first_id + n, "upd": (n * 37) % rows + 1, "gone": (n * 53) % rows + 2}
            for statement in statements:
                conn.execute(statement, keys)
            conn.commit()
            changed += 3
            time.sleep(0.002)
    return changed


def test_rebuild_while_writes_go_on_swaps_at_zero_drift(scenario, es):
    rows = 20_000
    scenario.execute(
        f"""INSERT INTO {scenario.table} (id, title, price, updated_at)
            SELECT g, 'item ' || g, (g % 1000) / 10.0, timestamptz '2026-02-01 00:00:00+00'
            FROM generate_series(1, {rows}) g"""
    )
    spec = scenario.spec(batch_size="1000")
    assert run_sync(spec).success
    install_capture(scenario.engine, spec)
    stop = threading.Event()
    changed: list[int] = []
    writer = threading.Thread(target=lambda: changed.append(churn(scenario, stop, 100_000, rows)))
    passes: list[int] = []

    def on_pass(number: int, report) -> None:
        passes.append(report.drift)
        stop.set()  # the writes raced the whole fill and the first repair pass

    writer.start()
    try:
        report = rebuild(scenario.engine, es, spec, on_pass=on_pass)
        stop.set()
        writer.join()
        assert run_drain(spec).success  # the ordinary path, for anything after the last pass
    finally:
        stop.set()
        writer.join()
        uninstall_capture(scenario.engine, spec)
        with scenario.engine.begin() as conn:
            conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))

    assert passes[0] > 0, passes  # the fill missed writes made meanwhile; the passes caught them
    assert report.before_swap.drift == 0 and report.new_index == f"{scenario.index}_v2"
    (after,) = run_verify([spec], [spec])
    CHAOS_RESULTS.append(("rebuild while writes go on, alias swapped", changed[0], after.drift, 0))
    assert after.ok, after.lines()
