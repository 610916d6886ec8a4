"""The change buffer's triggers: what each watched table records, as DDL; and the claim.

One trigger function per spec and table (never shared, so uninstalling one
table's trigger can never strand another's), marked with a comment that
`uninstall` finds it by. A trigger reads the row through `to_jsonb(NEW)` and
`->`: a column the user drops or renames later yields NULL instead of failing
the user's write. The root table records its key (a key change is a delete of
the old key); a related or join table records, for the old and the new row,
the columns that lead to its parent (`link`), and skips updates that changed
nothing the documents read.

TRUNCATE fires no row trigger, so every watched table also gets a statement-level
`AFTER TRUNCATE` trigger on the same function: it records one entry with op 'T'
(no key: which rows went is unknown), and the drain reconciles the whole spec.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sync_pipeline.core.columns import ColumnInfo
from sync_pipeline.core.fanout import BUFFER_TABLE, Watched
from sync_pipeline.core.keys import canonical_sql
from sync_pipeline.core.quoting import qualified_table, quote_ident, sql_literal
from sync_pipeline.core.sources import split_table
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.core.sql import Statement, type_name

MARKER = "sync_pipeline capture of spec"
# a following drain LISTENs here and wakes on each commit that buffered a change of its spec
# (NOTIFY is sent at commit, once per transaction and payload, and never for a rollback)
NOTIFY_CHANNEL = "sync_pipeline_changes"
TRUNCATE_OP = "T"
# pg_trigger.tgtype bit of a trigger that fires on TRUNCATE (TRIGGER_TYPE_TRUNCATE)
TRUNCATE_TYPE_BIT = 1 << 5
# the layout before per-table functions: one function per spec and schema
LEGACY_FUNCTION = "sync_pipeline_capture_{spec}"
LEGACY_TRIGGER = "sync_pipeline_{spec}"


def function_name(spec: str, table: str) -> str:
    digest = hashlib.sha1(table.encode()).hexdigest()[:8]
    return f"sync_pipeline_{spec[:40]}_{digest}"


def truncate_trigger_name(spec: str, table: str) -> str:
    """The TRUNCATE trigger's name: never the row trigger's (a table cannot hold two of one
    name, and a longer name would be cut to 63 bytes, onto it), hashed over spec and table so
    two specs sharing a long prefix cannot replace each other's on one table."""
    digest = hashlib.sha1(f"{spec}/{table}".encode()).hexdigest()[:8]
    return f"sync_pipeline_{spec[:38]}_{digest}_t"


def marker(spec: str, table: str) -> str:
    return f"{MARKER} {spec}: table {table}"


def parse_marker(comment: str | None) -> tuple[str, str] | None:
    """(spec, table) of a function's marker comment; None when it is not one of ours. Spec names
    are `[a-z][a-z0-9_]*`, so the first ': table ' ends the spec."""
    prefix = MARKER + " "
    if not comment or not comment.startswith(prefix):
        return None
    spec, found, table = comment.removeprefix(prefix).partition(": table ")
    return (spec, table) if found and spec and table else None


def legacy_spec(function: str) -> str | None:
    """The spec of a function of the earlier layout (named after the spec, no marker)."""
    prefix = LEGACY_FUNCTION.format(spec="")
    return function.removeprefix(prefix) if function.startswith(prefix) else None


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
    source = "NULL" if watched.source is None else sql_literal(watched.source)
    # the TRUNCATE branch comes first: a statement-level call has no row to read
    # SECURITY DEFINER: the application's roles write their own tables only; the buffer row is
    # written with the installer's right to it, so granting nothing more to the application
    # cannot make its writes fail. The pinned search_path keeps a definer function from resolving
    # names through a writer's schemas (every name inside is schema-qualified anyway).
    function_sql = f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
  n jsonb;
  o jsonb;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO {buffer} (spec, source, pk, op)
      VALUES ({spec_literal}, {source}, '{{}}'::jsonb, {sql_literal(TRUNCATE_OP)});
    PERFORM pg_notify({sql_literal(NOTIFY_CHANNEL)}, {spec_literal});
    RETURN NULL;
  END IF;
  n := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
  o := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;{body}
  PERFORM pg_notify({sql_literal(NOTIFY_CHANNEL)}, {spec_literal});
  RETURN NULL;
END
$body$"""
    table = qualified_table(watched.table)
    trigger = quote_ident(name)
    truncate = quote_ident(truncate_trigger_name(spec.name, watched.table))
    return [
        function_sql,
        f"COMMENT ON FUNCTION {function}() IS {sql_literal(marker(spec.name, watched.table))}",
        f"DROP TRIGGER IF EXISTS {trigger} ON {table}",
        f"CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
        f"DROP TRIGGER IF EXISTS {truncate} ON {table}",
        f"CREATE TRIGGER {truncate} AFTER TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
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


def catalog_query() -> Statement:
    """Every capture function in the database, of any spec (by marker, or the earlier layout's
    name), with each trigger that uses it: names unquoted and schema apart, so a fix can be
    written fully qualified whatever the reader's search_path."""
    return Statement(
        "SELECT n.nspname AS function_schema, p.proname AS function_name, "
        "obj_description(p.oid, 'pg_proc') AS comment, t.tgname AS trigger, "
        "tn.nspname AS table_schema, c.relname AS table_name, "
        f"(t.tgtype::int & {TRUNCATE_TYPE_BIT}) <> 0 AS on_truncate "
        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "LEFT JOIN pg_trigger t ON t.tgfoid = p.oid "
        "LEFT JOIN pg_class c ON c.oid = t.tgrelid "
        "LEFT JOIN pg_namespace tn ON tn.oid = c.relnamespace "
        "WHERE obj_description(p.oid, 'pg_proc') LIKE %(marker)s OR p.proname LIKE %(legacy)s "
        "ORDER BY n.nspname, p.proname, t.tgname",
        {"marker": f"{MARKER} %", "legacy": LEGACY_FUNCTION.format(spec="").replace("_", r"\_") + "%"},
    )


def drop_statements(
    function_schema: str, function: str, triggers: Sequence[tuple[str, str, str]]
) -> list[str]:
    """DROP TRIGGER for each (trigger, table schema, table), then DROP FUNCTION: what removes one
    capture function by hand when `uninstall-triggers` cannot (its spec is gone from the file)."""
    drops = [
        f"DROP TRIGGER IF EXISTS {quote_ident(name)} ON {quote_ident(schema)}.{quote_ident(table)};"
        for name, schema, table in triggers
    ]
    return [*drops, f"DROP FUNCTION IF EXISTS {quote_ident(function_schema)}.{quote_ident(function)}();"]


def claim_query(
    spec: SyncSpec, root_key: Sequence[ColumnInfo], limit: int, changes: str = BUFFER_TABLE
) -> Statement:
    """The spec's oldest entries, locked (FOR UPDATE SKIP LOCKED: two drains never take the same
    one): id, source, op and, for the root's entries, the canonical texts of the document key.
    `changes`: the buffer, or the logical drain's table of decoded changes (same columns)."""
    texts = ", ".join(
        "CASE WHEN b.source IS NULL THEN "
        + canonical_sql(
            c, f"CAST(b.pk ->> {sql_literal(c.name)} AS {type_name(c.pg_type)})", spec.naive_timezone
        )
        + f" END AS {quote_ident('__sync_k' + str(i))}"
        for i, c in enumerate(root_key)
    )
    return Statement(
        f"SELECT b.id, b.source, b.op, {texts} FROM {changes} AS b WHERE b.spec = %(spec)s "
        f"ORDER BY b.id LIMIT {int(limit)} FOR UPDATE SKIP LOCKED",
        {"spec": spec.name},
    )
