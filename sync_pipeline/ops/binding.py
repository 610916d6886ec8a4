"""A spec bound to its live source: the columns PostgreSQL reports and the document plan.

Every use case starts here (describe the source, check it against the spec,
derive the plan, and — when it is about to write — make sure the target exists
with the spec's mapping), so the prologue is spelled once.
"""

from __future__ import annotations

from dataclasses import dataclass

from elasticsearch import Elasticsearch
from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.columns import ColumnInfo
from sync_pipeline.core.documents import DocumentPlan, build_plan, index_mapping, index_settings
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.io.elasticsearch import ensure_index
from sync_pipeline.io.postgres import describe_source


@dataclass(frozen=True)
class Bound:
    spec: SyncSpec
    columns: list[ColumnInfo]
    plan: DocumentPlan

    @classmethod
    def of(cls, spec: SyncSpec, columns: list[ColumnInfo]) -> Bound:
        """From columns already known (a staged file's, say)."""
        return cls(spec, columns, build_plan(spec, columns))


def bind(source: Engine | Connection, spec: SyncSpec) -> Bound:
    """Describe the spec's source (SourceError when it does not match) and plan its documents."""
    if isinstance(source, Connection):
        columns = describe_source(source, spec)
    else:
        with source.connect() as conn:
            columns = describe_source(conn, spec)
            conn.commit()
    return Bound.of(spec, columns)


def ensure_target(es: Elasticsearch, bound: Bound, index: str | None = None) -> bool:
    """Create the target (alias + first versioned index) from the spec's mapping unless it
    exists; True when created. An index op on a missing index would otherwise create it
    with dynamic mappings."""
    name = index or bound.spec.target.index
    return ensure_index(es, name, index_mapping(bound.plan), index_settings(bound.spec))
