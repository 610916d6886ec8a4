"""The change buffer's triggers: what each watched table records, as DDL; and the claim.

One trigger function per spec and table (never shared, so uninstalling one
table's trigger can never strand another's), marked with a comment that
`uninstall` finds it by. A trigger reads the row through `to_jsonb(NEW)` and
`->`: a column the user drops or renames later yields NULL instead of failing
the user's write. The root table records its key (a key change is a delete of
the old key); a related or join table records, for the old and the new row,
the columns that lead to its parent (`link`), and skips updates that changed
nothing the documents read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sync_pipeline.core.columns import ColumnInfo
from sync_pipeline.core.fanout import BUFFER_TABLE, Watched
from sync_pipeline.core.keys import canonical_sql
from sync_pipeline.core.sources import split_table
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.core.sql import Statement, qualified_table, quote_ident, sql_literal, type_name

MARKER = "sync_pipeline capture of spec"
# the layout before per-table functions: one function per spec and schema
LEGACY_FUNCTION = "sync_pipeline_capture_{spec}"
LEGACY_TRIGGER = "sync_pipeline_{spec}"


def function_name(spec: str, table: str) -> str:
    digest = hashlib.sha1(table.encode()).hexdigest()[:8]
    return f"sync_pipeline_{spec[:40]}_{digest}"


def marker(spec: str, table: str) -> str:
    return f"{MARKER} {spec}: table {table}"


def _object(row: str, columns: Sequence[str]) -> str:
    pairs = ", ".join(f"{sql_literal(c)}, {row} -> {sql_literal(c)}" for c in columns)
    return f"jsonb_build_object({pairs})"


def trigger_ddl(spec: SyncSpec, watched: Watched) -> list[str]:
    """CREATE FUNCTION, COMMENT, DROP/CREATE TRIGGER for one watched table; identifiers quoted."""
    schema, _ = split_table(watched.table)
    name = function_name(spec.name, watched.table)
    function = ".".join(quote_ident(p) for p in (schema, name) if p)
    buffer = BUFFER_TABLE
    spec_literal = sql_literal(spec.name)
    if watched.source is None:
        old_key, new_key = _object("o", watched.own_key), _object("n", watched.own_key)
        body = f"""
  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND {old_key} IS DISTINCT FROM {new_key}) THEN
    INSERT INTO {buffer} (spec, pk, op) VALUES ({spec_literal}, {old_key}, 'D');
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO {buffer} (spec, pk, op) VALUES ({spec_literal}, {new_key}, left(TG_OP, 1));
  END IF;"""
    else:
        read_old, read_new = _object("o", watched.required), _object("n", watched.required)
        link = f"jsonb_build_array({_object('o', watched.link)}, {_object('n', watched.link)})"
        old_own, new_own = _object("o", watched.own_key), _object("n", watched.own_key)
        own = f"CASE WHEN n IS NULL THEN {old_own} ELSE {new_own} END"
        skip = (
            f"""
  IF TG_OP = 'UPDATE' AND {read_old} IS NOT DISTINCT FROM {read_new} THEN
    RETURN NULL;  -- nothing a document reads changed
  END IF;"""
            if watched.skip_unread_updates
            else ""
        )
        body = f"""{skip}
  INSERT INTO {buffer} (spec, source, pk, op, link)
    VALUES ({spec_literal}, {sql_literal(watched.source)}, {own}, left(TG_OP, 1), {link});"""
    function_sql = f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
  n jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
  o jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
BEGIN{body}
  RETURN NULL;
END
$body$"""
    table = qualified_table(watched.table)
    trigger = quote_ident(name)
    return [
        function_sql,
        f"COMMENT ON FUNCTION {function}() IS {sql_literal(marker(spec.name, watched.table))}",
        f"DROP TRIGGER IF EXISTS {trigger} ON {table}",
        f"CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
    ]


def installed_query(spec: SyncSpec) -> Statement:
    """Every trigger function of the spec (and the triggers that use it), found by its marker or
    by the earlier layout's name: what `uninstall` removes, whatever the spec lists today."""
    return Statement(
        "SELECT CAST(p.oid AS regprocedure)::text AS function, t.tgname AS trigger, "
        "CAST(t.tgrelid AS regclass)::text AS relation "
        "FROM pg_proc p LEFT JOIN pg_trigger t ON t.tgfoid = p.oid "
        "WHERE obj_description(p.oid, 'pg_proc') LIKE %(marker)s OR p.proname = %(legacy)s",
        {
            "marker": f"{MARKER} {spec.name}: %",
            "legacy": LEGACY_FUNCTION.format(spec=spec.name),
        },
    )


def claim_query(spec: SyncSpec, root_key: Sequence[ColumnInfo], limit: int) -> Statement:
    """The spec's oldest entries, locked (FOR UPDATE SKIP LOCKED: two drains never take the same
    one): id, source, op and, for the root's entries, the canonical texts of the document key."""
    texts = ", ".join(
        "CASE WHEN b.source IS NULL THEN "
        + canonical_sql(
            c, f"CAST(b.pk ->> {sql_literal(c.name)} AS {type_name(c.pg_type)})", spec.naive_timezone
        )
        + f" END AS {quote_ident('__sync_k' + str(i))}"
        for i, c in enumerate(root_key)
    )
    return Statement(
        f"SELECT b.id, b.source, b.op, {texts} FROM {BUFFER_TABLE} AS b WHERE b.spec = %(spec)s "
        f"ORDER BY b.id LIMIT {int(limit)} FOR UPDATE SKIP LOCKED",
        {"spec": spec.name},
    )
