"""Dead-letter replay: re-send refused documents from their *current* rows, once the data or the
mapping is fixed."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.io import deadletters
from sync_pipeline.io.postgres import repeatable_read
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.ops.binding import bind
from sync_pipeline.ops.resync import classify_stale, key_from_id, resync_keys


class ReplayError(RuntimeError):
    """Transient failure during a replay; the dead letters are left as they were."""


def replay(engine: Engine, es: SearchTarget, spec: SyncSpec, batch_size: int = 500) -> tuple[int, int]:
    """Re-send dead-lettered documents from their *current* rows.

    Returns (replayed, still refused). Entries that land are removed; ones
    refused again stay with their newest error; a transient failure rolls the
    batch back untouched.
    """
    bound = bind(engine, spec)
    replayed = refused = 0
    after_id = 0
    while True:
        with repeatable_read(engine) as conn, conn.begin():
            claimed = deadletters.claim(conn, spec.name, batch_size, after_id)
            if not claimed:
                break
            after_id = claimed[-1][0]
            keys = {doc_id: key_from_id(bound, doc_id) for _, doc_id in claimed}
            result = resync_keys(conn, es, bound, list(keys.values()))
            classify_stale(engine, result)
            if result.failed:
                # raising rolls the claim back: every dead letter stays as it was
                raise ReplayError(
                    f"spec '{spec.name}': the search server at {es.where} unavailable during replay; "
                    "nothing removed"
                )
            errors = {r.doc_id: r.error for r in result.rejected}
            deadletters.remove(conn, [i for i, doc_id in claimed if doc_id not in errors])
            for i, doc_id in claimed:
                if doc_id in errors:
                    deadletters.record_error(conn, i, errors[doc_id])
            refused += len({d for _, d in claimed if d in errors})
            replayed += len({d for _, d in claimed if d not in errors})
    if replayed:
        es.indices.refresh(index=spec.target.index)
    return replayed, refused
