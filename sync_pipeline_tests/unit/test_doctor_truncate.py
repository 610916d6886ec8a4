"""Orphans and bypasses (real servers): `sync-pipeline doctor` finds what needs action, and a
TRUNCATE — which fires no row trigger — still reaches the index through the next drain.

A small schema per test (categories ← products → reviews), fully synced, triggers on every
table; each TRUNCATE test ends with verify reporting 0 drift.
"""

from __future__ import annotations


def test_trigger_names_and_markers():
    from sync_pipeline.core.capture import function_name, marker, parse_marker, truncate_trigger_name

    long = "s" * 63
    assert truncate_trigger_name(long, "t") != function_name(long, "t")
    assert len(truncate_trigger_name(long, "t")) <= 63
    assert truncate_trigger_name(long, "t") != truncate_trigger_name(long[:-1] + "x", "t")
    assert parse_marker(marker("shop", "sales.products")) == ("shop", "sales.products")
    assert parse_marker("some other comment") is None and parse_marker(None) is None
