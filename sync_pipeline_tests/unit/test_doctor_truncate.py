"""Names doctor relies on: trigger names within PostgreSQL's 63 bytes and the capture markers
(doctor and TRUNCATE on the real servers: integration/test_doctor_truncate.py)."""

from __future__ import annotations


def test_trigger_names_and_markers():
    from sync_pipeline.core.cdc.triggers import function_name, marker, parse_marker, truncate_trigger_name

    long = "s" * 63
    assert truncate_trigger_name(long, "t") != function_name(long, "t")
    assert len(truncate_trigger_name(long, "t")) <= 63
    assert truncate_trigger_name(long, "t") != truncate_trigger_name(long[:-1] + "x", "t")
    assert parse_marker(marker("shop", "sales.products")) == ("shop", "sales.products")
    assert parse_marker("some other comment") is None and parse_marker(None) is None
