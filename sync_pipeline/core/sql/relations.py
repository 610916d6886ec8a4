"""Relations: related rows as objects and arrays of the document, built by PostgreSQL.

A relation becomes one JSON column of the read: the object, or the array of
objects ordered by the related table's key, read from the related table (through
the join table for many_to_many) as a correlated subquery per row for key lookups,
or as pre-aggregated joins for a whole window (core/sql/relation_joins.py), with the same value
conventions as the root's fields (timestamps as UTC ISO text, NaN as null,
numerics by their declared precision, as core/sql/columns.py decides for the root).
One statement per window still reads everything in one snapshot. The fan-out
(core/cdc/fanout.py) goes the other way: from changed related rows up the chain
to the keys of the documents they feed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.spec.sources import RelationSpec
from sync_pipeline.core.spec.target import FieldSpec
from sync_pipeline.core.sql.columns import TEXTUAL, ColumnInfo, infer_es_type
from sync_pipeline.core.sql.keys import canonical_sql
from sync_pipeline.core.sql.quoting import qualified_table, quote_ident

_PAIRS_PER_CALL = 50  # json_build_object takes at most 100 arguments


@dataclass(frozen=True)
class TableInfo:
    """A table as PostgreSQL describes it."""

    name: str  # as the spec gives it: table or schema.table
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...]

    def column(self, name: str) -> ColumnInfo:
        for info in self.columns:
            if info.name == name:
                return info
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


@dataclass(frozen=True)
class NestedField:
    column: ColumnInfo
    name: str
    es_type: str
    cleanse: tuple[str, ...] = ()


@dataclass(frozen=True)
class RelationPlan:
    path: str  # dotted: category.department
    spec: RelationSpec
    table: TableInfo
    through: TableInfo | None
    fields: tuple[NestedField, ...]
    children: tuple[RelationPlan, ...] = field(default=())

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(self.spec.primary_key or self.table.primary_key)


def nested_es_type(info: ColumnInfo) -> str:
    return infer_es_type(info, is_key=False)


def plan_relation(
    spec: SyncSpec,
    relation: RelationSpec,
    tables: dict[str, TableInfo],
    path: str,
) -> RelationPlan:
    """The plan of one relation (and its children) from the described tables; ValueError names
    what does not match."""
    table = tables[relation.table]
    through = tables[relation.through.table] if relation.through else None
    wanted = relation.columns if relation.columns is not None else table.names
    fields = []
    for column in wanted:
        rule = spec.fields.get(f"{path}.{column}", FieldSpec())
        if rule.drop:
            continue
        info = table.column(column)
        fields.append(
            NestedField(info, rule.rename or column, rule.type or nested_es_type(info), tuple(rule.cleanse))
        )
    children = tuple(
        plan_relation(spec, child, tables, f"{path}.{child.name}") for child in relation.relations
    )
    return RelationPlan(path, relation, table, through, tuple(fields), children)


# --- reading: the JSON of a relation ------------------------------------------------------------


def value_sql(f: NestedField, alias: str, naive_timezone: str) -> str:
    """A related column as its document value, in SQL, with the root fields' conventions. It goes
    into `json_build_object`, which prints json, jsonb and scalars as their JSON text."""
    info = f.column
    col = f"{alias}.{quote_ident(info.name)}"
    if info.is_array:
        return f"to_jsonb({col})"  # jsonb prints on one line, also arrays of json
    if info.pg_type == "json":
        # json keeps its input text, newlines included, which would split the bulk NDJSON line
        return f"CAST({col} AS jsonb)"
    if info.pg_type == "jsonb":
        return col
    if info.pg_type in ("timestamptz", "timestamp", "date"):
        return canonical_sql(info, col, naive_timezone)  # the text root documents carry
    if info.pg_type == "numeric" and not info.fits_double:
        # as the root's default (core/documents/build.py numeric_mode): digits a double would round off
        # travel as PostgreSQL's exact text, mapped keyword (core/sql/columns.infer_es_type)
        return f"CAST({col} AS text)"
    if info.pg_type in ("float4", "float8", "numeric"):
        # NaN/±Inf are not JSON (json would print them as strings): null, tested on the column as it
        # is, so nothing is converted twice. float4 and float8 print their shortest text, as the root's
        # staging reads them; a numeric of declared precision (no infinity fits one) as its double.
        if info.pg_type == "numeric":
            return f"CAST(NULLIF({col}, 'NaN') AS float8)"
        return f"(CASE WHEN {col} IN ('NaN', 'Infinity', '-Infinity') THEN NULL ELSE {col} END)"
    if info.pg_type in ("int2", "int4", "int8", "bool"):
        return col
    text = col if info.pg_type in TEXTUAL else f"CAST({col} AS text)"
    for step in f.cleanse:
        if step == "trim":
            text = f"regexp_replace({text}, '^\\s+|\\s+$', '', 'g')"
        elif step == "lowercase":
            text = f"lower({text})"
        elif step == "empty_to_null":
            text = f"nullif({text}, '')"
    return text


def object_sql(
    plan: RelationPlan, alias: str, naive_timezone: str, child_value: Callable[[RelationPlan], str]
) -> str:
    """The related row `alias` as a JSON object: its fields, then its children's JSON
    (`child_value`: how this read reaches them, a correlated subquery or a joined column).

    json, not jsonb: PostgreSQL prints it as it builds it, where jsonb would be built in its binary
    form and printed again. Past 50 pairs (a function takes 100 arguments) the object is merged
    from parts with jsonb's `||`, which json lacks."""
    pairs = [
        f"'{f.name.replace(chr(39), chr(39) * 2)}', {value_sql(f, alias, naive_timezone)}"
        for f in plan.fields
    ]
    pairs += [f"'{child.spec.name}', {child_value(child)}" for child in plan.children]
    if not pairs:
        return "'{}'::json"
    if len(pairs) <= _PAIRS_PER_CALL:
        return f"json_build_object({', '.join(pairs)})"
    calls = [
        "jsonb_build_object(" + ", ".join(pairs[i : i + _PAIRS_PER_CALL]) + ")"
        for i in range(0, len(pairs), _PAIRS_PER_CALL)
    ]
    return " || ".join(calls)


def array_sql(obj: str, order: str) -> str:
    """The aggregate of objects as a JSON array ordered by `order` (NULL when there is none)."""
    return f"json_agg({obj}" + (f" ORDER BY {order}" if order else "") + ")"


EMPTY_ARRAY = "'[]'::json"


def equal_sql(left_alias: str, right_alias: str, pairs: dict[str, str]) -> str:
    """{<left column>: <right column>} as an AND of equalities."""
    return " AND ".join(
        f"{left_alias}.{quote_ident(a)} = {right_alias}.{quote_ident(b)}" for a, b in pairs.items()
    )


def key_order(plan: RelationPlan, alias: str) -> str:
    return ", ".join(f"{alias}.{quote_ident(c)}" for c in plan.key)


def relation_sql(plan: RelationPlan, parent_alias: str, naive_timezone: str, depth: int = 1) -> str:
    """The relation's JSON for the parent row `parent_alias`, as a correlated subquery: an object
    or NULL (many_to_one), or an array of objects ordered by the related table's key (`[]` when
    none). What key lookups read (a few hundred rows: each subquery is an index lookup); a whole
    window reads core/sql/relation_joins.py's joins instead."""
    alias = f"__sync_r{depth}"
    relation = plan.spec
    obj = object_sql(
        plan, alias, naive_timezone, lambda child: relation_sql(child, alias, naive_timezone, depth + 1)
    )
    order = key_order(plan, alias)
    if relation.kind == "many_to_one":
        assert relation.on is not None
        # several matches (a join on a non-unique column): the first by key, the same every read
        first = f" ORDER BY {order}" if order else ""
        return (
            f"(SELECT {obj} FROM {qualified_table(plan.table.name)} AS {alias} "
            f"WHERE {equal_sql(alias, parent_alias, relation.on)}{first} LIMIT 1)"
        )
    aggregate = f"coalesce({array_sql(obj, order)}, {EMPTY_ARRAY})"
    if relation.kind == "one_to_many":
        assert relation.on is not None
        return (
            f"(SELECT {aggregate} FROM {qualified_table(plan.table.name)} AS {alias} "
            f"WHERE {equal_sql(alias, parent_alias, relation.on)})"
        )
    assert relation.through is not None and plan.through is not None
    link = f"__sync_t{depth}"
    related = f"{qualified_table(plan.table.name)} AS {alias}"
    return (
        f"(SELECT {aggregate} FROM {qualified_table(plan.through.name)} AS {link} "
        f"JOIN {related} ON {equal_sql(link, alias, relation.through.to)} "
        f"WHERE {equal_sql(link, parent_alias, relation.through.on)})"
    )


def walk(plans: Sequence[RelationPlan]) -> list[RelationPlan]:
    found: list[RelationPlan] = []
    for plan in plans:
        found.append(plan)
        found += walk(plan.children)
    return found


# --- validation: every table and column a relation names must exist ---------------------------


def relation_problems(spec: SyncSpec, root: TableInfo, tables: dict[str, TableInfo | None]) -> list[str]:
    """What does not match between the spec's relations and the database, one line each."""
    problems: list[str] = []

    def missing(table: TableInfo, columns: Sequence[str], what: str) -> None:
        absent = [c for c in columns if c not in table.names]
        if absent:
            problems.append(
                f"{what}: {table.name} has no column {', '.join(absent)} (it has {', '.join(table.names)})"
            )

    def check(relation: RelationSpec, parent: TableInfo, path: str) -> None:
        table = tables.get(relation.table)
        if table is None:
            problems.append(f"relation '{path}': table {relation.table} not found")
            return
        if relation.columns is not None:
            missing(table, relation.columns, f"relation '{path}' columns")
        if relation.on is not None:
            missing(table, list(relation.on.keys()), f"relation '{path}' on (related side)")
            missing(parent, list(relation.on.values()), f"relation '{path}' on (parent side)")
        if relation.through is not None:
            through = tables.get(relation.through.table)
            if through is None:
                problems.append(f"relation '{path}': join table {relation.through.table} not found")
            else:
                missing(
                    through,
                    [*relation.through.on.keys(), *relation.through.to.keys()],
                    f"relation '{path}' through",
                )
            missing(parent, list(relation.through.on.values()), f"relation '{path}' through.on (parent side)")
            missing(table, list(relation.through.to.values()), f"relation '{path}' through.to (related side)")
        key = relation.primary_key or list(table.primary_key)
        if not key:
            problems.append(
                f"relation '{path}': {table.name} has no PRIMARY KEY; give the relation a primary_key "
                "(it orders arrays and identifies the table's changes)"
            )
        else:
            missing(table, key, f"relation '{path}' primary_key")
        for child in relation.relations:
            check(child, table, f"{path}.{child.name}")

    for relation in spec.source.relations:
        if relation.name in root.names:
            problems.append(f"relation '{relation.name}' has the name of a column of {root.name}; rename one")
        check(relation, root, relation.name)
    known = dict(spec.source.all_relations())
    for name in spec.fields:
        if "." not in name:
            continue
        path, _, column = name.rpartition(".")
        if path not in known:
            listed = ", ".join(sorted(known)) or "none"
            problems.append(f"fields: '{name}' names no relation (relations: {listed})")
        elif (table := tables.get(known[path].table)) is not None and column not in table.names:
            problems.append(f"fields: '{name}': {table.name} has no column {column}")
    return problems


# --- lookups an index should serve -------------------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """Rows of `table` found by equality on `columns`, for the reason `why`: without an index
    whose leading columns are these, each lookup is a scan of the table."""

    table: str
    columns: tuple[str, ...]
    why: str


def index_lookups(plans: Sequence[RelationPlan], root: str) -> list[Lookup]:
    """Every equality lookup the relations make: building a document reads each relation's rows
    by the related side of `on` (the join table's `through.on`, then the related table's
    `through.to`); a drain fanning a related change out to its documents reads the other side."""
    found: list[Lookup] = []

    def walk(plan: RelationPlan, parent: str) -> None:
        relation, name = plan.spec, plan.path
        if relation.through is not None:
            through = relation.through
            found.append(
                Lookup(through.table, tuple(through.on), f"relation '{name}': documents read the join table")
            )
            found.append(
                Lookup(plan.table.name, tuple(through.to.values()), f"relation '{name}': documents read it")
            )
            found.append(
                Lookup(through.table, tuple(through.to), f"relation '{name}': a drain fans changes out")
            )
        elif relation.on:
            found.append(Lookup(plan.table.name, tuple(relation.on), f"relation '{name}': documents read it"))
            found.append(
                Lookup(parent, tuple(relation.on.values()), f"relation '{name}': a drain fans changes out")
            )
        for child in plan.children:
            walk(child, plan.table.name)

    for plan in plans:
        walk(plan, root)
    return list({(x.table, frozenset(x.columns)): x for x in found}.values())


def unserved(lookups: Sequence[Lookup], indexed: dict[str, list[tuple[str, ...]]]) -> list[Lookup]:
    """The lookups no index serves: none of the table's indexes starts with exactly their columns
    (in any order) — a longer index whose first columns are these serves them too."""
    return [
        x
        for x in lookups
        if not any(set(index[: len(x.columns)]) == set(x.columns) for index in indexed.get(x.table, []))
    ]
