"""Logical capture's common parts: the spec line, the slot's state, and `logical_spec` (slot
installed, a full sync, a first drain; a fixture of every module)."""

from __future__ import annotations

import pytest

from sync_pipeline.apps.cli.runner import Servers, run_sync
from sync_pipeline.io import replication
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline_tests.support.faults import seed

LOGICAL = "    capture: logical"


def _slot(engine, spec):
    with engine.connect() as conn:
        return replication.slot_state(conn, spec.name)


@pytest.fixture()
def logical_spec(scenario, live):
    """A logical spec over the scenario's table: slot first, then the full sync."""
    spec = scenario.spec(extra=LOGICAL)
    install_capture(scenario.engine, spec)
    seed(scenario, 300)
    summary = run_sync(spec, servers=Servers(live.pg_url, live.es_url))
    assert summary.success and summary.indexed == 300, summary.error
    drain(scenario.engine, scenario.es, spec)  # the seed's inserts are in the slot: re-reads
    yield spec
    scenario.engine.dispose()
    uninstall_capture(scenario.engine, spec)
