"""Logical capture at its edges (issue 30), the part that needs no server: a lost slot's advice
never says --full (the rest on the real servers: chaos/test_logical_edges.py)."""

from __future__ import annotations

from sync_pipeline.core.cdc import logical
from sync_pipeline.io import replication
from sync_pipeline.ops import slots
from sync_pipeline_tests.support.keys_versions import _spec
from sync_pipeline_tests.support.logical import LOGICAL


def test_a_lost_slots_advice_is_verify_fix(monkeypatch):
    """An invalidated slot (max_slot_wal_keep_size): doctor's fix ends in verify --fix."""
    spec = _spec("lost_slot", "id", LOGICAL)
    state = replication.SlotState(logical.slot_name(spec.name), None, 10, "lost", None, "0/10")
    monkeypatch.setattr(slots.replication, "slot_state", lambda conn, name: state)
    monkeypatch.setattr(slots, "unpublished", lambda conn, spec, watched: [])
    status = slots.spec_slot_status(None, spec, [], 60.0)
    assert "invalidated" in status.problem
    assert status.fix[-1] == "sync-pipeline verify --spec lost_slot --fix"
    assert not any("--full" in line for line in status.fix)
