"""The least privilege a spec needs, as statements an administrator can apply as they are.

Elasticsearch: one role, index privileges on the spec's alias and its versioned indexes only
(`<index>`, `<index>_v*`), and `monitor` on the cluster for the health check every command
starts with. PostgreSQL: SELECT on the tables the documents read, what drains need on the
change buffer and what refusals need on the dead-letter table; creating those two tables and
the triggers is a separate step for the tables' owner, run once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sync_pipeline.core.fanout import BUFFER_TABLE
from sync_pipeline.core.quoting import qualified_table, quote_ident
from sync_pipeline.core.specs import SyncSpec

DEAD_LETTER_TABLE = "public.sync_pipeline_dead_letters"
# manage: create the index with its alias, put mappings and settings (refresh off during a load),
# refresh, swap aliases and delete the old index in a rebuild; write: bulk index and delete;
# read: verify and search
INDEX_PRIVILEGES = ("manage", "read", "write")
CLUSTER_PRIVILEGES = ("monitor",)


def es_role(spec: SyncSpec) -> dict:
    """The role body (`PUT _security/role/<name>`, or an API key's `role_descriptors`)."""
    alias = spec.target.index
    return {
        "cluster": list(CLUSTER_PRIVILEGES),
        "indices": [{"names": [alias, f"{alias}_v*"], "privileges": list(INDEX_PRIVILEGES)}],
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


def read_tables(spec: SyncSpec) -> list[str]:
    """Every table a spec's documents read: the source, its relations' tables and join tables
    (a `query` source: its change tables; the query's own are the user's to list)."""
    tables = [spec.source.table] if spec.source.table else [c.table for c in spec.source.change_tables]
    for _, relation in spec.source.all_relations():
        tables.append(relation.table)
        if relation.through is not None:
            tables.append(relation.through.table)
    return list(dict.fromkeys(tables))


def pg_grants(spec: SyncSpec, tables: Sequence[str], role: str) -> str:
    """GRANT statements for `role`, the role sync_pipeline connects as; `tables`: every table the
    spec's documents read (the source, its relations' tables and join tables)."""
    who = quote_ident(role)
    schemas = sorted({qualified_table(t).rpartition(".")[0] or '"public"' for t in tables} | {'"public"'})
    read = ", ".join(qualified_table(t) for t in tables)
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
        "-- optional: lets a window's read wait for other roles' open transactions (settle_seconds)",
        f"GRANT pg_read_all_stats TO {who};",
        "",
        "-- Owner-only, once (as the owner of the tables above, or a superuser): the change buffer,",
        "-- the dead-letter table and the triggers. The trigger functions are SECURITY DEFINER, so",
        "-- the application's own roles need no privilege on the buffer.",
        f"--   SYNC_PG_URL=postgresql://<owner>@<host>/<db> sync-pipeline install-triggers --spec "
        f"{spec.name}",
    ]
    if spec.capture == "logical":
        lines += [
            "",
            "-- capture: logical — the drains read the spec's replication slot: the connecting role",
            "-- needs the REPLICATION attribute (RDS/Aurora: GRANT rds_replication; Cloud SQL: the",
            "-- cloudsqlsuperuser role). The install (as the owner) creates the publication, sets",
            "-- REPLICA IDENTITY FULL on related tables and creates the slot: it needs both.",
            f"ALTER ROLE {who} REPLICATION;",
        ]
    return "\n".join(lines)
