"""The user's data stays where it belongs (real servers): a refused document's values live in the
dead-letter table, not in alerts or a failed statement's message; dead letters and staged files
are kept only as long as SYNC_RETENTION_DAYS; the staging directory is private."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from sync_pipeline.apps.cli import main
from sync_pipeline.apps.cli.runner import Servers, run_sync
from sync_pipeline.core.report.failure_alerts import alert_from_check
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io import deadletters
from sync_pipeline.io.postgres import engine_for
from sync_pipeline_tests.conftest import at

VALUE = "secret-value-Zq9"


@pytest.fixture()
def refused(scenario, insert_rows, live, tmp_path, monkeypatch):
    """A full sync whose every document Elasticsearch refuses: `title` mapped as a long."""
    staging = tmp_path / "staging"
    monkeypatch.setenv("SYNC_STAGING_DIR", str(staging))
    insert_rows(range(1, 4), "2026-02-01 00:00:00+00", title=VALUE)
    text = scenario.spec_text().replace("title: {cleanse: [trim, empty_to_null]}", "title: {type: long}")
    config = tmp_path / "sync.yaml"
    config.write_text(text)
    spec = parse_specs(text)[0]
    summary = run_sync(spec, servers=Servers(live.pg_url, live.es_url))
    assert summary.dead_lettered == 3, summary
    yield spec, config, staging
    with scenario.engine.begin() as conn:
        deadletters.purge(conn, spec.name)


def test_a_refused_documents_values_stay_in_the_dead_letter_table_not_in_the_alert(scenario, refused):
    spec, _, _ = refused
    with scenario.engine.connect() as conn:
        (letter,) = deadletters.list_dead_letters(conn, spec.name, limit=1)
    assert VALUE in json.dumps(letter["error"])  # Elasticsearch quoted it; the table keeps it whole
    alert = alert_from_check(
        "run-1", spec.name, "no_dead_letters", None, {"first_errors": [letter["error"]]}, spec.name
    )
    assert alert.first_error and "Preview of field's value: ***" in alert.first_error
    assert VALUE not in alert.text() and VALUE not in json.dumps(alert.slack_payload())
    assert f"with id '{letter['doc_id']}'" not in alert.text()


def test_a_failed_statement_never_shows_its_bound_values(live):
    with engine_for(live.pg_url).connect() as conn, pytest.raises(DBAPIError) as failed:
        conn.exec_driver_sql("SELECT %(v)s::text, 1 / 0", {"v": VALUE})
    assert "division by zero" in str(failed.value) and VALUE not in str(failed.value)


def test_retention_purges_old_dead_letters_and_staged_files_and_keeps_new_ones(
    scenario, refused, live, monkeypatch, capsys
):
    spec, config, staging = refused
    folder = staging / spec.name
    # private: the staged files are the user's rows
    assert stat.S_IMODE(staging.stat().st_mode) == 0o700 and stat.S_IMODE(folder.stat().st_mode) == 0o700
    # a second run (one window) stages a second file: the new one purge must keep
    run_sync(spec, at("2026-02-01"), at("2026-03-01"), servers=Servers(live.pg_url, live.es_url))
    staged = sorted(p for p in folder.iterdir() if p.is_file())
    assert len(staged) == 2, staged
    old = time.time() - 31 * 86_400
    os.utime(staged[0], (old, old))
    with scenario.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE sync_pipeline_dead_letters SET created_at = now() - interval '31 days' "
                "WHERE id = (SELECT min(id) FROM sync_pipeline_dead_letters WHERE spec = :s)"
            ),
            {"s": spec.name},
        )
    monkeypatch.setenv("SYNC_PG_URL", live.pg_url)
    monkeypatch.setenv("SYNC_ES_URL", live.es_url)
    assert main(["--config", str(config), "purge", "--spec", spec.name, "--yes"]) == 0
    assert "purged 1 dead letters and 1 staged files" in capsys.readouterr().out
    assert not staged[0].exists() and all(p.exists() for p in staged[1:])
    with scenario.engine.connect() as conn:
        assert deadletters.count(conn, spec.name) == 2
