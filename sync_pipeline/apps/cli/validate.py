"""`sync-pipeline validate`: every check a spec file can have before a run, in one report.

Offline (`--offline`, for CI and pre-commit hooks): the spec file's schema, field types, the
relations `fields` names, durations — each problem with its YAML line and a suggestion (core/
specs.py); a file with any of them is exit 2. With the servers: what every command checks before
it starts (both servers reachable and supported: exit 2 otherwise, as for a configuration error),
then for every spec, without stopping at the first problem: every column its SQLAlchemy models
map (`source.model`, io/models.py), every table, column and key the spec names, its relations,
the key order verify relies on, the mapping the search server at hand takes (a field type it
lacks is named) and the existing index's mapping against the spec's. Any
of those is a problem found in the database or the index, exit 1, like drift. Nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from sync_pipeline.apps.cli.output import EXIT_DRIFT, EXIT_OK, EXIT_USAGE
from sync_pipeline.apps.cli.session import Session, UsageError, pg_label
from sync_pipeline.core.documents.index_mapping import index_mapping
from sync_pipeline.core.report.redact import redact_url
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.relations import index_lookups, unserved
from sync_pipeline.core.sql.statements import SourceError
from sync_pipeline.io.catalog import index_columns
from sync_pipeline.io.models import model_mismatches
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.ops.binding import Bound, bind
from sync_pipeline.ops.target import conflict_error, emitted, mapping_drift
from sync_pipeline.ops.verify import check_key_order


@dataclass
class SpecReport:
    """What validate found for one spec: problems (exit 1) and notes (what a sync would do)."""

    spec: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        head = f"spec '{self.spec}': " + (
            f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}" if self.problems else "ok"
        )
        return [head, *(f"  problem: {p}" for p in self.problems), *(f"  note: {n}" for n in self.notes)]


def cmd_validate(args: argparse.Namespace) -> int:
    # a spec file with problems is a SpecError (every problem, with its line): exit 2
    session = Session.open(args, servers=False)
    names = ", ".join(spec.name for spec in session.selected)
    print(f"specs: {len(session.selected)} valid ({names})")
    if args.offline:
        print("servers: not checked (--offline)")
        return EXIT_OK
    session.use_servers()  # an unset server URL: UsageError, exit 2
    unusable = server_problems(session)
    if unusable:
        for problem in unusable:
            print(f"sync-pipeline: {problem}", file=sys.stderr)
        return EXIT_USAGE
    es = session.es()
    where = f"{es.server.label} at {redact_url(session.es_url)}"
    print(f"servers: PostgreSQL at {pg_label(session.pg_url)}, {where}")
    reports = [check_spec(session, es, spec) for spec in session.selected]
    for report in reports:
        print("\n".join(report.lines()))
    found = sum(len(r.problems) for r in reports)
    if found:
        print(f"sync-pipeline: validate found {found} problem{'s' if found != 1 else ''}", file=sys.stderr)
        return EXIT_DRIFT
    print(
        "every source matches its spec, every mapping is one the server takes, "
        "no conflict with an existing index"
    )
    return EXIT_OK


def server_problems(session: Session) -> list[str]:
    """Both servers, each checked whatever the other's answer: one line per server unusable."""
    problems = []
    search = session.search_problem()
    if search:
        problems.append(search)
    try:
        session.connect().close()
    except UsageError as exc:
        problems.append(str(exc))
    return problems


def check_spec(session: Session, es: SearchTarget, spec: SyncSpec) -> SpecReport:
    """Source, relations, keys and mapping of one spec, every problem noted (none raised)."""
    report = SpecReport(spec.name)
    with session.connect() as conn:  # a connection of its own: a refused query aborts its transaction
        # a spec derived from models: what the models map and the tables lack (a migration's rename)
        report.problems += model_mismatches(conn, spec)
        try:
            bound = bind(conn, spec)
        except SourceError as exc:
            report.problems.append(str(exc))
            return report  # without the source, there is no mapping to check
        report.notes += missing_indexes(conn, bound)
    for check in (
        lambda: check_key_order(bound),
        lambda: emitted(bound, index_mapping(bound.plan), es.server),
    ):
        try:
            check()
        except SourceError as exc:
            report.problems.append(str(exc))
    if report.problems:
        return report
    found = mapping_drift(es, bound)
    if found is None:
        report.notes.append(f"index {spec.target.index} does not exist yet: the first sync creates it")
        return report
    index, diff = found
    if diff.conflicts:
        conflict = str(conflict_error(bound, index, diff.conflicts))
        if spec.on_mapping_change == "fail":
            report.problems.append(conflict)
        else:
            report.notes.append(f"{conflict} (on_mapping_change: rebuild — the next sync rebuilds the index)")
    if diff.additions:
        changed = ", ".join(c.path for c in diff.additions)
        report.notes.append(f"index {index}: the next sync adds in place: {changed}")
    return report


def missing_indexes(conn: Connection, bound: Bound) -> list[str]:
    """A note per relation lookup no index serves (core/sql/relations.index_lookups): correct without
    one, but each document (or each fanned-out change) then scans the table, on the user's
    primary. A note, not a problem: a small table needs none. (A query source's own columns are
    not a table's: their lookups are left out.)"""
    root = bound.spec.source.table
    lookups = [x for x in index_lookups(bound.relations, root or "") if x.table]
    indexed = {table: index_columns(conn, table) for table in {x.table for x in lookups}}
    return [
        f"{x.why} by ({', '.join(x.columns)}) with no index on {x.table} starting with them: each lookup "
        f"scans the table (CREATE INDEX ON {x.table} ({', '.join(x.columns)}))"
        for x in unserved(lookups, indexed)
    ]
