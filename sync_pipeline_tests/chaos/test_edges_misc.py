"""Edges that drifted silently (issue 30, items 6, 7, 8, 12), each on the real servers: a hot
standby as the source, a naive updated_at west of UTC, a mapping change killed before its
re-send, and a large load into the live index."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli import main
from sync_pipeline.apps.cli.runner import run_verify
from sync_pipeline.core.load.bulk import BatchResult
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.core.sql.statements import SourceError
from sync_pipeline.core.windows import Window
from sync_pipeline.defs.assets import load_window
from sync_pipeline.io.postgres import engine_for
from sync_pipeline.io.staging import StagingArea
from sync_pipeline.ops import prepare, readying
from sync_pipeline.ops.sync_window import WindowResult, WindowRun
from sync_pipeline.ops.verify import count_window, reconcile_window, verify_spec
from sync_pipeline_devtools.services import runtime
from sync_pipeline_devtools.services.postgres import PG_DATABASE, PG_PASSWORD, PG_USER, find_pg_bin_dir
from sync_pipeline_tests.conftest import CHAOS_RESULTS, at, free_port, indexed

WHEN = "2026-02-10 08:00:00+00"
EVERYTHING = Window(None, None, include_null_updated_at=True)


def _sync(scenario, spec, live, tmp_path: Path, window: Window = EVERYTHING, on_batch=None) -> WindowResult:
    run = WindowRun(
        spec, window, "w", scenario.engine, StagingArea(tmp_path), on_batch=on_batch, log=lambda _: None
    )
    return load_window(run, scenario.es)


def _verified(spec, name: str, rows: int) -> None:
    (report,) = run_verify([spec], [spec])
    assert report.ok, report.lines()
    CHAOS_RESULTS.append((name, rows, report.drift, 0))


# --- 6: a hot standby is refused as the source ----------------------------------------------------


@contextlib.contextmanager
def standby_of(live) -> Iterator[str]:
    """A throwaway streaming standby of the shared PostgreSQL, made with its own binaries as the
    unprivileged user the services run as; yields its URL, and stops and deletes it after."""
    bin_dir = find_pg_bin_dir()
    # under /tmp itself: the service user cannot reach pytest's root-only tmp_path
    root = Path(tempfile.mkdtemp(prefix="sync-standby-"))
    runtime._owned_dir(root, 0o700)
    data, port = root / "data", free_port()
    primary = sa.engine.make_url(live.pg_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"PGPASSWORD": PG_PASSWORD}
    backup = [str(bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", PG_USER]
    backup += ["-D", str(data), "-R", "-c", "fast", "-X", "stream", "--no-sync"]
    # a standby needs at least the primary's limits, which the shared one sets on its command line
    options = f"-p {port} -k {root} -c max_prepared_transactions=16 -c max_wal_senders=32"
    options += " -c max_replication_slots=32 -c wal_level=logical"
    ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60"]
    try:
        subprocess.run(runtime._as_service_user(backup), env=env, check=True, capture_output=True, cwd=root)
        subprocess.run(
            runtime._as_service_user([*ctl, "-o", options, "start"]),
            env=env,
            check=True,
            capture_output=True,
            cwd=root,
        )
        yield f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{port}/{PG_DATABASE}"
    finally:
        subprocess.run(
            runtime._as_service_user([*ctl, "-m", "immediate", "stop"]),
            env=env,
            capture_output=True,
            cwd=root,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_a_hot_standby_is_refused_as_the_source_naming_the_server(
    scenario, insert_rows, live, tmp_path, monkeypatch, capsys
):
    insert_rows(range(1, 21), WHEN)
    spec = scenario.spec()
    config = scenario.spec_file(tmp_path)
    with standby_of(live) as standby:
        with engine_for(standby).connect() as conn:
            assert conn.execute(sa.text("SELECT pg_is_in_recovery()")).scalar_one()
        port = sa.engine.make_url(standby).port
        # a run started by Dagster (schedule, sensor, UI) meets it where it binds the source
        with pytest.raises(SourceError) as caught:
            load_window(
                WindowRun(
                    spec, EVERYTHING, "w", engine_for(standby), StagingArea(tmp_path), log=lambda _: None
                ),
                scenario.es,
            )
        message = str(caught.value)
        assert f"127.0.0.1:{port}" in message and "standby" in message, message
        # the CLI's preflight, before any run starts
        monkeypatch.setenv("SYNC_PG_URL", standby)
        assert main(["--config", str(config), "sync", "--spec", spec.name, "--full"]) == 2
        assert f"127.0.0.1:{port}" in capsys.readouterr().err
    assert not scenario.es.indices.exists(index=scenario.index)  # nothing was written
    monkeypatch.setenv("SYNC_PG_URL", live.pg_url)
    _sync(scenario, spec, live, tmp_path)
    _verified(spec, "hot standby refused as the source", 20)


# --- 7: a naive updated_at west of UTC --------------------------------------------------------


def test_a_naive_updated_at_west_of_utc_is_read_by_the_window_of_its_instant(scenario, live, tmp_path):
    """A row written at 14:10 UTC is stamped 10:10 (New York, EDT): the window 10:00-11:00 UTC
    was synced before it existed; the window of its instant, 14:00-15:00, must read it, and the
    per-window check count the same rows on both sides."""
    scenario.execute(f"ALTER TABLE {scenario.table} ALTER COLUMN updated_at TYPE timestamp")
    spec = scenario.spec(extra="    naive_timezone: America/New_York")
    insert = (
        f"INSERT INTO {scenario.table} (id, title, updated_at) "
        "SELECT i, 'item ' || i, CAST(:stamp AS timestamp) "
        "FROM generate_series(CAST(:first AS int), CAST(:last AS int)) AS i"
    )
    scenario.execute(insert, {"stamp": "2026-03-10 09:30", "first": 1, "last": 20})  # 13:30 UTC
    hour = timedelta(hours=1)
    ten, one_pm, two_pm = at("2026-03-10 10:00"), at("2026-03-10 13:00"), at("2026-03-10 14:00")
    assert _sync(scenario, spec, live, tmp_path, Window(one_pm, one_pm + hour)).extracted.rows == 20
    # 11:00 UTC: the window 10:00-11:00 closes and is synced; nothing is stamped in it yet
    assert _sync(scenario, spec, live, tmp_path, Window(ten, ten + hour)).extracted.rows == 0
    scenario.execute(insert, {"stamp": "2026-03-10 10:10", "first": 100, "last": 100})  # at 14:10 UTC
    # 15:00 UTC: the window of its instant closes
    late = _sync(scenario, spec, live, tmp_path, Window(two_pm, two_pm + hour))
    assert late.extracted.rows == 1
    assert indexed(scenario.es, scenario.index)["100"]["updated_at"].startswith("2026-03-10T14:10:00")
    with engine_for(live.pg_url).connect() as conn:
        assert count_window(conn, scenario.es, spec, Window(two_pm, two_pm + hour)) == (1, 1)
        assert count_window(conn, scenario.es, spec, Window(ten, ten + hour)) == (0, 0)
        source, target = reconcile_window(conn, scenario.es, spec, Window(one_pm, one_pm + hour))
        assert source.count == 20 and source == target
    _verified(spec, "naive updated_at west of UTC, written after its wall-clock window", 21)


# --- 8: a mapping change killed before its re-send ------------------------------------------------


def _with_raw(scenario) -> str:
    plain = "title: {cleanse: [trim, empty_to_null]}"
    raw = "title: {cleanse: [trim, empty_to_null], mapping: {fields: {raw: {type: keyword}}}}"
    return scenario.spec_text().replace(plain, raw)


def _raw_count(es, index: str) -> int:
    es.indices.refresh(index=index)
    return int(es.count(index=index, query={"exists": {"field": "title.raw"}})["count"])


# a later run that reads none of those rows again (a schedule's newest window, say): only a re-send
# brings the new multi-field to the documents already indexed
QUIET = Window(at("2026-06-01"), at("2026-07-01"))


class Killed(RuntimeError):
    """The run dies here."""


def _dies(*_args, **_kwargs):
    raise Killed("killed")


def _killed_at(module, step: str, scenario, insert_rows, live, tmp_path: Path):
    """30 documents indexed, then the run that adds the multi-field title.raw killed where
    `module` (ops/prepare, ops/readying) calls `step`; returns the spec with title.raw."""
    insert_rows(range(1, 31), WHEN)
    _sync(scenario, scenario.spec(), live, tmp_path)
    spec = parse_specs(_with_raw(scenario), origin="test")[0]
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(module, step, _dies)
        with pytest.raises(Killed):
            _sync(scenario, spec, live, tmp_path, QUIET)
    return spec


def test_a_run_killed_between_a_new_multi_field_and_its_record_still_re_sends(
    scenario, insert_rows, live, tmp_path
):
    spec = _killed_at(prepare, "record_index_meta", scenario, insert_rows, live, tmp_path)  # the record
    _sync(scenario, spec, live, tmp_path, QUIET)  # the next run
    assert _raw_count(scenario.es, scenario.index) == 30
    _verified(spec, "mapping change killed before its re-send was recorded", 30)


def test_verify_reports_a_multi_field_documents_lack_and_the_next_run_fills_it(
    scenario, insert_rows, live, tmp_path
):
    spec = _killed_at(readying, "fill_index", scenario, insert_rows, live, tmp_path)  # during the re-send
    assert _raw_count(scenario.es, scenario.index) == 0
    with engine_for(live.pg_url).connect() as conn:
        report = verify_spec(conn, scenario.es, spec)
    gaps = [line for line in report.mapping if "title.raw: missing from 30 documents" in line]
    assert gaps and not report.ok, report.lines()
    _sync(scenario, spec, live, tmp_path, QUIET)  # the next run re-sends what was recorded
    assert _raw_count(scenario.es, scenario.index) == 30
    _verified(spec, "mapping change killed during its re-send", 30)


def test_verify_fix_re_sends_the_documents_a_multi_field_is_missing_from(
    scenario, insert_rows, live, tmp_path
):
    es = scenario.es
    insert_rows(range(1, 31), WHEN)
    _sync(scenario, scenario.spec(), live, tmp_path)
    spec = parse_specs(_with_raw(scenario), origin="test")[0]
    # the mapping changed with no record of a re-send (a run of an earlier version, killed)
    (found,) = es.indices.get_mapping(index=scenario.index).body.values()
    title = {**found["mappings"]["properties"]["title"], "fields": {"raw": {"type": "keyword"}}}
    es.indices.put_mapping(index=scenario.index, properties={"title": title})
    with engine_for(live.pg_url).connect() as conn:
        report = verify_spec(conn, es, spec, fix=True)
    gaps = [line for line in report.mapping if "title.raw: missing from 30 documents" in line]
    assert gaps and report.repaired is not None and report.repaired.indexed == 30, report.lines()
    assert _raw_count(es, scenario.index) == 30
    _verified(spec, "multi-field missing from documents, verify --fix", 30)


# --- 12: a large load never takes the live index's replicas ----------------------------------------


def test_a_full_sync_into_the_live_index_keeps_its_replicas_throughout(scenario, insert_rows, live, tmp_path):
    es = scenario.es
    insert_rows([1], WHEN)
    spec = scenario.spec()  # 50 rows a body
    _sync(scenario, spec, live, tmp_path)  # creates the index behind its alias
    es.indices.put_settings(index=scenario.index, settings={"index": {"number_of_replicas": 1}})
    insert_rows(range(2, 201), WHEN)
    seen: list[str] = []

    def observe(_: BatchResult) -> None:
        # between bodies, while drains may be writing to the same index
        found = es.indices.get_settings(index=scenario.index, name="index.number_of_replicas").body
        seen.extend(v["settings"]["index"]["number_of_replicas"] for v in found.values())

    result = _sync(scenario, spec, live, tmp_path, on_batch=observe)
    assert result.totals.batches >= 4 and len(seen) == result.totals.batches
    assert set(seen) == {"1"}, seen
    _verified(spec, "full sync into the live index (replicas kept)", 200)
