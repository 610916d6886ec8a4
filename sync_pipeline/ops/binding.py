"""A spec bound to its live source: the columns PostgreSQL reports, the relations, the plan.

Every use case starts here (describe the source and its related tables, check
them against the spec, derive the document plan, and — when it is about to
write — make sure the target exists with the spec's mapping), so the prologue
is spelled once.
"""

from __future__ import annotations

from dataclasses import dataclass

from elasticsearch import Elasticsearch
from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.columns import ColumnInfo
from sync_pipeline.core.documents import DocumentPlan, build_plan, index_mapping, index_settings
from sync_pipeline.core.relations import RelationPlan, TableInfo, plan_relation, relation_problems
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.core.sql import SourceError, read_columns
from sync_pipeline.io.elasticsearch import ensure_index
from sync_pipeline.io.postgres import describe_relations, describe_source


@dataclass(frozen=True)
class Bound:
    spec: SyncSpec
    columns: list[ColumnInfo]  # the root source's own columns
    plan: DocumentPlan
    relations: tuple[RelationPlan, ...] = ()

    @classmethod
    def of(cls, spec: SyncSpec, columns: list[ColumnInfo], relations: tuple[RelationPlan, ...] = ()) -> Bound:
        """From columns already known (a staged file's, say)."""
        root = [c for c in columns if c.name not in {r.spec.name for r in relations}]
        return cls(spec, root, build_plan(spec, read_columns(root, relations), relations), relations)

    @classmethod
    def staged(cls, spec: SyncSpec, staged_columns: list[ColumnInfo]) -> Bound:
        """From a staged extract's columns (a read's, version and relation JSON included): enough
        to turn its rows into documents, not to create an index (use `bind` for that)."""
        root = [c for c in staged_columns if not c.name.startswith("__sync_")]
        return cls(spec, root, build_plan(spec, staged_columns))

    @property
    def read_columns(self) -> list[ColumnInfo]:
        """The columns every read of this spec returns (relations and version included)."""
        return read_columns(self.columns, self.relations)


def _relations(conn: Connection, spec: SyncSpec, columns: list[ColumnInfo]) -> tuple[RelationPlan, ...]:
    if not spec.source.relations:
        return ()
    tables = describe_relations(conn, spec)
    root = TableInfo(spec.source.table or "", tuple(columns), ())
    problems = relation_problems(spec, root, tables)
    if problems:
        raise SourceError(f"source of spec '{spec.name}': " + "; ".join(problems))
    present = {name: table for name, table in tables.items() if table is not None}
    return tuple(plan_relation(spec, r, present, r.name) for r in spec.source.relations)


def bind(source: Engine | Connection, spec: SyncSpec) -> Bound:
    """Describe the spec's source and related tables (SourceError when they do not match the
    spec) and plan its documents."""
    if isinstance(source, Connection):
        columns = describe_source(source, spec)
        relations = _relations(source, spec, columns)
    else:
        with source.connect() as conn:
            columns = describe_source(conn, spec)
            relations = _relations(conn, spec, columns)
            conn.commit()
    return Bound.of(spec, columns, relations)


def ensure_target(es: Elasticsearch, bound: Bound, index: str | None = None) -> bool:
    """Create the target (alias + first versioned index) from the spec's mapping unless it
    exists; True when created. An index op on a missing index would otherwise create it
    with dynamic mappings."""
    name = index or bound.spec.target.index
    return ensure_index(es, name, index_mapping(bound.plan), index_settings(bound.spec))
