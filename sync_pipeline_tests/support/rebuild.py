"""Zero-downtime rebuild against the real servers: alias swap, writes during the rebuild, rollback."""

import pytest


@pytest.fixture()
def no_index_left_behind(request):
    """The scenario drops what its alias points at; rebuilds leave more (kept for rollback)."""
    scenario = request.getfixturevalue("scenario") if "scenario" in request.fixturenames else None
    yield
    if scenario is not None:
        for name in scenario.es.indices.get(index=f"{scenario.index}_*", allow_no_indices=True):
            scenario.es.indices.delete(index=name, ignore_unavailable=True)
