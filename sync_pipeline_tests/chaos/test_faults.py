"""Fault injection against the real servers: every scenario ends with `verify` at zero drift.

Each scenario records (name, rows changed, drift after) so `make chaos` — and
the end of `make test` — print one table of the whole sequence.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli.runner import run_drain
from sync_pipeline.core.naming import EXTRACT_APPLICATION
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io import deadletters
from sync_pipeline.io.buffer import BUFFER
from sync_pipeline.io.search import search_client
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline_devtools import services
from sync_pipeline_tests.support.faults import cli_sync, doc_count, record, seed
from sync_pipeline_tests.support.paths import ROOT


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.2)


def test_elasticsearch_killed_mid_load_and_restarted(scenario, tmp_path, es):
    seed(scenario, 30_000)
    config = scenario.spec_file(tmp_path, batch_size="1000")
    proc = cli_sync(config)
    wait_for(lambda: doc_count(es, scenario.index) > 0, 180, "the load to start")
    pid = services.elasticsearch_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    first = proc.wait(timeout=600)
    services.up()  # the same restart a user would do
    rerun = cli_sync(config)
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, output[-3000:]
    record(f"ES killed mid-load (first run exit {first}), restarted, re-run", 30_000, scenario.spec())


def test_sync_process_sigkilled_mid_partition_then_rerun(scenario, tmp_path, es):
    seed(scenario, 30_000)
    config = scenario.spec_file(tmp_path, batch_size="1000")
    proc = cli_sync(config)
    wait_for(lambda: doc_count(es, scenario.index) > 0, 180, "the load to start")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert 0 < doc_count(es, scenario.index) < 30_000  # killed part-way
    rerun = cli_sync(config)
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, output[-3000:]
    record("sync SIGKILLed mid-partition, re-run", 30_000, scenario.spec())


def test_postgres_backend_terminated_mid_extract(scenario, tmp_path, pg):
    # ~60 MB of rows: more than socket and driver buffers hold, so the COPY is still sending
    # (its backend active) while the load works through the first batches
    seed(scenario, 30_000, pad=2000)
    # small bodies: the streamed extract's COPY stays open while the load works through them
    config = scenario.spec_file(tmp_path, batch_size="200")
    proc = cli_sync(config)
    killed: list[int] = []

    def terminate_extract() -> bool:
        with pg.connect() as conn:
            pids = (
                conn.execute(
                    sa.text(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE application_name = :app AND state = 'active' AND query LIKE :q"
                    ),
                    {"app": EXTRACT_APPLICATION, "q": f'%FROM "{scenario.table}"%'},
                )
                .scalars()
                .all()
            )
            for pid in pids:
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                killed.append(pid)
        return bool(killed) or proc.poll() is not None

    wait_for(terminate_extract, 180, "an extract query to terminate")
    output = proc.communicate(timeout=600)[0]
    assert killed, "the extract finished before it could be interrupted"
    assert proc.returncode == 1 and "FAILED" in output  # a failed run, reported as such
    rerun = cli_sync(config)
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, output[-3000:]
    record("PG backend terminated mid-extract, re-run", 30_000, scenario.spec())


@pytest.fixture()
def triggers(scenario):
    spec = scenario.spec()
    install_capture(scenario.engine, spec)
    yield spec
    uninstall_capture(scenario.engine, spec)
    with scenario.engine.begin() as conn:
        conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))


def churn(scenario, stop: threading.Event, first_new_id: int, max_rows: int) -> int:
    """Inserts, updates and deletes until stopped; returns how many rows it changed."""
    changed = 0
    next_id = first_new_id
    with scenario.engine.connect() as conn:
        while not stop.is_set() and changed < max_rows:
            conn.execute(
                sa.text(f"INSERT INTO {scenario.table} (id, title, updated_at) VALUES (:id, 'new', now())"),
                {"id": next_id},
            )
            conn.execute(
                sa.text(
                    f"UPDATE {scenario.table} SET title = 'upd ' || now(), updated_at = now() WHERE id = :id"
                ),
                {"id": (changed * 37) % 20_000 + 1},
            )
            conn.execute(
                sa.text(f"DELETE FROM {scenario.table} WHERE id = :id"), {"id": (changed * 53) % 20_000 + 2}
            )
            conn.commit()
            next_id += 1
            changed += 3
            time.sleep(0.01)
    return changed


def test_writes_updates_and_deletes_concurrent_with_a_full_sync(scenario, tmp_path, triggers):
    seed(scenario, 20_000)
    with scenario.engine.begin() as conn:
        conn.execute(BUFFER.delete().where(BUFFER.c.spec == triggers.name))
    config = scenario.spec_file(tmp_path, batch_size="1000")
    stop = threading.Event()
    result: list[int] = []
    writer = threading.Thread(target=lambda: result.append(churn(scenario, stop, 1_000_000, 3_000)))
    proc = cli_sync(config)
    writer.start()
    output = proc.communicate(timeout=600)[0]
    stop.set()
    writer.join()
    assert proc.returncode == 0, output[-3000:]
    assert run_drain(triggers).success
    record("writes/updates/deletes during a full sync, then drain", 20_000 + result[0], triggers)


def test_backfill_concurrent_with_incremental_drains(scenario, tmp_path, triggers, es):
    seed(scenario, 20_000)
    config = scenario.spec_file(tmp_path, batch_size="1000")
    first = cli_sync(config)
    assert first.wait(timeout=600) == 0
    stop = threading.Event()
    result: list[int] = []
    writer = threading.Thread(target=lambda: result.append(churn(scenario, stop, 2_000_000, 2_000)))
    writer.start()
    backfill = cli_sync(config)  # re-reads every window while newer changes drain beside it
    while backfill.poll() is None:
        assert run_drain(triggers).success
    stop.set()
    writer.join()
    assert backfill.returncode == 0, backfill.stdout.read()[-3000:]
    assert run_drain(triggers).success
    record("backfill beside incremental drains", result[0], triggers)


def test_malformed_rows_among_good_ones(scenario, tmp_path):
    seed(scenario, 2_000)
    scenario.execute(f"UPDATE {scenario.table} SET title = 'x' || id WHERE id % 400 = 0")  # 5 bad rows
    scenario.execute(f"UPDATE {scenario.table} SET title = id::text WHERE id % 400 <> 0")
    text = scenario.spec_text().replace("title: {cleanse: [trim, empty_to_null]}", "title: {type: long}")
    config = tmp_path / "sync.yaml"
    config.write_text(text)
    proc = cli_sync(config)
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 1, output  # dead letters: exit 1, never a silent green
    spec = parse_specs(text)[0]
    with scenario.engine.begin() as conn:
        parked = deadletters.count(conn, spec.name)
        deadletters.purge(conn, spec.name)
    assert parked == 5
    record("malformed rows among good ones", 2_000, spec, dead_letters=parked)


@pytest.fixture()
def throttled_es(tmp_path_factory):
    """A second local Elasticsearch whose write pool has one thread and a queue of one."""
    home = tmp_path_factory.mktemp("throttled")
    env = {
        **os.environ,
        "SYNC_SERVICES_DIR": str(home),
        "SYNC_LOCAL_ES_PORT": "59510",
        "SYNC_ES_EXTRA_SETTINGS": "thread_pool.write.size: 1\nthread_pool.write.queue_size: 1",
    }
    code = "from sync_pipeline_devtools import services; print(services.up(postgres=False).es_url)"
    up = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert up.returncode == 0, up.stderr[-3000:]
    yield up.stdout.strip().splitlines()[-1]
    subprocess.run(
        [sys.executable, "-c", "from sync_pipeline_devtools import services; services.down()"],
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def test_a_429_storm_is_retried_until_everything_lands(scenario, tmp_path, throttled_es, live):
    seed(scenario, 10_000)
    config = scenario.spec_file(tmp_path, batch_size="500")
    # a storm on a loaded 2-core machine can outlast the default retry budget: give it room, the
    # point is that every document lands once the retries are allowed to do their work
    config.write_text(
        config.read_text().replace(
            "    batch_size: 500",
            "    batch_size: 500\n    retry: {attempts: 30, max_backoff_seconds: 10, max_total_seconds: 900}",
        )
    )
    noisy = search_client(throttled_es)
    stop = threading.Event()

    def flood() -> None:
        body = [line for i in range(200) for line in ({"index": {"_index": "noise"}}, {"n": i})]
        deadline = time.monotonic() + 300
        while not stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # rejections are the point
                noisy.bulk(operations=body)

    flooders = [threading.Thread(target=flood) for _ in range(4)]
    for t in flooders:
        t.start()
    try:
        proc = cli_sync(config, env={"SYNC_ES_URL": throttled_es})
        output = proc.communicate(timeout=900)[0]
    finally:
        stop.set()
        for t in flooders:
            t.join()
    assert proc.returncode == 0, output[-3000:]
    stats = noisy.nodes.stats(metric="thread_pool")["nodes"]
    rejected = sum(n["thread_pool"]["write"]["rejected"] for n in stats.values())
    assert rejected > 0, "the storm never produced a 429"
    os.environ["SYNC_ES_URL"] = throttled_es  # verify against the throttled node itself
    try:
        record(f"429 storm ({rejected} write rejections)", 10_000, scenario.spec())
    finally:
        os.environ["SYNC_ES_URL"] = live.es_url
