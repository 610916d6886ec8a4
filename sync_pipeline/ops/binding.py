"""A spec bound to its live source: the columns PostgreSQL reports, the relations, the plan.

Every use case starts here (describe the source and its related tables, check
them against the spec, derive the document plan, and — when it is about to
write — make sure the target exists with the spec's mapping), so the prologue
is spelled once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import Connection, Engine

from sync_pipeline.core.documents.build import DocumentPlan, build_plan
from sync_pipeline.core.documents.index_mapping import index_mapping
from sync_pipeline.core.documents.transform_plan import with_transform
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.columns import ColumnInfo, json_es_type
from sync_pipeline.core.sql.relations import RelationPlan, TableInfo, plan_relation, relation_problems
from sync_pipeline.core.sql.statements import SourceError, read_columns
from sync_pipeline.io.postgres import describe_relations, describe_source, json_value_kinds
from sync_pipeline.io.transform import resolve as resolve_transform


@dataclass(frozen=True)
class Bound:
    spec: SyncSpec
    columns: list[ColumnInfo]  # the root source's own columns
    plan: DocumentPlan
    relations: tuple[RelationPlan, ...] = ()

    @classmethod
    def of(
        cls,
        spec: SyncSpec,
        columns: list[ColumnInfo],
        relations: tuple[RelationPlan, ...] = (),
        json_types: Mapping[str, str | None] | None = None,
    ) -> Bound:
        """From columns already known (a staged file's, say); `json_types`: what `json_types()`
        inferred from the values (without it, JSON columns map as objects)."""
        root = [c for c in columns if c.name not in {r.spec.name for r in relations}]
        plan = build_plan(spec, read_columns(root, relations), relations, json_types)
        return cls(spec, root, _transformed(plan), relations)

    @classmethod
    def staged(cls, spec: SyncSpec, staged_columns: list[ColumnInfo]) -> Bound:
        """From a staged extract's columns (a read's, version and relation JSON included): enough
        to turn its rows into documents, not to create an index (use `bind` for that)."""
        root = [c for c in staged_columns if not c.name.startswith("__sync_")]
        return cls(spec, root, _transformed(build_plan(spec, staged_columns)))

    @property
    def read_columns(self) -> list[ColumnInfo]:
        """The columns every read of this spec returns (relations and version included)."""
        return read_columns(self.columns, self.relations)


def _transformed(plan: DocumentPlan) -> DocumentPlan:
    """The plan with the spec's transform, when it names one (imported here, at the edge)."""
    apply = resolve_transform(plan.spec)
    return plan if apply is None else with_transform(plan, plan.spec.transform.pandas, apply)


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


VECTOR_COLUMN_TYPES = ("float4", "float8")


def _vector_problems(spec: SyncSpec, info: dict[str, ColumnInfo]) -> list[str]:
    """A dense_vector field needs an array of floats: any other column would send every row to
    the dead letters, one server refusal each."""
    problems = []
    for name, rule in spec.fields.items():
        if rule.type != "dense_vector":
            continue
        if "." in name:
            problems.append(f"fields.{name}.type: dense_vector is not supported on a relation's column")
        elif name in info and not (info[name].is_array and info[name].pg_type in VECTOR_COLUMN_TYPES):
            kind = f"{info[name].pg_type}{'[]' if info[name].is_array else ''}"
            problems.append(
                f"fields.{name}.type: column {name} is {kind}, not real[] or double precision[] "
                "(a dense_vector's values)"
            )
    return problems


def check_numeric_rules(spec: SyncSpec, columns: list[ColumnInfo]) -> None:
    """`fields.<col>.numeric` and `type: dense_vector` only where they mean something: a
    SourceError otherwise, rather than an option silently ignored or every row refused."""
    info = {c.name: c for c in columns}
    problems = _vector_problems(spec, info)
    for name, rule in spec.fields.items():
        if rule.numeric is None:
            continue
        if "." in name:
            problems.append(
                f"fields.{name}.numeric: not supported on a relation's column (related numeric "
                "columns are doubles for numeric(p <= 15, s), PostgreSQL's text otherwise)"
            )
        elif name in info and (info[name].pg_type != "numeric" or info[name].is_array):
            kind = f"{info[name].pg_type}{'[]' if info[name].is_array else ''}"
            problems.append(f"fields.{name}.numeric: column {name} is {kind}, not numeric")
    if problems:
        raise SourceError(f"source of spec '{spec.name}': " + "; ".join(problems))


def json_types(conn: Connection, spec: SyncSpec, columns: list[ColumnInfo]) -> dict[str, str | None]:
    """The mapping of each JSON column the spec does not type itself, from a sample of its values:
    an object column would refuse every document whose value is a scalar or an array of them."""
    rules = spec.fields
    wanted = [
        c
        for c in columns
        if c.pg_type in ("json", "jsonb")
        and not (c.name in rules and (rules[c.name].type or rules[c.name].drop))
    ]
    return {name: json_es_type(kinds) for name, kinds in json_value_kinds(conn, spec, wanted).items()}


def _bind(conn: Connection, spec: SyncSpec) -> Bound:
    columns = describe_source(conn, spec)
    relations = _relations(conn, spec, columns)
    check_numeric_rules(spec, columns)
    return Bound.of(spec, columns, relations)


def _on(source: Engine | Connection, work):
    if isinstance(source, Connection):
        return work(source)
    with source.connect() as conn:
        result = work(conn)
        conn.commit()
    return result


def bind(source: Engine | Connection, spec: SyncSpec) -> Bound:
    """Describe the spec's source and related tables (SourceError when they do not match the
    spec) and plan its documents."""
    return _on(source, lambda conn: _bind(conn, spec))


def target_mapping(source: Engine | Connection, bound: Bound) -> dict:
    """The mapping a new index gets: the plan's, with JSON columns mapped from a sample of their
    values. Only a new index needs the sample (it changes the mapping, never a document), so it
    is read here rather than on every bind — drains, checks and repairs bind again and again."""

    def sampled(conn: Connection) -> dict:
        kinds = json_types(conn, bound.spec, bound.columns)
        return index_mapping(Bound.of(bound.spec, bound.columns, bound.relations, kinds).plan)

    return _on(source, sampled)
