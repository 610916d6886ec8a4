"""From a changed row of any watched table to the documents it feeds.

Every table a document is built from is watched (core/cdc/triggers decides what
each trigger records): the root table records its own key; a related table
records, for the old and the new row, the values of the columns that join it
to its parent (`link`); a join table likewise. `fanned_out_rows` turns claimed buffer
entries of one source into the current rows of the affected documents with one
SQL statement that walks the relation chain up to the root (set-wise: no key
comes back to Python first), read through a cursor in batches of bounded size,
so a rename that touches a million documents never holds a million rows.
A `query` spec's change table goes through its `roots:` query instead
(`query_root_keys`: keys, in keyset pages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.columns import ColumnInfo
from sync_pipeline.core.sql.keys import canonical_sql
from sync_pipeline.core.sql.quoting import qualified_table, quote_ident, sql_literal
from sync_pipeline.core.sql.relations import RelationPlan, TableInfo, walk
from sync_pipeline.core.sql.statements import ROOT_ALIAS, Statement, rows_where, type_name

BUFFER_TABLE = "public.sync_pipeline_buffer"
THROUGH_SUFFIX = "#through"


@dataclass(frozen=True)
class Watched:
    """A table whose changes reach the spec's documents, and what its trigger records."""

    table: str
    source: str | None  # None: the root table (entries carry document keys)
    own_key: tuple[str, ...]  # the table's own key, recorded as `pk`
    link: tuple[str, ...]  # the columns that lead to the parent, recorded old and new as `link`
    required: tuple[str, ...]  # every column the spec reads or joins on: checked before install
    # an update that changed none of `required` is not recorded (not for `roots:` tables, where
    # what the user's query reads is unknown)
    skip_unread_updates: bool = True


def _child_side(plan: RelationPlan) -> list[str]:
    """The related table's columns its parent (or join table) matches on."""
    relation = plan.spec
    if relation.kind == "many_to_many":
        assert relation.through is not None
        return list(relation.through.to.values())
    assert relation.on is not None
    return list(relation.on.keys())


def watched_tables(spec: SyncSpec, root_key: Sequence[str], plans: Sequence[RelationPlan]) -> list[Watched]:
    """The root and every related and join table of a `table` spec."""
    source = spec.source
    assert source.table is not None
    own_columns = [*root_key, source.updated_at, *([source.soft_delete] if source.soft_delete else [])]
    for plan in plans:  # the parent side of the first level's joins lives on the root
        own_columns += _parent_side(plan)
    found = [Watched(source.table, None, tuple(root_key), (), tuple(dict.fromkeys(own_columns)))]
    for plan in walk(plans):
        columns = [f.column.name for f in plan.fields] + _child_side(plan) + list(plan.key)
        for child in plan.children:
            columns += _parent_side(child)
        found.append(
            Watched(
                plan.table.name, plan.path, plan.key, tuple(_child_side(plan)), tuple(dict.fromkeys(columns))
            )
        )
        if plan.spec.through is not None:
            through = plan.spec.through
            link = tuple(through.on.keys())
            found.append(
                Watched(
                    through.table,
                    plan.path + THROUGH_SUFFIX,
                    tuple(plan.through.primary_key) if plan.through else (),
                    link,
                    tuple(dict.fromkeys([*link, *through.to.keys()])),
                )
            )
    return found


def _parent_side(plan: RelationPlan) -> list[str]:
    """The parent's columns a relation joins on."""
    relation = plan.spec
    if relation.kind == "many_to_many":
        assert relation.through is not None
        return list(relation.through.on.values())
    assert relation.on is not None
    return list(relation.on.values())


def _changed_values(columns: Sequence[ColumnInfo], changes: str = BUFFER_TABLE) -> str:
    """The old and new link values of the claimed entries, typed as the columns they come from
    (`changes`: the buffer, or the logical drain's table of decoded changes)."""
    values = ", ".join(
        f"CAST(__sync_l.value ->> {sql_literal(c.name)} AS {type_name(c.pg_type)})" for c in columns
    )
    return (
        f"SELECT {values} FROM {changes} AS __sync_b "
        "CROSS JOIN LATERAL jsonb_array_elements(__sync_b.link) AS __sync_l "
        # typed, as in io/buffer.remove: bigint ids against psycopg's integer[] are 5x slower
        "WHERE __sync_b.id = ANY(CAST(%(entries)s AS bigint[])) AND jsonb_typeof(__sync_l.value) = 'object'"
    )


def _tuple(alias: str, columns: Sequence[str]) -> str:
    return "(" + ", ".join(f"{alias}.{quote_ident(c)}" for c in columns) + ")"


def _hop(table: str, alias: str, match: Sequence[str], out: Sequence[str], inner: str) -> str:
    """Rows of `table` whose `match` columns are among `inner`'s values, as their `out` columns."""
    outs = ", ".join(f"{alias}.{quote_ident(c)}" for c in out)
    return f"SELECT {outs} FROM {qualified_table(table)} AS {alias} WHERE {_tuple(alias, match)} IN ({inner})"


def _chain(plans: Sequence[RelationPlan], path: str) -> list[RelationPlan]:
    """The relations from the root's child down to the one at `path`."""
    chain: list[RelationPlan] = []
    level = list(plans)
    for name in path.split("."):
        node = next(p for p in level if p.spec.name == name)
        chain.append(node)
        level = list(node.children)
    return chain


def _to_parent(node: RelationPlan, inner: str, alias: str) -> tuple[str, list[str]]:
    """From values of the node's child-side columns to values of its parent's matching columns:
    the same values for an `on` join, a hop through the join table for many_to_many."""
    relation = node.spec
    if relation.kind != "many_to_many":
        assert relation.on is not None
        return inner, list(relation.on.values())
    assert relation.through is not None
    through = relation.through
    hop = _hop(through.table, alias, list(through.to.keys()), list(through.on.keys()), inner)
    return hop, list(through.on.values())


def parents_of(
    plans: Sequence[RelationPlan], source: str, changes: str = BUFFER_TABLE
) -> tuple[str, list[str]]:
    """SQL yielding, for the claimed entries of `source`, the values of the root's columns that
    the first relation of the chain joins on; and those columns."""
    chain = _chain(plans, source.removesuffix(THROUGH_SUFFIX))
    node = chain[-1]
    if source.endswith(THROUGH_SUFFIX):
        assert node.spec.through is not None and node.through is not None
        link = list(node.spec.through.on.keys())
        inner = _changed_values([node.through.column(c) for c in link], changes)
        match = list(node.spec.through.on.values())
    else:
        inner = _changed_values([node.table.column(c) for c in _child_side(node)], changes)
        inner, match = _to_parent(node, inner, f"__sync_j{len(chain)}")
    for depth in range(len(chain) - 1, 0, -1):
        parent = chain[depth - 1]  # a relation row matching what was found below it
        inner = _hop(parent.table.name, f"__sync_h{depth}", match, _child_side(parent), inner)
        inner, match = _to_parent(parent, inner, f"__sync_j{depth}")
    return inner, match


def fanned_out_rows(
    spec: SyncSpec,
    root_columns: Sequence[ColumnInfo],
    plans: Sequence[RelationPlan],
    source: str,
    entries: Sequence[int],
    changes: str = BUFFER_TABLE,
) -> Statement:
    """The current rows (as a window read selects them, relations and version included) of every
    document that the claimed `entries` of `source` feed, in no order: a drain reads it through a
    cursor, batch by batch, in the claim's snapshot."""
    inner, match = parents_of(plans, source, changes)
    condition = Statement(f"{_tuple(ROOT_ALIAS, match)} IN ({inner})", {"entries": list(entries)})
    return rows_where(spec, root_columns, plans, condition)


def query_root_keys(
    spec: SyncSpec,
    root_columns: Sequence[ColumnInfo],
    roots_sql: str,
    changed: TableInfo,
    entries: Sequence[int],
    after: Sequence[Any] | None,
    limit: int,
    changes: str = BUFFER_TABLE,
) -> Statement:
    """One keyset page of the keys of the documents that the claimed `entries` of a `query` spec's
    change table feed, found by its `roots:` query, whose :keys are the changed rows' own keys
    (old and new): the root key columns as they are (for the next page's `after`), then their
    canonical texts."""
    info = {c.name: c for c in root_columns}
    key = spec.source.primary_key
    keys = _changed_values([changed.column(c) for c in changed.primary_key[:1]], changes)
    # the user's own % doubled for psycopg first, then :keys becomes the changed rows' keys
    roots = roots_sql.replace("%", "%%").replace(":keys", f"ARRAY({keys})")
    alias = "__sync_q"
    typed = [f"{alias}.{quote_ident(c)}" for c in key]
    texts = [canonical_sql(info[c], f"{alias}.{quote_ident(c)}", spec.naive_timezone) for c in key]
    params: dict[str, Any] = {"entries": list(entries)}
    where = ""
    if after is not None:
        for i, value in enumerate(after):
            params[f"after_{i}"] = value
        where = f" WHERE ({', '.join(typed)}) > ({', '.join(f'%(after_{i})s' for i in range(len(after)))})"
    sql = (
        f"SELECT DISTINCT {', '.join(typed)}, {', '.join(texts)} FROM ({roots}) AS {alias}{where} "
        f"ORDER BY {', '.join(typed)} LIMIT {int(limit)}"
    )
    return Statement(sql, params)
