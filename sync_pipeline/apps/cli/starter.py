"""`sync-pipeline init`: a starter project in the current folder.

Three files: `sync.yaml` (one commented spec, or with `--from-database` one spec per table named,
read from PostgreSQL's catalog), `dagster.yaml` (the packaged instance config for local use) and
`workspace.yaml` (the code location `dagster dev` loads). An existing file is never overwritten:
nothing is written then, exit 2.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from sync_pipeline import settings as settings_module
from sync_pipeline.apps.cli.output import EXIT_OK, first_line
from sync_pipeline.apps.cli.session import UsageError, pg_label
from sync_pipeline.apps.instance import RESOURCES, WORKSPACE, local_instance_yaml
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io.catalog import TableInfo, UnknownTable, describe_table, referenced_tables
from sync_pipeline.io.postgres import engine_for

FILES = ("sync.yaml", "dagster.yaml", "workspace.yaml")
# updated_at-like columns, best first; then any timestamp column whose name says it changes
UPDATED_AT_NAMES = (
    "updated_at",
    "modified_at",
    "last_modified",
    "last_modified_at",
    "last_updated",
    "updated_on",
    "modified_on",
    "changed_at",
    "updated",
    "modified",
)
UPDATED_AT_HINT = re.compile(r"updat|modif|chang")
SOFT_DELETE_NAMES = ("deleted_at", "deleted_on", "archived_at")


def cmd_init(args: argparse.Namespace) -> int:
    folder = Path.cwd()
    existing = [name for name in FILES if (folder / name).exists()]
    if existing:
        raise UsageError(
            f"init: {', '.join(existing)} already in {folder}; nothing was written "
            "(init writes a new project: move the file(s) away, or run it in an empty folder)"
        )
    if args.from_database:
        spec_text, notes = spec_from_database(args.from_database, local=args.local)
    else:
        spec_text, notes = (RESOURCES / "sync.yaml").read_text(), []
    parse_specs(spec_text, "sync.yaml")  # what is written passes `validate --offline`
    contents = {
        "sync.yaml": spec_text,
        "dagster.yaml": local_instance_yaml(),
        "workspace.yaml": WORKSPACE.read_text(),
    }
    for name, text in contents.items():
        with open(folder / name, "x", encoding="utf-8") as handle:  # never over a file made meanwhile
            handle.write(text)
    print(f"wrote {', '.join(FILES)} in {folder}")
    for note in notes:
        print(f"note: {note}")
    print(next_commands())
    return EXIT_OK


def next_commands() -> str:
    return (
        "next:\n"
        "  1. edit sync.yaml, then: sync-pipeline validate --offline\n"
        "  2. export SYNC_PG_URL=postgresql://… SYNC_ES_URL=http://…; sync-pipeline validate\n"
        "  3. sync-pipeline sync --spec <name> --full   (then `dagster dev` here: UI, schedules, sensors)"
    )


def spec_from_database(tables: list[str], local: bool = False) -> tuple[str, list[str]]:
    """A spec file for `tables` as SYNC_PG_URL's catalog describes them (`--local`: the project's
    dev PostgreSQL when it is unset), and what the user must look at (no primary key, no
    updated_at-like column)."""
    from sqlalchemy.exc import OperationalError

    url = settings_module.load().pg_url
    if not url and local:
        from sync_pipeline.apps.cli.session import local_servers

        url = local_servers().ensure()[0]
    if not url:
        raise UsageError(
            f"init --from-database: {settings_module.PG_URL} is not set: the PostgreSQL whose tables "
            "to read (or --local, for the project's local dev services)"
        )
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            try:
                described = [describe_table(conn, name) for name in tables]
            except UnknownTable as exc:
                raise UsageError(
                    f"init --from-database: no table {exc} in PostgreSQL at {pg_label(url)}"
                ) from None
            related = referenced_tables(conn, described)
    except OperationalError as exc:
        raise UsageError(f"cannot connect to PostgreSQL at {pg_label(url)}: {first_line(exc.orig)}") from None
    finally:
        engine.dispose()
    return render(described, related, f"PostgreSQL at {pg_label(url)}")


def render(
    tables: list[TableInfo], related: dict[str, TableInfo], origin: str, today: datetime | None = None
) -> tuple[str, list[str]]:
    notes: list[str] = []
    specs = [build_spec(table, tables, related, notes, today) for table in tables]
    seen: set[str] = set()
    for spec in specs:  # spec names are unique in a file (public.orders and shop.orders)
        name, n = spec["name"], 2
        while spec["name"] in seen:
            spec["name"] = spec["target"]["index"] = f"{name}_{n}"
            n += 1
        seen.add(spec["name"])
    header = (
        "# Sync specs written by `sync-pipeline init --from-database`, from the catalog of\n"
        f"# {origin}.\n"
        "# Edit them, then check with `sync-pipeline validate`. Relations come from foreign keys\n"
        "# (many_to_one: the table's own; one_to_many: those of the other tables named): keep the\n"
        "# ones the documents need, and the columns they show.\n"
    )
    body = yaml.safe_dump(
        {"specs": specs}, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
    )
    todo = "".join(f"# TODO: {note}\n" for note in notes)
    return header + todo + body, notes


def build_spec(
    table: TableInfo,
    named: list[TableInfo],
    related: dict[str, TableInfo],
    notes: list[str],
    today: datetime | None = None,
) -> dict[str, Any]:
    key = list(table.primary_key)
    if not key:
        key = ["id"]
        notes.append(f"{table.qualified} has no primary key: set source.primary_key (a unique, non-null key)")
    updated_at = updated_at_column(table)
    if updated_at is None:
        updated_at = "updated_at"
        notes.append(
            f"{table.qualified} has no updated_at-like timestamp column: add one that every write sets, "
            "and name it in source.updated_at"
        )
    source: dict[str, Any] = {"table": table.qualified, "primary_key": key[0] if len(key) == 1 else key}
    source["updated_at"] = updated_at
    soft_delete = next((n for n in SOFT_DELETE_NAMES if (c := table.column(n)) and c.is_timestamp), None)
    if soft_delete:
        source["soft_delete"] = soft_delete
    relations = _relations(table, named, related)
    if relations:
        source["relations"] = relations
    name = spec_name(table.name)
    start = (today or datetime.now(UTC)).replace(month=1, day=1)
    return {
        "name": name,
        "source": source,
        "target": {"index": name},
        "partitions": {"grain": "day", "start": start.strftime("%Y-%m-%d"), "lookback": "PT10M"},
    }


def updated_at_column(table: TableInfo) -> str | None:
    stamps = [c.name for c in table.columns if c.is_timestamp]
    for name in UPDATED_AT_NAMES:
        if name in stamps:
            return name
    return next((n for n in stamps if UPDATED_AT_HINT.search(n.lower())), None)


def spec_name(table: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", table.lower()).strip("_")
    return (name if re.match(r"[a-z]", name) else f"t_{name}")[:63] or "table"


def _relations(table: TableInfo, named: list[TableInfo], related: dict[str, TableInfo]) -> list[dict]:
    taken = {c.name for c in table.columns}
    relations: list[dict[str, Any]] = []

    def fresh(name: str) -> str:
        name = re.sub(r"\W+", "_", name).strip("_") or "related"
        candidate, n = name, 2
        while candidate in taken or candidate.startswith("__sync"):
            candidate, n = f"{name}_{n}", n + 1
        taken.add(candidate)
        return candidate

    for fk in table.foreign_keys:  # this row points at one row there: an object
        target = related.get(fk.references)
        base = fk.columns[0][:-3] if len(fk.columns) == 1 and fk.columns[0].endswith("_id") else ""
        columns = [c.name for c in target.columns if c.name not in fk.referenced] if target else None
        relation: dict[str, Any] = {
            "name": fresh(base or fk.references.rpartition(".")[2]),
            "table": fk.references,
            "kind": "many_to_one",
            "on": dict(zip(fk.referenced, fk.columns, strict=True)),
        }
        if columns:
            relation["columns"] = columns
        relations.append(relation)
    for other in named:  # rows there point at this one: an array of objects
        if other is table:
            continue
        for fk in other.foreign_keys:
            if fk.references != table.qualified:
                continue
            relation = {
                "name": fresh(other.name),
                "table": other.qualified,
                "kind": "one_to_many",
                "on": dict(zip(fk.columns, fk.referenced, strict=True)),
            }
            columns = [c.name for c in other.columns if c.name not in fk.columns]
            if columns:
                relation["columns"] = columns
            relations.append(relation)
    return relations
