"""Relations of a whole window as pre-aggregated joins: one pass over each related table.

A correlated subquery (core/sql/relations.relation_sql) runs once per root row: for
a window of a million rows, a million index lookups per relation, each building
its JSON alone. Here each relation is instead one derived table, joined to its
parent: the related rows of the window's parents, grouped by the join columns
into their array (one_to_many, many_to_many through the join table) or kept one
per join value, the first by key (many_to_one), so PostgreSQL can hash or merge
join and aggregate in bulk. Nested relations are joined the same way inside
their parent's derived table, at any depth.

The related rows read are those of the window's parents: `(join columns) IN
(the parent rows' columns)`, the parent rows being, level by level, the rows the
window reads (no filter for an unbounded window). Still one statement, so one
snapshot. The documents equal the correlated form's: the same objects
(core/sql/relations.object_sql), the same order, `[]` and NULL where nothing matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import count

from sync_pipeline.core.sql.quoting import qualified_table, quote_ident
from sync_pipeline.core.sql.relations import (
    EMPTY_ARRAY,
    RelationPlan,
    array_sql,
    equal_sql,
    key_order,
    object_sql,
)

VALUE = "__sync_v"


@dataclass(frozen=True)
class Rows:
    """The rows of a table a read reaches: `FROM <table> AS <alias> [WHERE …]`, or every row
    (`where` None)."""

    table: str
    alias: str
    where: str | None = None

    def select(self, columns: Sequence[str]) -> str:
        listed = ", ".join(f"{self.alias}.{quote_ident(c)}" for c in columns)
        where = f" WHERE {self.where}" if self.where else ""
        return f"SELECT {listed} FROM {qualified_table(self.table)} AS {self.alias}{where}"


@dataclass(frozen=True)
class Joined:
    """A relation as a joined derived table: `join` goes into the parent's FROM, `value` is
    the relation's JSON for the parent row."""

    join: str
    value: str


def _join_names(columns: Sequence[str]) -> list[str]:
    return [f"__sync_j{i}" for i in range(len(columns))]


def _within(alias: str, columns: Sequence[str], parents: Rows | None, parent_columns: Sequence[str]) -> str:
    """`alias`'s rows whose `columns` match a parent row the read reaches; '' for every row."""
    if parents is None or parents.where is None:
        return ""  # every parent row: no filter (a row matching none is left out by the join)
    mine = ", ".join(f"{alias}.{quote_ident(c)}" for c in columns)
    return f"({mine}) IN ({parents.select(parent_columns)})"


def _is_unique(plan: RelationPlan, columns: Sequence[str]) -> bool:
    """The join columns hold the related table's primary key: at most one row per value."""
    key = plan.table.primary_key
    return bool(key) and set(key) <= set(columns)


def joined(
    plan: RelationPlan,
    parent_alias: str,
    parents: Rows | None,
    naive_timezone: str,
    numbers: count[int] | None = None,
) -> Joined:
    """The relation as a LEFT JOIN onto the parent row `parent_alias`; `parents`: the parent
    rows the read reaches (None or no `where`: all of them)."""
    numbers = numbers if numbers is not None else count(1)
    n = next(numbers)
    alias, agg = f"__sync_x{n}", f"__sync_a{n}"
    relation = plan.spec
    table = qualified_table(plan.table.name)
    if relation.through is not None:
        assert plan.through is not None
        link, through = f"__sync_l{n}", relation.through
        on = through.on  # {join table column: parent column}
        filtered = _within(link, list(on), parents, list(on.values()))
        joined_to = (
            f"{qualified_table(plan.through.name)} AS {link} "
            f"JOIN {table} AS {alias} ON {equal_sql(link, alias, through.to)}"
        )
        group = [f"{link}.{quote_ident(c)}" for c in on]
        links = Rows(plan.through.name, f"__sync_f{n}")
        links = Rows(
            links.table, links.alias, _within(links.alias, list(on), parents, list(on.values())) or None
        )
        reached = Rows(plan.table.name, f"__sync_g{n}")
        where = _within(reached.alias, list(through.to.values()), links, list(through.to))
    else:
        assert relation.on is not None
        on = relation.on  # {related column: parent column}
        filtered = _within(alias, list(on), parents, list(on.values()))
        joined_to = f"{table} AS {alias}"
        group = [f"{alias}.{quote_ident(c)}" for c in on]
        reached = Rows(plan.table.name, f"__sync_g{n}")
        where = _within(reached.alias, list(on), parents, list(on.values()))
    # the related rows this read reaches: the parents of the nested relations' rows
    reached = Rows(reached.table, reached.alias, where or None)
    children = [joined(child, alias, reached, naive_timezone, numbers) for child in plan.children]
    by_child = {id(child): j.value for child, j in zip(plan.children, children, strict=True)}
    obj = object_sql(plan, alias, naive_timezone, lambda child: by_child[id(child)])
    names = _join_names(group)
    outputs = ", ".join(f"{g} AS {name}" for g, name in zip(group, names, strict=True))
    rows = " ".join([joined_to, *(j.join for j in children)]) + (f" WHERE {filtered}" if filtered else "")
    order = key_order(plan, alias)
    if relation.kind != "many_to_one":
        derived = (
            f"SELECT {outputs}, {array_sql(obj, order)} AS {VALUE} FROM {rows} GROUP BY {', '.join(group)}"
        )
        value = f"coalesce({agg}.{VALUE}, {EMPTY_ARRAY})"
    elif _is_unique(plan, list(on)):
        derived, value = f"SELECT {outputs}, {obj} AS {VALUE} FROM {rows}", f"{agg}.{VALUE}"
    else:  # several rows per join value: the first by key, as the correlated form's LIMIT 1
        first = ", ".join([*group, *([order] if order else [])])
        distinct = f"DISTINCT ON ({', '.join(group)})"
        derived = f"SELECT {distinct} {outputs}, {obj} AS {VALUE} FROM {rows} ORDER BY {first}"
        value = f"{agg}.{VALUE}"
    condition = " AND ".join(
        f"{agg}.{name} = {parent_alias}.{quote_ident(column)}"
        for name, column in zip(names, on.values(), strict=True)
    )
    return Joined(f"LEFT JOIN ({derived}) AS {agg} ON {condition}", value)
