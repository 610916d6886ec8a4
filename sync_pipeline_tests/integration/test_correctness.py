"""Nothing lost: the change buffer, deletes, late commits, stale writes, dead letters, verify --fix.

Every test runs against the real PostgreSQL and Elasticsearch.
"""

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli.runner import run_drain, run_sync, run_verify
from sync_pipeline.core.load.bulk import BulkBody, entry_doc
from sync_pipeline.core.load.counts import Counts
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io import deadletters
from sync_pipeline.io.buffer import BUFFER, buffer_state
from sync_pipeline.io.bulk_load import load_bulk
from sync_pipeline.io.search import SearchConnectionError, search_client
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline.ops.replay import replay
from sync_pipeline_tests.conftest import at, indexed


@pytest.fixture()
def buffered(scenario):
    """A synced scenario table with change-buffer triggers installed."""
    spec = scenario.spec(extra="      soft_delete: deleted")
    install_capture(scenario.engine, spec)
    yield spec
    uninstall_capture(scenario.engine, spec)
    with scenario.engine.begin() as conn:
        conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))


def test_buffer_carries_inserts_updates_soft_and_hard_deletes(scenario, insert_rows, buffered, es):
    insert_rows(range(1, 21), "2026-02-01 00:00:00+00")
    assert run_sync(buffered).success
    scenario.execute(f"DELETE FROM {scenario.table} WHERE true")  # start the buffer from a clean slate
    with scenario.engine.begin() as conn:
        conn.execute(BUFFER.delete().where(BUFFER.c.spec == buffered.name))
    insert_rows(range(1, 21), "2026-02-01 00:00:00+00")  # rows back; the buffer now holds 20 inserts
    summary = run_drain(buffered)
    assert summary.success and summary.indexed == 20

    insert_rows([100], "2026-02-02 00:00:00+00", title="new row")
    scenario.execute(f"UPDATE {scenario.table} SET title = 'renamed', updated_at = now() WHERE id = 2")
    scenario.execute(f"UPDATE {scenario.table} SET title = 'twice', updated_at = now() WHERE id = 2")
    scenario.execute(f"UPDATE {scenario.table} SET deleted = true, updated_at = now() WHERE id = 3")
    scenario.execute(f"DELETE FROM {scenario.table} WHERE id = 4")
    scenario.execute(f"UPDATE {scenario.table} SET id = 400 WHERE id = 5")  # key change: old id must go
    with scenario.engine.connect() as conn:
        assert buffer_state(conn, buffered).pending == 7

    summary = run_drain(buffered)

    assert summary.success, summary.error
    docs = indexed(es, scenario.index)
    assert docs["100"]["title"] == "new row"
    assert docs["2"]["title"] == "twice"
    assert "3" not in docs and "4" not in docs and "5" not in docs and "400" in docs
    with scenario.engine.connect() as conn:
        assert buffer_state(conn, buffered).pending == 0
    (report,) = run_verify([buffered], [buffered])
    assert report.ok, report.lines()


def test_changes_stay_buffered_when_elasticsearch_is_unreachable(scenario, insert_rows, buffered):
    insert_rows(range(1, 6), "2026-02-01 00:00:00+00")
    with pytest.raises(SearchConnectionError, match=r"(?i)connection"):
        drain(scenario.engine, search_client("http://127.0.0.1:1", request_timeout=2), buffered)
    with scenario.engine.connect() as conn:
        assert buffer_state(conn, buffered).pending == 5


def test_a_drain_reading_while_elasticsearch_refuses_keeps_every_entry_of_the_claim(
    scenario, insert_rows, buffered, es
):
    """A large claim is read in two halves, the second while the first is in Elasticsearch:
    when the writes are refused, neither half's entries leave the buffer; once they are
    accepted, one claim is two counted batches and every row arrives."""
    from sync_pipeline.ops.drain import DrainError

    spec = buffered.model_copy(update={"batch_size": 2400})
    spec = spec.model_copy(
        update={"retry": spec.retry.model_copy(update={"attempts": 2, "max_total_seconds": 2.0})}
    )
    assert run_sync(spec).success  # the index exists, empty
    insert_rows(range(1, 2401), "2026-02-01 00:00:00+00")
    es.indices.put_settings(index=scenario.index, settings={"index.blocks.write": True})
    try:
        with pytest.raises(DrainError, match="not acknowledged"):
            drain(scenario.engine, es, spec)
        with scenario.engine.connect() as conn:
            assert buffer_state(conn, spec).pending == 2400
    finally:
        es.indices.put_settings(index=scenario.index, settings={"index.blocks.write": None})
    totals = drain(scenario.engine, es, spec)
    assert (totals.claimed, totals.batches, totals.indexed, totals.failed) == (2400, 2, 2400, 0)
    assert len(indexed(es, scenario.index)) == 2400
    with scenario.engine.connect() as conn:
        assert buffer_state(conn, spec).pending == 0


def test_two_concurrent_drains_never_process_an_entry_twice(scenario, insert_rows, buffered, es):
    insert_rows(range(1, 401), "2026-02-01 00:00:00+00")
    claimed: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            claimed.append(
                drain(
                    scenario.engine,
                    search_client(es.transport.node_pool.get().base_url),
                    buffered,
                    batch_size=25,
                ).claimed
            )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(claimed) == 400  # SKIP LOCKED: each entry claimed by exactly one drain
    assert len(indexed(es, scenario.index)) == 400


def test_late_commit_is_caught_by_the_window_lookback(scenario, insert_rows, pg, es):
    insert_rows([1], "2026-02-10 12:00:00+00")
    spec = scenario.spec(grain="day", start="2026-02-01")
    spec = spec.model_copy(
        update={"partitions": spec.partitions.model_copy(update={"lookback": timedelta(0)})}
    )
    late = pg.connect()
    late_tx = late.begin()
    # stamped inside Feb 10 but not yet committed when Feb 10 is synced
    late.execute(
        sa.text(
            f"INSERT INTO {scenario.table} (id, title, updated_at) "
            "VALUES (2, 'late', '2026-02-10 23:59:00+00')"
        )
    )
    assert run_sync(spec, at("2026-02-10"), at("2026-02-11")).success
    late_tx.commit()
    late.close()

    assert run_sync(spec, at("2026-02-11"), at("2026-02-12")).success
    assert "2" not in indexed(es, scenario.index)  # without lookback the late row is lost

    with_lookback = scenario.spec(grain="day", start="2026-02-01", extra="").model_copy(
        update={
            "partitions": spec.partitions.model_copy(update={"lookback": at("2026-01-02") - at("2026-01-01")})
        }
    )
    assert run_sync(with_lookback, at("2026-02-11"), at("2026-02-12")).success
    assert indexed(es, scenario.index)["2"]["title"] == "late"


def test_an_older_version_never_overwrites_a_newer_document(scenario, insert_rows, es):
    insert_rows([1], "2026-02-01 00:00:00+00")
    spec = scenario.spec()
    assert run_sync(spec).success
    scenario.execute(
        f"UPDATE {scenario.table} SET title = 'newer', updated_at = '2026-03-01+00' WHERE id = 1"
    )
    assert run_sync(spec).success
    old_version = int(at("2026-02-01").timestamp() * 1_000_000)

    # a backfill that read the row before the update, arriving late
    stale = {"_id": "1", "_op": "index", "_version": old_version, "_source": {"id": 1, "title": "stale"}}
    totals = load_bulk(es, scenario.index, [BulkBody.join([entry_doc(stale)])])

    assert (totals.stale_skipped, totals.failed, totals.indexed) == (1, 0, 0)
    assert indexed(es, scenario.index)["1"]["title"] == "newer"
    rerun = run_sync(spec)  # same versions again: idempotent, not stale
    assert rerun.success and rerun.indexed == 1 and rerun.stale_skipped == 0


def test_refused_documents_become_dead_letters_and_replay_after_a_fix(scenario, insert_rows, es):
    insert_rows(range(1, 11), "2026-02-01 00:00:00+00", title="42")
    insert_rows([11, 12], "2026-02-01 00:00:00+00", title="not a number")
    text = scenario.spec_text().replace("title: {cleanse: [trim, empty_to_null]}", "title: {type: integer}")
    from sync_pipeline.core.spec.model import parse_specs

    spec = parse_specs(text)[0]
    summary = run_sync(spec)

    assert summary.success  # the rest of the batch landed
    assert (summary.indexed, summary.dead_lettered, summary.failed) == (10, 2, 0)
    with scenario.engine.begin() as conn:
        letters = deadletters.list_dead_letters(conn, spec.name)
    assert sorted(r["doc_id"] for r in letters) == ["11", "12"]
    # Elasticsearch's name for it; OpenSearch keeps the older one
    assert letters[0]["error"]["type"] in ("document_parsing_exception", "mapper_parsing_exception")
    assert letters[0]["document"]["title"] == "not a number"
    assert letters[0]["run_id"] == summary.run_id

    scenario.execute(f"UPDATE {scenario.table} SET title = '7' WHERE id IN (11, 12)")
    replayed, refused = replay(scenario.engine, es, spec)

    assert (replayed, refused) == (2, 0)
    with scenario.engine.begin() as conn:
        assert deadletters.count(conn, spec.name) == 0
    (report,) = run_verify([spec], [spec])
    assert report.ok, report.lines()


def test_a_transient_failure_during_replay_is_exit_1_and_keeps_the_dead_letters(
    scenario, insert_rows, es, tmp_path, monkeypatch, capsys
):
    from sync_pipeline.apps.cli import main
    from sync_pipeline.core.load.bulk import BatchResult
    from sync_pipeline.ops import replay as replay_module

    insert_rows([1], "2026-02-01 00:00:00+00", title="not a number")
    config = tmp_path / "sync.yaml"
    config.write_text(
        scenario.spec_text().replace("title: {cleanse: [trim, empty_to_null]}", "title: {type: integer}")
    )
    assert main(["--config", str(config), "sync", "--full", "--spec", scenario.table]) == 1
    capsys.readouterr()
    # Elasticsearch still refusing with 429s after every retry: what send_body reports as `failed`
    monkeypatch.setattr(
        replay_module, "resync_keys", lambda *a, **k: BatchResult(batch=1, answered=Counts(failed=1))
    )

    code = main(["--config", str(config), "dead-letters", "replay", "--spec", scenario.table])

    err = capsys.readouterr().err
    assert code == 1
    assert "unavailable during replay; nothing removed" in err
    assert "Traceback" not in err
    with scenario.engine.begin() as conn:
        assert deadletters.count(conn, scenario.table) == 1


def test_verify_fix_repairs_every_kind_of_drift(scenario, insert_rows, es):
    insert_rows(range(1, 41), "2026-02-01 00:00:00+00")
    spec = scenario.spec()
    assert run_sync(spec).success
    es.delete(index=scenario.index, id="7")
    es.index(index=scenario.index, id="999", document={"id": 999, "title": "ghost"})
    es.update(index=scenario.index, id="12", doc={"title": "tampered"})
    scenario.execute(f"DELETE FROM {scenario.table} WHERE id = 30")  # hard delete, no triggers

    (fixing,) = run_verify([spec], [spec], fix=True)
    assert (fixing.missing, fixing.extra, fixing.mismatched) == (1, 2, 1)
    assert fixing.repaired.indexed == 2 and fixing.repaired.deleted == 2

    (after,) = run_verify([spec], [spec])
    assert after.ok and after.pg_count == 39
    rerun = run_sync(spec)  # repaired documents do not break later syncs
    assert rerun.success and rerun.failed == 0
    (still,) = run_verify([spec], [spec])
    assert still.ok


def _check_results(run_id: str) -> dict[str, bool]:
    from dagster import DagsterEventType, DagsterInstance

    records = DagsterInstance.get().all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    return {
        r.dagster_event.event_specific_data.check_name: r.dagster_event.event_specific_data.passed
        for r in records
    }


def test_per_window_reconciliation_check_passes_then_catches_a_stray_document(scenario, insert_rows, es):
    insert_rows(range(1, 31), "2026-02-10 08:00:00+00")
    insert_rows(range(31, 41), "2026-02-11 08:00:00+00")
    spec = scenario.spec(grain="day", start="2026-02-01")
    clean = run_sync(spec, at("2026-02-10"), at("2026-02-11"))
    assert _check_results(clean.run_id)["window_matches_source"] is True

    # a document in the window that PostgreSQL does not have: count and hash now differ
    es.index(
        index=scenario.index, id="777", document={"id": 777, "updated_at": "2026-02-10T09:00:00.000000Z"}
    )
    rerun = run_sync(spec, at("2026-02-10"), at("2026-02-11"))
    assert rerun.success
    assert _check_results(rerun.run_id)["window_matches_source"] is False
    # the next day's window is untouched by the stray document
    other = run_sync(spec, at("2026-02-11"), at("2026-02-12"))
    assert _check_results(other.run_id)["window_matches_source"] is True


def test_a_following_drain_applies_changes_that_arrive_while_it_runs_then_ends_when_idle(
    scenario, insert_rows, buffered, es
):
    from sync_pipeline.ops.drain import follow

    insert_rows([1], "2026-02-01 00:00:00+00")
    result: list = []
    runner = threading.Thread(
        target=lambda: result.append(
            # the default: no NOTIFY, a look at the buffer every buffer_sensor.poll_seconds (0.1 s)
            follow(scenario.engine, es, buffered, idle_seconds=3, max_seconds=60)
        )
    )
    started = time.monotonic()
    runner.start()
    time.sleep(1)  # the first drain is done; the run now follows the buffer
    insert_rows([2, 3], "2026-02-02 00:00:00+00", title="while following")
    deadline = time.monotonic() + 30
    while set(indexed(es, scenario.index)) != {"1", "2", "3"} and time.monotonic() < deadline:
        es.indices.refresh(index=scenario.index)
        time.sleep(0.2)
    assert runner.is_alive()  # applied by the same run, not by a new drain
    runner.join(timeout=30)

    (totals,) = result
    assert totals.claimed == 3 and totals.indexed == 3 and totals.failed == 0
    assert time.monotonic() - started >= 3  # it stayed for the idle period after the last change
    with scenario.engine.connect() as conn:
        assert buffer_state(conn, buffered).pending == 0


def test_a_following_drain_wakes_on_the_triggers_notify_when_turned_on_and_stops_at_its_time_limit(
    scenario, insert_rows, es
):
    from sync_pipeline.ops.drain import follow

    # polling once a minute: only the NOTIFY (buffer_sensor.notify, opt-in) can wake it in time
    text = scenario.spec_text(extra="      soft_delete: deleted").replace(
        "    batch_size:", "    buffer_sensor: {notify: true, poll_seconds: 10}\n    batch_size:"
    )
    spec = parse_specs(text)[0]
    install_capture(scenario.engine, spec)
    result: list = []
    runner = threading.Thread(
        target=lambda: result.append(follow(scenario.engine, es, spec, idle_seconds=None, max_seconds=8))
    )
    started = time.monotonic()
    runner.start()
    time.sleep(1.5)
    insert_rows([7], "2026-02-02 00:00:00+00", title="woken")
    committed = time.monotonic()
    while "7" not in indexed(es, scenario.index) and time.monotonic() - committed < 5:
        time.sleep(0.05)
    assert "7" in indexed(es, scenario.index), "the NOTIFY did not wake the following drain"
    runner.join(timeout=30)
    assert 8 <= time.monotonic() - started < 20  # it followed to its time limit, idle or not
    (totals,) = result
    assert totals.claimed == 1 and totals.failed == 0
    uninstall_capture(scenario.engine, spec)
    with scenario.engine.begin() as conn:
        conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))
