"""Cleanup after rebuilds: the backing indices a rebuild keeps for rollback are dropped after
the test (`no_index_left_behind`, used by the rebuild modules)."""

import pytest


@pytest.fixture()
def no_index_left_behind(request):
    """The scenario drops what its alias points at; rebuilds leave more (kept for rollback)."""
    scenario = request.getfixturevalue("scenario") if "scenario" in request.fixturenames else None
    yield
    if scenario is not None:
        for name in scenario.es.indices.get(index=f"{scenario.index}_*", allow_no_indices=True):
            scenario.es.indices.delete(index=name, ignore_unavailable=True)
