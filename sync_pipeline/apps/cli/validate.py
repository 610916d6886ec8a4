"""`sync-pipeline validate`: every check a spec file can have before a run, in one report.

Offline (`--offline`, for CI and pre-commit hooks): the spec file's schema, with the spec, the
field and a suggestion for a misspelled key or field type. With the servers: what every command
checks before it starts (both servers reachable and supported, every table, column and key the
specs name, no mapping conflict with an existing index), and the mapping each spec would create,
as the search server at hand takes it (a field type it lacks is named). Nothing is written.
"""

from __future__ import annotations

import argparse

from sync_pipeline.apps.cli.output import EXIT_OK
from sync_pipeline.apps.cli.session import Session, pg_label
from sync_pipeline.core.index_mapping import index_mapping
from sync_pipeline.core.redact import redact_url
from sync_pipeline.ops.binding import bind
from sync_pipeline.ops.target import emitted


def cmd_validate(args: argparse.Namespace) -> int:
    # a spec file that does not parse is a SpecError, exit 2, before anything is printed
    session = Session.open(args, servers=False)
    names = ", ".join(spec.name for spec in session.selected)
    print(f"specs: {len(session.selected)} valid ({names})")
    if args.offline:
        print("servers: not checked (--offline)")
        return EXIT_OK
    session.use_servers()
    session.preflight(mapping=True)  # a problem is a UsageError or a SourceError: exit 2
    es = session.es()
    with session.engine.connect() as conn:
        for spec in session.selected:
            emitted(bound := bind(conn, spec), index_mapping(bound.plan), es.server)
    print(
        f"servers: PostgreSQL at {pg_label(session.pg_url)} and {es.server.label} at "
        f"{redact_url(session.es_url)}: every source matches its spec, every mapping is one the "
        "server takes, no conflict with an existing index"
    )
    return EXIT_OK
