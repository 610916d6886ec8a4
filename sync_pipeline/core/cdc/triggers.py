"""The change buffer's triggers: what each watched table records, as DDL; and the claim.

One trigger function per spec and table (never shared, so uninstalling one
table's trigger can never strand another's), marked with a comment that
`uninstall` finds it by. A trigger reads only the columns the spec needs, by
name (trigger_function_sql says why, line by line). The root table records its
key (a key change is a delete of the old key); a related or join table records,
for the old and the new row, the columns that lead to its parent (`link`), and
skips updates that changed nothing the documents read.

TRUNCATE fires no row trigger, so every watched table also gets a statement-level
`AFTER TRUNCATE` trigger on the same function: it records one entry with op 'T'
(no key: which rows went is unknown), and the drain reconciles the whole spec.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sync_pipeline.core.cdc.fanout import BUFFER_TABLE, Watched
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.spec.sources import split_table
from sync_pipeline.core.sql.columns import ColumnInfo
from sync_pipeline.core.sql.keys import canonical_sql
from sync_pipeline.core.sql.quoting import qualified_table, quote_ident, sql_literal
from sync_pipeline.core.sql.statements import Statement, type_name

MARKER = "sync_pipeline capture of spec"
# a following drain LISTENs here and wakes on each commit that buffered a change of its spec
# (NOTIFY is sent at commit, once per transaction and payload, and never for a rollback)
NOTIFY_CHANNEL = "sync_pipeline_changes"
TRUNCATE_OP = "T"
# the key of `link` in an entry a trigger wrote because it could not read the row (op 'T')
CAPTURE_ERROR = "capture_error"
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


@dataclass(frozen=True)
class CapturedTable:
    """The table a capture function is installed on, as the catalog names it at install time:
    the function records nothing when any other table fires it."""

    schema: str
    name: str
    partitioned: bool = False  # a row trigger on a partitioned table fires with a partition's TG_RELID


def _encoded(row: str, columns: Sequence[str]) -> str:
    """The columns' values as one JSON object, each column read by name (never the whole row: a
    column the spec does not read can hold anything, and converting it must not be our business)."""
    pairs = ", ".join(f"{sql_literal(c)}, {row}.{quote_ident(c)}" for c in columns)
    return f"jsonb_build_object({pairs})"


def _as_text(row: str, columns: Sequence[str]) -> str:
    """The columns as a row of their text forms: comparable for every type (json has no `=`), and
    a conversion that cannot fail."""
    return "ROW(" + ", ".join(f"{row}.{quote_ident(c)}::text" for c in columns) + ")"


def _guard(table: CapturedTable) -> str:
    """True when the function was fired by a table it was not installed on. EXECUTE is revoked
    from PUBLIC, so no other role can attach it; this is the second lock on the same door, and it
    comes before anything reads the row (no value of a foreign row is ever converted with the
    owner's rights)."""
    if table.partitioned:
        parent = f"to_regclass({sql_literal(qualified_table(f'{table.schema}.{table.name}'))})"
        return f"{parent} IS NULL OR {parent} NOT IN (SELECT relid FROM pg_partition_ancestors(TG_RELID))"
    return f"TG_TABLE_SCHEMA <> {sql_literal(table.schema)} OR TG_TABLE_NAME <> {sql_literal(table.name)}"


def _dollar_quoted(body: str) -> str:
    tag = "$sync_pipeline$"
    if tag in body:
        raise ValueError("a table or column name holds $sync_pipeline$: it cannot be captured")
    return f"{tag}{body}{tag}"


def trigger_function_sql(spec: SyncSpec, watched: Watched, table: CapturedTable, notify: bool) -> str:
    """CREATE OR REPLACE FUNCTION for one watched table (identifiers quoted, values literal).

    Why it is written this way:
    - SECURITY DEFINER: the application's roles write their own tables only; the buffer row is
      written with the installer's right to it, so granting nothing more to the application
      cannot make its writes fail. The pinned search_path keeps a definer function from
      resolving names through a writer's schemas (every name inside is qualified anyway).
    - Only the columns the spec needs are read, by name, and compared as text: a value the spec
      never reads (a `json` with \\u0000, a type whose cast to json is somebody's code) is never
      converted. Reading them sits in its own block: a column renamed or dropped since install,
      or a key value JSON cannot hold, becomes a buffered entry that makes the drain reconcile
      the whole spec (op 'T', the error in `link`), never an error in the application's write.
      That block writes nothing, so it costs a subtransaction but never a subtransaction id.
    - NOTIFY is opt-in (`buffer_sensor.notify`): it takes a database-wide lock at every commit
      that sent one (commits of all writing sessions queue on it) and makes PREPARE TRANSACTION
      fail; a following drain polls the buffer instead (docs/benchmarks.md, "NOTIFY").
    """
    schema, _ = split_table(watched.table)
    function = _function_ref(schema, function_name(spec.name, watched.table))
    spec_literal = sql_literal(spec.name)
    source = "NULL" if watched.source is None else sql_literal(watched.source)
    signal = f"\n  PERFORM pg_notify({sql_literal(NOTIFY_CHANNEL)}, {spec_literal});" if notify else ""
    insert = f"INSERT INTO {BUFFER_TABLE} (spec, source, pk, op, link) VALUES ({spec_literal}, {source}, "
    if watched.source is None:
        read = f"""
    IF TG_OP <> 'INSERT' THEN old_key := {_encoded("OLD", watched.own_key)}; END IF;
    IF TG_OP <> 'DELETE' THEN new_key := {_encoded("NEW", watched.own_key)}; END IF;"""
        record = f"""
  IF old_key IS NOT NULL AND old_key IS DISTINCT FROM new_key THEN
    {insert}old_key, 'D', NULL);  -- a delete, or a key change: the old document goes
  END IF;
  IF new_key IS NOT NULL THEN
    {insert}new_key, left(TG_OP, 1), NULL);
  END IF;"""
    else:
        unchanged = (
            f"{_as_text('OLD', watched.required)} IS NOT DISTINCT FROM {_as_text('NEW', watched.required)}"
        )
        skip = (
            f"""
    IF TG_OP = 'UPDATE' AND {unchanged} THEN
      RETURN NULL;  -- nothing a document reads changed
    END IF;"""
            if watched.skip_unread_updates
            else ""
        )
        read = f"""{skip}
    IF TG_OP <> 'INSERT' THEN
      old_key := {_encoded("OLD", watched.link)};
      own := {_encoded("OLD", watched.own_key)};
    END IF;
    IF TG_OP <> 'DELETE' THEN
      new_key := {_encoded("NEW", watched.link)};
      own := {_encoded("NEW", watched.own_key)};
    END IF;"""
        record = f"""
  {insert}own, left(TG_OP, 1), jsonb_build_array(old_key, new_key));"""
    body = f"""
DECLARE
  old_key jsonb;
  new_key jsonb;
  own jsonb;
BEGIN
  IF {_guard(table)} THEN
    RAISE WARNING USING MESSAGE = {sql_literal(f"sync_pipeline: capture of {table.schema}.{table.name} ")}
      || 'fired by ' || TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME || ': nothing recorded';
    RETURN NULL;
  END IF;
  IF TG_OP = 'TRUNCATE' THEN  -- a statement-level call has no row to read
    {insert}'{{}}'::jsonb, {sql_literal(TRUNCATE_OP)}, NULL);{signal}
    RETURN NULL;
  END IF;
  BEGIN{read}
  EXCEPTION WHEN OTHERS THEN
    {insert}'{{}}'::jsonb, {sql_literal(TRUNCATE_OP)},
      jsonb_build_object({sql_literal(CAPTURE_ERROR)}, SQLSTATE || ': ' || SQLERRM));{signal}
    RETURN NULL;
  END;{record}{signal}
  RETURN NULL;
END
"""
    return (
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql\n"
        f"SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {_dollar_quoted(body)}"
    )


def _function_ref(schema: str | None, name: str) -> str:
    return ".".join(quote_ident(p) for p in (schema, name) if p)


def function_ref(spec: SyncSpec, watched: Watched) -> str:
    """The watched table's capture function, quoted (schema-qualified as its table is)."""
    schema, _ = split_table(watched.table)
    return _function_ref(schema, function_name(spec.name, watched.table))


def trigger_sql(spec: SyncSpec, watched: Watched, or_replace: bool) -> list[str]:
    """The row trigger and the TRUNCATE trigger of one watched table. CREATE OR REPLACE TRIGGER
    (PostgreSQL 14+) takes the table's SHARE ROW EXCLUSIVE lock once; without it, a DROP and a
    CREATE, whose ACCESS EXCLUSIVE lock also blocks readers for the moment it is held."""
    table = qualified_table(watched.table)
    function = function_ref(spec, watched)
    statements = []
    for name, events, level in (
        (function_name(spec.name, watched.table), "INSERT OR UPDATE OR DELETE", "ROW"),
        (truncate_trigger_name(spec.name, watched.table), "TRUNCATE", "STATEMENT"),
    ):
        trigger = quote_ident(name)
        create = "CREATE OR REPLACE TRIGGER" if or_replace else "CREATE TRIGGER"
        create += f" {trigger} AFTER {events} ON {table} FOR EACH {level} EXECUTE FUNCTION {function}()"
        if not or_replace:
            statements.append(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        statements.append(create)
    return statements + enable_always_sql(spec, watched)


def enable_always_sql(spec: SyncSpec, watched: Watched) -> list[str]:
    """Both triggers fire in `session_replication_role = replica` sessions too (logical-replication
    subscribers, bulk loaders): a change is a change whoever writes it. Only an explicit DISABLE
    TRIGGER stops them then, and `doctor` and the buffer sensor report that."""
    table = qualified_table(watched.table)
    return [
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {quote_ident(name)}"
        for name in (function_name(spec.name, watched.table), truncate_trigger_name(spec.name, watched.table))
    ]


def partition_truncate_sql(spec: SyncSpec, watched: Watched, partition: str, or_replace: bool) -> list[str]:
    """The TRUNCATE trigger of a partitioned table's partition (any level). PostgreSQL clones row
    triggers onto partitions, but a `TRUNCATE one_partition` fires no statement trigger of its
    parent: each partition gets its own, on the parent's function (whose guard accepts a
    partition of its table), so it records the same 'T' entry a TRUNCATE of the parent does."""
    trigger = quote_ident(truncate_trigger_name(spec.name, watched.table))
    table = qualified_table(partition)
    create = "CREATE OR REPLACE TRIGGER" if or_replace else "CREATE TRIGGER"
    create += f" {trigger} AFTER TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION "
    create += f"{function_ref(spec, watched)}()"
    always = partition_enable_always_sql(spec, watched, partition)
    return (
        [create, always] if or_replace else [f"DROP TRIGGER IF EXISTS {trigger} ON {table}", create, always]
    )


def partition_enable_always_sql(spec: SyncSpec, watched: Watched, partition: str) -> str:
    """A partition's own TRUNCATE trigger fires in replica-role sessions too (enable_always_sql)."""
    trigger = quote_ident(truncate_trigger_name(spec.name, watched.table))
    return f"ALTER TABLE {qualified_table(partition)} ENABLE ALWAYS TRIGGER {trigger}"


def function_privileges_sql(spec: SyncSpec, watched: Watched, grantees: Sequence[str]) -> list[str]:
    """The marker comment, and EXECUTE taken from PUBLIC and from every role it was granted to
    (default privileges may grant it): triggers fire whatever EXECUTE says, and a role without it
    cannot attach the function to a table of its own."""
    function = function_ref(spec, watched)
    return [
        f"COMMENT ON FUNCTION {function}() IS {sql_literal(marker(spec.name, watched.table))}",
        f"REVOKE ALL ON FUNCTION {function}() FROM PUBLIC",
        *(f"REVOKE ALL ON FUNCTION {function}() FROM {quote_ident(g)}" for g in grantees),
    ]


def installed_query(spec: SyncSpec) -> Statement:
    """Every trigger function of the spec (and the triggers that use it), found by its marker or
    by the earlier layout's name: what `uninstall` removes, whatever the spec lists today. Not
    the row triggers PostgreSQL cloned onto a partitioned table's partitions: they go with the
    parent's, and dropping one alone is refused."""
    return Statement(
        "SELECT CAST(p.oid AS regprocedure)::text AS function, t.tgname AS trigger, "
        "CAST(t.tgrelid AS regclass)::text AS relation "
        "FROM pg_proc p LEFT JOIN pg_trigger t ON t.tgfoid = p.oid AND NOT EXISTS (SELECT 1 "
        "FROM pg_depend d WHERE d.classid = 'pg_trigger'::regclass AND d.objid = t.oid "
        "AND d.refclassid = 'pg_trigger'::regclass AND d.deptype = 'P') "
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


def _key_texts(spec: SyncSpec, root_key: Sequence[ColumnInfo], pk: str) -> list[str]:
    """SQL for the canonical texts (core/sql/keys.py) of the key an entry's `pk` JSON records: the
    triggers' to_jsonb values and pgoutput's texts both read back through their column's type."""
    return [
        canonical_sql(
            c, f"CAST({pk} ->> {sql_literal(c.name)} AS {type_name(c.pg_type)})", spec.naive_timezone
        )
        for c in root_key
    ]


def canonical_keys_query(spec: SyncSpec, root_key: Sequence[ColumnInfo], pks: list[dict]) -> Statement:
    """The canonical key texts of root entries' `pk`s, in their order: what a claim of them would
    return, for the logical drain's entries that are applied without being claimed."""
    texts = ", ".join(_key_texts(spec, root_key, "e.pk"))
    return Statement(
        f"SELECT {texts} FROM jsonb_array_elements(CAST(%(pks)s AS jsonb)) WITH ORDINALITY AS e(pk, n) "
        "ORDER BY e.n",
        {"pks": json.dumps(pks, default=str)},
    )


def claim_query(
    spec: SyncSpec, root_key: Sequence[ColumnInfo], limit: int, changes: str = BUFFER_TABLE
) -> Statement:
    """The spec's oldest entries, locked (FOR UPDATE SKIP LOCKED: two drains never take the same
    one): id, source, op and, for the root's entries, the canonical texts of the document key.
    `changes`: the buffer, or the logical drain's table of decoded changes (same columns)."""
    texts = ", ".join(
        f"CASE WHEN b.source IS NULL THEN {text} END AS {quote_ident('__sync_k' + str(i))}"
        for i, text in enumerate(_key_texts(spec, root_key, "b.pk"))
    )
    # last, so the key texts stay where the drain slices them
    error = (
        f", CASE WHEN b.op = {sql_literal(TRUNCATE_OP)} THEN b.link ->> {sql_literal(CAPTURE_ERROR)} END"
        f" AS {CAPTURE_ERROR}"
    )
    return Statement(
        f"SELECT b.id, b.source, b.op, {texts}{error} FROM {changes} AS b WHERE b.spec = %(spec)s "
        f"ORDER BY b.id LIMIT {int(limit)} FOR UPDATE SKIP LOCKED",
        {"spec": spec.name},
    )
