"""The least privilege a spec needs, as statements an administrator can apply as they are.

Elasticsearch: one role, index privileges on the spec's alias and its versioned indexes only
(`<index>` and `<index>_v<digits>`, as a regular expression: `<index>_v*` would also cover
`<index>_vendors`), and `monitor` on the cluster for the health check every command starts
with. PostgreSQL: SELECT on the tables the documents read, what drains need on the change
buffer and what refusals need on the dead-letter table, TEMP and REPLICATION for a logical
drain, and where Dagster keeps its run history; creating the capture is a separate step for the
tables' owner, run once. Anything that shows more than the spec needs (pg_read_all_stats) is
printed only when asked for, with what it exposes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from sync_pipeline.core.cdc.fanout import BUFFER_TABLE
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.quoting import qualified_table, quote_ident

DEAD_LETTER_TABLE = "public.sync_pipeline_dead_letters"
PARTITION_SETS_TABLE = "public.sync_pipeline_partition_sets"
# manage: create the index with its alias, put mappings and settings (refresh off during a load),
# refresh, swap aliases and delete the old index in a rebuild; write: bulk index and delete;
# read: verify and search
INDEX_PRIVILEGES = ("manage", "read", "write")
CLUSTER_PRIVILEGES = ("monitor",)


def versions_pattern(alias: str) -> str:
    """The alias's versioned indexes and nothing else, as an index-privilege regular expression
    (Lucene syntax, between slashes; every character an index name may hold that the syntax
    reserves is escaped)."""
    return "/" + re.sub(r'([.?+*|{}\[\]()"\\#@&<>~])', r"\\\1", alias) + "_v[0-9]+/"


def es_role(spec: SyncSpec) -> dict:
    """The role body (`PUT _security/role/<name>`, or an API key's `role_descriptors`)."""
    alias = spec.target.index
    return {
        "cluster": list(CLUSTER_PRIVILEGES),
        "indices": [{"names": [alias, versions_pattern(alias)], "privileges": list(INDEX_PRIVILEGES)}],
    }


def es_grants(spec: SyncSpec, role: str) -> str:
    key = {"name": f"sync-pipeline-{spec.name}", "role_descriptors": {role: es_role(spec)}}
    return "\n".join(
        [
            f"# Elasticsearch: the role of sync_pipeline's identity for spec '{spec.name}'",
            f"PUT _security/role/{role}",
            json.dumps(es_role(spec)),
            "# then an API key limited to it (SYNC_ES_API_KEY = the response's `encoded`):",
            "POST _security/api_key",
            json.dumps(key),
            f"# or, file-based: in roles.yml as `{role}: <the role above>`, with a file-realm user",
        ]
    )


# OpenSearch's security plugin: its action groups for the same needs; bulk is a cluster-level
# action there (cluster_composite_ops), and patterns between slashes are regular expressions too
OPENSEARCH_INDEX_ACTIONS = ("manage", "read", "write")
OPENSEARCH_CLUSTER_ACTIONS = ("cluster_monitor", "cluster_composite_ops")


def opensearch_role(spec: SyncSpec) -> dict:
    """The role body for OpenSearch's security plugin (`PUT _plugins/_security/api/roles/<name>`)."""
    alias = spec.target.index
    return {
        "cluster_permissions": list(OPENSEARCH_CLUSTER_ACTIONS),
        "index_permissions": [
            {
                "index_patterns": [alias, versions_pattern(alias)],
                "allowed_actions": list(OPENSEARCH_INDEX_ACTIONS),
            }
        ],
    }


def opensearch_grants(spec: SyncSpec, role: str, user: str) -> str:
    return "\n".join(
        [
            f"# OpenSearch (security plugin): the role of sync_pipeline's user for spec '{spec.name}'",
            f"PUT _plugins/_security/api/roles/{role}",
            json.dumps(opensearch_role(spec)),
            "# mapped to the user sync_pipeline connects as (SYNC_ES_USERNAME, or the IAM role on AWS):",
            f"PUT _plugins/_security/api/rolesmapping/{role}",
            json.dumps({"users": [user]}),
        ]
    )


def read_tables(spec: SyncSpec) -> list[str]:
    """Every table a spec's documents read: the source, its relations' tables and join tables
    (a `query` source: its change tables; the query's own are the user's to list)."""
    tables = [spec.source.table] if spec.source.table else [c.table for c in spec.source.change_tables]
    for _, relation in spec.source.all_relations():
        tables.append(relation.table)
        if relation.through is not None:
            tables.append(relation.through.table)
    return list(dict.fromkeys(tables))


def pg_grants(
    spec: SyncSpec, tables: Sequence[str], role: str, database: str | None = None, with_stats: bool = False
) -> str:
    """GRANT statements for `role`, the role sync_pipeline connects as; `tables`: every table the
    spec's documents read (the source, its relations' tables and join tables); `database`: the
    source database's name when known (SYNC_PG_URL), for the statements that name it."""
    who = quote_ident(role)
    schemas = sorted({qualified_table(t).rpartition(".")[0] or '"public"' for t in tables} | {'"public"'})
    read = ", ".join(qualified_table(t) for t in tables)
    db = quote_ident(database) if database else "<database>"
    lines = [
        f"-- PostgreSQL: the role sync_pipeline connects as, for spec '{spec.name}'",
        *(f"GRANT USAGE ON SCHEMA {schema} TO {who};" for schema in schemas),
        f"GRANT SELECT ON {read} TO {who};",
    ]
    if spec.source.query is not None:
        lines.append(f"-- and SELECT on every table the spec's query reads, for {who}")
    lines += [
        "-- drains claim buffered changes (SELECT … FOR UPDATE SKIP LOCKED) and delete them once applied",
        f"GRANT SELECT, UPDATE, DELETE ON {BUFFER_TABLE} TO {who};",
        "-- documents Elasticsearch refuses are kept, listed, replayed and purged",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {DEAD_LETTER_TABLE} TO {who};",
        "-- drains compare a partitioned table's partitions with those they last saw",
        f"GRANT SELECT, INSERT, UPDATE ON {PARTITION_SETS_TABLE} TO {who};",
    ]
    if with_stats:
        lines += [
            "-- opt-in: lets a window's read wait for other roles' open transactions (settle_seconds).",
            "-- It also shows this role every session's query text and the server's statistics",
            "-- (pg_stat_activity of all roles, pg_stat_statements): grant it only if that is acceptable",
            f"GRANT pg_read_all_stats TO {who};",
        ]
    else:
        lines.append(
            "-- (settle_seconds waits only for this role's own open transactions unless the role may see "
            "others': `grants --with-stats`)"
        )
    if spec.capture == "logical":
        lines += [
            "",
            "-- capture: logical — a drain decodes the spec's replication slot over a replication",
            "-- connection and stages decoded changes in a temporary table:",
            f"ALTER ROLE {who} REPLICATION;",
            f"GRANT TEMPORARY ON DATABASE {db} TO {who};",
            "-- (RDS/Aurora: GRANT rds_replication; Cloud SQL: the cloudsqlsuperuser role). pg_hba.conf: a",
            "-- logical replication connection is matched by its database name like any other (the",
            "-- `replication` keyword there is for physical replication only), so the role's usual line,",
            f"-- e.g. `hostssl {database or '<database>'} {role} <client address> scram-sha-256`, covers it.",
            "-- The install (as the owner) sets REPLICA IDENTITY FULL on related tables, creates the",
            "-- publication and the slot: it needs REPLICATION too.",
        ]
    lines += [
        "",
        "-- Dagster's run history: a database of its own (or a schema you name), never the source's by",
        "-- default; SYNC_DAGSTER_PG_URL points at it (unset: SQLite files under DAGSTER_HOME)",
        f'CREATE DATABASE "sync_pipeline_dagster" OWNER {who};',
        f"--   or: CREATE SCHEMA dagster AUTHORIZATION {who}; and ?options=-csearch_path%3Ddagster",
        "",
        "-- Owner-only, once, as the role that owns the tables above (not a superuser: the trigger",
        "-- functions run with their owner's rights): the change buffer, the dead-letter table and the",
        "-- triggers. The trigger functions are SECURITY DEFINER, callable by no other role, so the",
        "-- application's own roles need no privilege on the buffer.",
        f"--   SYNC_PG_URL=postgresql://<owner>@<host>/<db> sync-pipeline install-triggers --spec "
        f"{spec.name}",
    ]
    return "\n".join(lines)
