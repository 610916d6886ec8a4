"""io/locks.advisory_lock: one holder per name across sessions (a second rebuild of a spec
stands down), released when its holder is done, even when the work fails."""

from __future__ import annotations

import uuid

import pytest

from sync_pipeline.io.locks import advisory_lock
from sync_pipeline.io.postgres import engine_for


def test_a_second_session_does_not_get_a_held_lock_and_gets_it_once_released(live):
    engine = engine_for(live.pg_url)
    name = f"sync_pipeline test {uuid.uuid4().hex}"
    with advisory_lock(engine, name) as first:
        with advisory_lock(engine, name) as second:
            assert (first, second) == (True, False)
        with advisory_lock(engine, f"{name} other") as other:
            assert other  # another name is another lock
    with advisory_lock(engine, name) as again:
        assert again


def test_the_lock_is_released_when_the_work_inside_fails(live):
    engine = engine_for(live.pg_url)
    name = f"sync_pipeline test {uuid.uuid4().hex}"
    with pytest.raises(RuntimeError, match="work failed"), advisory_lock(engine, name) as held:
        assert held
        raise RuntimeError("work failed")
    with advisory_lock(engine, name) as again:
        assert again
