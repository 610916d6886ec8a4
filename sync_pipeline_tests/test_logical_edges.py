"""Logical capture at its edges (issue 30, items 2, 4 and 11), on the real servers: keys whose
pgoutput text is not their canonical text, a switch of capture mode with changes pending, the
visibility wait, and the repair a lost slot's advice names. Each ends in verify at zero drift."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify
from sync_pipeline.core.specs import parse_specs
from sync_pipeline.io.search.indices import drop_target
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain

from .conftest import CHAOS_RESULTS, indexed

LOGICAL = "    capture: logical"

# key kind: (key columns, primary_key, rows' key values as SQL over g, spec extra, changed rows)
KEYS = {
    "timestamptz in a composite key": (
        "device_id int, recorded_at timestamptz, PRIMARY KEY (device_id, recorded_at)",
        "[device_id, recorded_at]",
        "g % 4, timestamptz '2026-02-01 10:00:00.5+02' + g * interval '1 minute'",
        "",
        "device_id = 1",
    ),
    "bool in a composite key": (
        "n int, flag bool, PRIMARY KEY (n, flag)",
        "[n, flag]",
        "g / 2, g % 2 = 0",
        "",
        "flag",
    ),
    "char(n)": ("code char(8) PRIMARY KEY", "code", "'c' || g", "", "g_mod = 1"),
    "naive timestamp under naive_timezone": (
        "at timestamp PRIMARY KEY",
        "at",
        "timestamp '2026-02-01 10:00:00' + g * interval '1 hour'",
        "    naive_timezone: America/New_York",
        "g_mod = 1",
    ),
}


def _spec(table: str, key: str, extra: str = ""):
    return parse_specs(
        f"""
specs:
  - name: {table}
    source: {{table: {table}, primary_key: {key}, updated_at: updated_at}}
    target: {{index: {table}}}
    partitions: {{grain: month, start: "2026-01-01"}}
    batch_size: 50
{extra}
"""
    )[0]


def _verified(name: str, changed: int, spec, servers: Servers) -> None:
    (report,) = run_verify([spec], [spec], servers=servers)
    CHAOS_RESULTS.append((name, changed, report.drift, 0))
    assert report.ok and report.drift == 0, report.lines()


@pytest.mark.integration
@pytest.mark.chaos
@pytest.mark.parametrize("kind", sorted(KEYS))
def test_logical_updates_and_deletes_find_the_documents_of_every_key_kind(kind, pg, es, live):
    """The root-only path of the logical drain names documents by the keys pgoutput sends: they
    must become the same _id the full sync wrote (core/keys.py), or deletes miss their document."""
    table = f"lk_{uuid.uuid4().hex[:8]}"
    columns, key, values, extra, changed = KEYS[kind]
    servers = Servers(live.pg_url, live.es_url)
    spec = _spec(table, key, f"{LOGICAL}\n{extra}")
    with pg.begin() as conn:
        conn.execute(
            sa.text(f"CREATE TABLE {table} ({columns}, g_mod int, note text, updated_at timestamptz)")
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {table} SELECT {values}, g % 3, 'x', '2026-02-01+00' "
                "FROM generate_series(1, 60) AS g"
            )
        )
    try:
        install_capture(pg, spec)
        assert run_sync([spec], spec, servers=servers).success
        assert len(indexed(es, table)) == 60
        with pg.begin() as conn:
            updated = conn.execute(sa.text(f"UPDATE {table} SET note = 'changed' WHERE NOT ({changed})"))
            deleted = conn.execute(sa.text(f"DELETE FROM {table} WHERE {changed}"))
        assert 0 < deleted.rowcount < 60
        totals = drain(pg, es, spec)
        assert totals.failed == 0 and totals.deleted == deleted.rowcount, totals
        docs = indexed(es, table)
        assert len(docs) == 60 - deleted.rowcount and {d["note"] for d in docs.values()} == {"changed"}
        _verified(f"logical key: {kind}", updated.rowcount + deleted.rowcount, spec, servers)
    finally:
        uninstall_capture(pg, spec)
        with pg.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        drop_target(es, table)
