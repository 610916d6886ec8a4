"""Logical capture on the real servers: install and uninstall, what the slot carries, and the
faults a slot meets — a drain killed before it confirmed, PostgreSQL restarted under a drain,
the slot dropped behind our back (each ends in verify at zero drift). The relation tests
(test_relations.py) run every fan-out case in both capture modes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from sync_pipeline.ops.drain import drain
from sync_pipeline_devtools import services
from sync_pipeline_tests.conftest import indexed
from sync_pipeline_tests.support.faults import record
from sync_pipeline_tests.support.logical import (
    LOGICAL,
    _slot,
)

KILLER = """
import os, sys
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io.search import search_client
from sync_pipeline.io.postgres import engine_for
from sync_pipeline.ops.drain import drain
spec = parse_specs(open(sys.argv[1]).read())[0]
# killed after Elasticsearch acknowledged the first batch, before the slot was confirmed
drain(engine_for(os.environ["SYNC_PG_URL"]), search_client(os.environ["SYNC_ES_URL"]), spec,
      on_batch=lambda batch: os._exit(9))
"""


def test_a_drain_killed_before_confirming_leaves_its_changes_in_the_slot(
    scenario, logical_spec, tmp_path, live
):
    spec = logical_spec
    config = scenario.spec_file(tmp_path, extra=LOGICAL)
    scenario.execute(f"UPDATE {scenario.table} SET title = 'killed ' || id")
    before = _slot(scenario.engine, spec).confirmed_lsn
    env = {**os.environ, "SYNC_PG_URL": live.pg_url, "SYNC_ES_URL": live.es_url}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLER), str(config)], env=env, timeout=120)
    assert proc.returncode == 9, "the drain was not killed mid-way: nothing was tested"
    assert _slot(scenario.engine, spec).confirmed_lsn == before  # nothing confirmed
    totals = drain(scenario.engine, scenario.es, spec)
    assert totals.claimed == 300 and totals.failed == 0
    docs = indexed(scenario.es, scenario.index)
    assert len(docs) == 300 and all(d["title"] == f"killed {i}" for i, d in docs.items())
    record("logical: drain killed before confirming, drained again", 300, spec, scenario=scenario)


def test_postgres_restarted_under_a_logical_drain(scenario, logical_spec):
    spec = logical_spec
    scenario.execute(f"UPDATE {scenario.table} SET title = 'restarted ' || id")
    outcome: dict = {}

    def restart_once(_batch) -> None:
        if not outcome:
            outcome["restarted"] = True
            # as a crash: a fast shutdown would wait for this very drain (blocked here) to confirm
            services.restart_postgres(mode="immediate")

    try:
        drain(scenario.engine, scenario.es, spec, on_batch=restart_once)
    except Exception as exc:  # the restart cut the stream and the session
        outcome["error"] = exc
    assert "error" in outcome, "the drain finished before the restart: nothing was tested"
    scenario.engine.dispose()
    totals = drain(scenario.engine, scenario.es, spec)
    assert totals.failed == 0 and totals.claimed > 0
    docs = indexed(scenario.es, scenario.index)
    assert len(docs) == 300 and all(d["title"] == f"restarted {i}" for i, d in docs.items())
    record("logical: PostgreSQL restarted mid-drain, drained again", 300, spec)
