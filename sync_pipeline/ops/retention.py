"""How long what we keep of the user's rows outside their database may stay: dead letters (rows
Elasticsearch refused, whole) and staged files (every window's rows and documents).

One setting, SYNC_RETENTION_DAYS, covers both; every window sync applies it to its spec when it
ends, and `sync-pipeline purge` applies it (or a shorter age) to every spec on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from sync_pipeline.io import deadletters
from sync_pipeline.io.staging import StagingArea

DAY = 86_400.0


@dataclass(frozen=True)
class Purged:
    dead_letters: int
    staged_files: int


def purge_older_than(engine: Engine, staging: StagingArea, days: float, spec: str | None = None) -> Purged:
    """Dead letters stored and staged files written more than `days` ago (of one spec or all)."""
    with engine.begin() as conn:
        letters = deadletters.purge(conn, spec, older_than=days * DAY)
    return Purged(letters, staging.purge(days * DAY, spec))
