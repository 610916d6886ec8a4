"""Rebuild's versioned index names (the rebuild itself on the real servers: integration/ and chaos/)."""

from sync_pipeline.ops.rebuild import versioned_name


def test_versioned_names_follow_the_highest_existing_version():
    assert versioned_name("p", []) == "p_v1"
    assert versioned_name("p", ["p_v1", "p_v3", "p_v10", "p_vx", "other_v99"]) == "p_v11"
