"""One key encoding on every path, and versions ordered by the read (real servers).

Each key type goes sync → drain (update) → delete → verify; the time-zone and clock cases
show a version that a column the application controls cannot fool.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli.runner import Servers, run_drain, run_sync, run_verify
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io.search.indices import drop_target
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline_tests.conftest import indexed
from sync_pipeline_tests.support.keys_versions import _spec

# (key columns, primary_key, key type, values, the _id of the row deleted, its WHERE)
KEYS = {
    "numeric": ("k numeric(8, 2) PRIMARY KEY", "k", "numeric", ["1.50", "2.00", "3.25"], "1.50", "k = 1.5"),
    "timestamp": (
        "k timestamptz PRIMARY KEY",
        "k",
        "timestamptz",
        ["2026-02-01 10:00:00.000001+00", "2026-02-01 10:00:00.000002+00", "2026-02-01 10:00:00+01"],
        "2026-02-01T10:00:00.000001Z",
        "k = '2026-02-01 11:00:00.000001+01'",
    ),
    "composite": (
        "region text, n int, day date, PRIMARY KEY (region, n, day)",
        "[region, n, day]",
        None,
        None,
        '["eu",1,"2026-02-01"]',
        "region = 'eu' AND n = 1",
    ),
}


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_every_key_type_goes_through_sync_drain_delete_and_verify(kind, pg, es, live):
    table = f"k_{uuid.uuid4().hex[:8]}"
    columns, key, key_type, values, deleted_id, deleted_where = KEYS[kind]
    servers = Servers(live.pg_url, live.es_url)
    with pg.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} ({columns}, note text, updated_at timestamptz)"))
        if kind == "composite":
            conn.execute(
                sa.text(
                    f"INSERT INTO {table} VALUES ('eu', 1, '2026-02-01', 'a', '2026-02-01+00'), "
                    "('eu', 2, '2026-02-01', 'b', '2026-02-01+00'), "
                    "('us', 1, '2026-02-02', 'c', '2026-02-01+00')"
                )
            )
        else:
            for value in values:
                conn.execute(
                    sa.text(f"INSERT INTO {table} VALUES (CAST(:v AS {key_type}), 'x', '2026-02-01+00')"),
                    {"v": value},
                )
    spec = _spec(table, key)
    try:
        assert run_sync(spec, servers=servers).success
        docs = indexed(es, table)
        assert deleted_id in docs and len(docs) == 3
        install_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(sa.text(f"UPDATE {table} SET note = 'changed'"))
        assert run_drain(spec, servers=servers).success
        assert {d["note"] for d in indexed(es, table).values()} == {"changed"}
        with pg.begin() as conn:
            # the delete is found by the key the trigger recorded: the same _id the sync wrote
            conn.execute(sa.text(f"DELETE FROM {table} WHERE {deleted_where}"))
        summary = run_drain(spec, servers=servers)
        assert summary.success and summary.deleted == 1
        assert deleted_id not in indexed(es, table)
        (report,) = run_verify([spec], [spec], servers=servers)
        assert report.ok and report.pg_count == 2, report.lines()
    finally:
        uninstall_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        drop_target(es, table)


def test_a_hard_delete_in_a_zone_ahead_of_utc_is_applied_at_once(pg, es, live):
    """naive_timezone Europe/Berlin: wall-clock updated_at read as Berlin time. The delete must not
    be refused as older than the document (versions come from the read, not from the clock)."""
    table = f"z_{uuid.uuid4().hex[:8]}"
    servers = Servers(live.pg_url, live.es_url)
    with pg.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} (id int PRIMARY KEY, note text, updated_at timestamp)"))
        # stamped with Berlin's wall clock, as an application in Berlin writes it
        conn.execute(
            sa.text(
                f"INSERT INTO {table} SELECT g, 'x', (now() AT TIME ZONE 'Europe/Berlin') "
                "FROM generate_series(1, 5) AS g"
            )
        )
    spec = _spec(table, "id", "    naive_timezone: Europe/Berlin")
    try:
        assert run_sync(spec, servers=servers).success
        install_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {table} WHERE id = 3"))
        summary = run_drain(spec, servers=servers)
        assert summary.success and summary.deleted == 1 and summary.stale_skipped == 0
        assert "3" not in indexed(es, table)
        with pg.begin() as conn:  # and a re-insert of the same key right after
            conn.execute(
                sa.text(f"INSERT INTO {table} VALUES (3, 'back', now() AT TIME ZONE 'Europe/Berlin')")
            )
        assert run_drain(spec, servers=servers).success
        assert indexed(es, table)["3"]["note"] == "back"
        (report,) = run_verify([spec], [spec], servers=servers)
        assert report.ok, report.lines()
    finally:
        uninstall_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        drop_target(es, table)


def test_a_null_key_is_refused_naming_the_spec_and_the_row_count(pg, es, live):
    table = f"n_{uuid.uuid4().hex[:8]}"
    servers = Servers(live.pg_url, live.es_url)
    with pg.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} (id int, note text, updated_at timestamptz)"))
        conn.execute(
            sa.text(f"INSERT INTO {table} VALUES (1, 'a', now()), (NULL, 'b', now()), (NULL, 'c', now())")
        )
    spec = _spec(table, "id")
    try:
        summary = run_sync(spec, servers=servers)
        assert not summary.success
        assert f"spec '{table}': 2 row(s) have a NULL primary key" in summary.error
    finally:
        with pg.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        drop_target(es, table)


def test_verify_fix_repairs_an_out_of_band_edit_without_poisoning_later_writes(pg, es, live):
    table = f"v_{uuid.uuid4().hex[:8]}"
    servers = Servers(live.pg_url, live.es_url)
    with pg.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} (id int PRIMARY KEY, note text, updated_at timestamptz)"))
        conn.execute(
            sa.text(f"INSERT INTO {table} SELECT g, 'x', '2026-02-01+00' FROM generate_series(1, 3) g")
        )
    spec = _spec(table, "id")
    try:
        assert run_sync(spec, servers=servers).success
        es.update(index=table, id="2", doc={"note": "tampered"})  # internal version bump, behind our back
        (fixed,) = run_verify([spec], [spec], fix=True, servers=servers)
        assert fixed.mismatched == 1 and fixed.repaired.conflicts == 0
        (after,) = run_verify([spec], [spec], servers=servers)
        assert after.ok, after.lines()
        # a later ordinary write is not refused: the repair wrote a version of a real snapshot
        install_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(sa.text(f"UPDATE {table} SET note = 'later' WHERE id = 2"))
        summary = run_drain(spec, servers=servers)
        assert summary.success and summary.stale_skipped == 0 and summary.conflicts == 0
        assert indexed(es, table)["2"]["note"] == "later"
    finally:
        uninstall_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        drop_target(es, table)


def test_a_version_from_the_future_is_a_conflict_that_fails_the_drain(pg, es, live):
    """After a drain's fresh read, a 409 means the sides disagree: counted, and the run's check
    fails (exit 1 for flush) instead of passing as 'stale'."""
    table = f"f_{uuid.uuid4().hex[:8]}"
    servers = Servers(live.pg_url, live.es_url)
    with pg.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} (id int PRIMARY KEY, note text, updated_at timestamptz)"))
        conn.execute(sa.text(f"INSERT INTO {table} VALUES (1, 'x', now())"))
    spec = _spec(table, "id")
    try:
        assert run_sync(spec, servers=servers).success
        es.index(
            index=table, id="1", document={"id": 1, "note": "future"}, version=2**62, version_type="external"
        )
        install_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(sa.text(f"UPDATE {table} SET note = 'now' WHERE id = 1"))
        summary = run_drain(spec, servers=servers)
        assert summary.conflicts == 1 and summary.stale_skipped == 0
        from sync_pipeline.apps.cli.output import EXIT_DRIFT, sync_exit

        assert sync_exit(summary) == EXIT_DRIFT
    finally:
        uninstall_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        drop_target(es, table)


def test_a_query_spec_maps_a_changed_lookup_row_to_its_documents_with_roots(pg, es, live):
    s = f"q_{uuid.uuid4().hex[:8]}"
    servers = Servers(live.pg_url, live.es_url)
    with pg.begin() as conn:
        for statement in (
            f"CREATE SCHEMA {s}",
            f"CREATE TABLE {s}.categories (id int PRIMARY KEY, name text)",
            f"CREATE TABLE {s}.products (id int PRIMARY KEY, category_id int, updated_at timestamptz)",
            f"INSERT INTO {s}.categories VALUES (1, 'Tea'), (2, 'Cups')",
            f"INSERT INTO {s}.products SELECT g, 1 + g % 2, '2026-02-01+00' FROM generate_series(1, 10) g",
        ):
            conn.execute(sa.text(statement))
    spec = parse_specs(
        f"""
specs:
  - name: {s}
    source:
      query: >-
        SELECT p.id, p.updated_at, c.name AS category
        FROM {s}.products p JOIN {s}.categories c ON c.id = p.category_id
      primary_key: id
      updated_at: updated_at
      change_tables:
        - {s}.products
        - {{table: {s}.categories, roots: "SELECT id FROM {s}.products WHERE category_id = ANY(:keys)"}}
    target: {{index: {s}}}
    partitions: {{grain: month, start: "2026-01-01"}}
"""
    )[0]
    try:
        assert run_sync(spec, servers=servers).success
        install_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(sa.text(f"UPDATE {s}.categories SET name = 'Green tea' WHERE id = 2"))
        assert run_drain(spec, servers=servers).success
        docs = indexed(es, s)
        assert {d["category"] for k, d in docs.items() if int(k) % 2 == 1} == {"Green tea"}
        (report,) = run_verify([spec], [spec], servers=servers)
        assert report.ok, report.lines()
    finally:
        uninstall_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {s} CASCADE"))
        drop_target(es, s)
