"""The command line: every command, flag and default, in one place.

A command's module is imported when the command runs, not when the parser is built: `--help`,
`--version` and a usage error import no Dagster, pandas, SQLAlchemy or search client
(test_cli_imports pins it). A command that runs still loads the runner first (apps/cli/__init__.py
maps its errors), so Dagster with it."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

DESCRIPTION = "`sync-pipeline`: init, validate, sync and verify from a terminal."


# verify --fix changes at most this many documents without --yes or a confirmation
FIX_WITHOUT_ASKING = 1000
# doctor and /healthz: a buffer whose oldest entry waited longer needs action
DEFAULT_BACKLOG_MINUTES = 15.0
DEFAULT_METRICS_PORT = 9464  # OpenTelemetry's Prometheus exporter's


class _Command:
    """`module.name`, imported when the command runs (its module's imports are the command's)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.__name__ = f"sync_pipeline.apps.cli.{module}", name

    def resolve(self) -> Callable[[argparse.Namespace], int]:
        return getattr(importlib.import_module(self.module), self.__name__)

    def __call__(self, args: argparse.Namespace) -> int:
        return self.resolve()(args)

    def __repr__(self) -> str:
        return f"{self.module}.{self.__name__}"


def _installed_version() -> str:
    """The version pyproject.toml gives, as installed (what `sync_pipeline.__version__` reads too;
    the package's top module is above this layer)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sync-pipeline")
    except PackageNotFoundError:
        return "0+unknown"


def _global_options(parser: argparse.ArgumentParser, default: object) -> None:
    """The options every command takes, before or after its name (`sync-pipeline --config x
    verify` and `sync-pipeline verify --config x` alike). On the commands they default to
    SUPPRESS, so a value given before the command is not reset by the command's own parser."""
    parser.add_argument(
        "--config", default=default, help="sync spec file (default: $SYNC_CONFIG or ./sync.yaml)"
    )
    parser.add_argument(
        "--local",
        action="store_true",
        default=default,
        help="the project's local dev PostgreSQL/search node for SYNC_PG_URL/SYNC_ES_URL left unset; "
        "only through the checkout's dev tool, e.g. python -m sync_pipeline_devtools --local verify "
        "(without it, an unset URL is an error)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="on an unexpected error, the whole traceback (default: one line, exit 3)",
    )


# the commands with --json (one versioned document on stdout; shapes in docs/cli.md)
JSON_EXAMPLES = {
    "sync": "sync-pipeline sync --spec orders --full --json | jq .runs[0].indexed",
    "verify": "sync-pipeline verify --json | jq '.reports[] | select(.ok | not) | .spec'",
    "history": "sync-pipeline history --last 3 --json | jq -r '.runs[].status'",
    "search": "sync-pipeline search --spec products --json tea | jq -r '.hits[].id'",
    "flush": "sync-pipeline flush --json | jq '[.runs[].indexed] | add'",
    "doctor": "sync-pipeline doctor --json | jq '.findings'",
    "dead-letters": "sync-pipeline dead-letters list --json | jq -r '.dead_letters[].doc_id'",
}


# one or two invocations per command, shown under its --help (a test fails on a command without)
EXAMPLES = {
    "sync": [
        "sync-pipeline sync --spec products --full",
        "sync-pipeline sync --spec products --start 2026-11-01 --end 2026-11-08",
    ],
    "verify": ["sync-pipeline verify --spec products", "sync-pipeline verify --spec products --fix --yes"],
    "history": [
        "sync-pipeline history --spec products --last 5",
        "sync-pipeline history --run 3f2a9c1e --batches",
    ],
    "backfill": ["sync-pipeline backfill --spec products --start 2026-10-01 --end 2026-11-01"],
    "rebuild": [
        "sync-pipeline rebuild --spec products --yes",
        "sync-pipeline rebuild --spec products --rollback",
    ],
    "grants": ["sync-pipeline grants --spec products --for opensearch"],
    "search": [
        "sync-pipeline search --spec products 'green tea' --size 10",
        "sync-pipeline search --spec products --knn embedding --vector '[0.1, 0.2, 0.3]' --k 5",
    ],
    "ui": ["sync-pipeline ui --port 3001"],
    "install-triggers": ["sync-pipeline install-triggers --spec products"],
    "uninstall-triggers": ["sync-pipeline uninstall-triggers --spec products"],
    "flush": ["sync-pipeline flush --spec products"],
    "doctor": ["sync-pipeline doctor", "sync-pipeline doctor --spec products --backlog-minutes 30"],
    "metrics": ["sync-pipeline metrics --port 9464", "curl -s localhost:9464/healthz | jq .specs"],
    "dead-letters": [
        "sync-pipeline dead-letters list --spec products",
        "sync-pipeline dead-letters replay --spec products",
    ],
    "validate": ["sync-pipeline validate --offline", "sync-pipeline validate --config deploy/sync.yaml"],
    "purge": ["sync-pipeline purge --older-than-days 7 --yes"],
    "init": ["sync-pipeline init", "sync-pipeline init --from-database public.orders public.customers"],
}


def _examples(parser: argparse.ArgumentParser, name: str, examples: list[str]) -> None:
    """`examples:` under the command's help, its lines as written (and the --json one)."""
    lines = [*examples, *([JSON_EXAMPLES[name]] if name in JSON_EXAMPLES else [])]
    parser.epilog = "examples:\n" + "\n".join(f"  {line}" for line in lines)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def _json_option(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help=f"one JSON document on stdout instead of the text (schema sync_pipeline.<command>/N, "
        f"docs/cli.md; same exit code), e.g. {example}",
    )


def _metrics_parser(sub: argparse._SubParsersAction) -> None:
    metrics = sub.add_parser(
        "metrics", help="serve /metrics (Prometheus) and /healthz for every spec (docs/operating.md)"
    )
    port = DEFAULT_METRICS_PORT
    metrics.add_argument("--port", type=int, default=port, help=f"default {port}")
    metrics.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    metrics.add_argument(
        "--backlog-minutes",
        type=float,
        metavar="MINUTES",
        default=DEFAULT_BACKLOG_MINUTES,
        help="/healthz: a buffer whose oldest entry waited longer is unhealthy "
        f"(default {DEFAULT_BACKLOG_MINUTES:g})",
    )
    metrics.add_argument(
        "--cache-seconds",
        type=float,
        metavar="SECONDS",
        default=5.0,
        help="scrapes and health checks closer together share one reading of the database (default 5)",
    )
    metrics.set_defaults(func=_Command("metrics", "cmd_metrics"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sync-pipeline",
        description=DESCRIPTION,
        epilog="exit codes: 0 ok; 1 drift, refused documents or a failed run; 2 usage, configuration "
        "or an unreachable server; 3 an unexpected error (--debug shows its traceback)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_installed_version()}")
    _global_options(parser, None)
    parser.set_defaults(local=False, debug=False)
    sub = parser.add_subparsers(dest="command", required=True)

    init = sub.add_parser(
        "init",
        help="write a starter project here: sync.yaml, dagster.yaml, workspace.yaml (never over a file). "
        "e.g. sync-pipeline init --from-database public.orders public.customers",
    )
    init.add_argument(
        "--from-database",
        nargs="+",
        metavar="TABLE",
        help="one spec per table, read from SYNC_PG_URL's catalog: primary key, updated_at-like "
        "column, foreign keys as relations (default: one commented example spec)",
    )
    init.set_defaults(func=_Command("starter", "cmd_init"))

    sync = sub.add_parser("sync", help="run a spec's extract → documents → index through Dagster")
    sync.add_argument("--spec", required=True, help="the spec to sync (its name in the spec file)")
    sync.add_argument("--full", action="store_true", help="every partition, as one run")
    sync.add_argument("--start", help="ISO date/time: first updated_at window to include")
    sync.add_argument("--end", help="ISO date/time: windows starting before this")
    sync.set_defaults(func=_Command("commands", "cmd_sync"))

    verify = sub.add_parser("verify", help="prove PostgreSQL and Elasticsearch agree")
    verify.add_argument("--spec", help="one spec (default: every spec)")
    verify.add_argument("--fix", action="store_true", help="re-index drifting documents, delete extra ones")
    verify.add_argument(
        "--yes",
        action="store_true",
        help=f"--fix without asking however many documents it changes (asks above {FIX_WITHOUT_ASKING:,})",
    )
    verify.set_defaults(func=_Command("commands", "cmd_verify"))

    history = sub.add_parser("history", help="recent runs from the Dagster instance, with their counts")
    history.add_argument("--spec", help="one spec (default: every spec)")
    history.add_argument("--last", type=int, default=10, help="how many runs (default 10)")
    history.add_argument(
        "--run", metavar="ID", help="one run: its id, or the start of it as history prints it"
    )
    history.add_argument(
        "--batches",
        action="store_true",
        help="with --run: every bulk batch the run recorded, with its counts",
    )
    history.set_defaults(func=_Command("admin", "cmd_history"))

    backfill = sub.add_parser(
        "backfill", help="launch a partition backfill on the running Dagster (`sync-pipeline ui`)"
    )
    backfill.add_argument("--spec", required=True, help="the spec whose partitions to backfill")
    backfill.add_argument("--start", help="ISO date/time: first updated_at window to include")
    backfill.add_argument("--end", help="ISO date/time: windows starting before this")
    backfill.add_argument(
        "--dagster-url", help="webserver URL (default: $SYNC_DAGSTER_URL or http://127.0.0.1:3000)"
    )
    backfill.set_defaults(func=_Command("admin", "cmd_backfill"))

    rebuild_cmd = sub.add_parser("rebuild", help="fill a new versioned index, verify it, swap the read alias")
    rebuild_cmd.add_argument("--spec", required=True, help="the spec whose index to rebuild")
    rebuild_cmd.add_argument(
        "--rollback", action="store_true", help="point the alias back at the previous version"
    )
    rebuild_cmd.add_argument("--yes", action="store_true", help="without asking")
    rebuild_cmd.set_defaults(func=_Command("commands", "cmd_rebuild"))

    grants = sub.add_parser(
        "grants", help="the least-privilege search role and PostgreSQL grants a spec needs"
    )
    grants.add_argument(
        "--for",
        dest="search_for",
        choices=("elasticsearch", "opensearch"),
        help="the search server's role format (default: SYNC_SEARCH_BACKEND, else Elasticsearch's)",
    )
    grants.add_argument("--spec", required=True, help="the spec whose tables and index to grant")
    grants.add_argument("--es-role", default=None, help="role name (default: sync_pipeline_<spec>)")
    grants.add_argument("--pg-role", default="sync_pipeline", help="the role sync_pipeline connects as")
    grants.add_argument(
        "--with-stats",
        action="store_true",
        help="also grant pg_read_all_stats (settle_seconds sees other roles' transactions; it also "
        "shows every session's query text)",
    )
    grants.set_defaults(func=_Command("search", "cmd_grants"))

    search = sub.add_parser(
        "search", help="full-text search over the spec's text fields, with highlights; or a kNN query (--knn)"
    )
    search.add_argument("--spec", required=True, help="the spec whose index to search")
    search.add_argument("query", nargs="?", help="the words to look for (quote several: 'green tea')")
    search.add_argument("--size", type=int, default=5, help="hits to show (default 5)")
    search.add_argument("--knn", metavar="FIELD", help="the nearest documents in vector field FIELD")
    search.add_argument("--vector", help="with --knn: the query vector, a JSON array ('[0.1, 0.2, …]')")
    search.add_argument("--k", type=int, default=5, help="with --knn: how many neighbours (default 5)")
    search.set_defaults(func=_Command("search", "cmd_search"))

    ui = sub.add_parser("ui", help="Dagster webserver + daemon (what `make ui` runs)")
    ui.add_argument("--port", type=int, default=3000, help="the webserver's port (default 3000)")
    ui.set_defaults(func=_Command("admin", "cmd_ui"))

    for name, aliases, helptext in (
        ("install-triggers", ["install-capture"],
         "install the spec's change capture: triggers, or its slot and publication (capture: logical)"),
        ("uninstall-triggers", ["uninstall-capture"], "remove the spec's triggers, slot and publication"),
    ):  # fmt: skip
        triggers = sub.add_parser(name, aliases=aliases, help=helptext)
        triggers.add_argument("--spec", required=True, help="the spec whose tables to watch")
        triggers.set_defaults(func=_Command("commands", "cmd_triggers"), install=name == "install-triggers")

    flush = sub.add_parser("flush", help="drain the change buffer now (a Dagster run per spec)")
    flush.add_argument("--spec", help="one spec (default: every spec)")
    flush.set_defaults(func=_Command("commands", "cmd_flush"))

    health = sub.add_parser(
        "doctor", help="what needs action: orphaned triggers, stuck buffer, dead letters, missing indexes"
    )
    health.add_argument(
        "--spec", help="one spec (default: every spec, and what specs gone from the file left behind)"
    )
    health.add_argument(
        "--backlog-minutes",
        type=float,
        metavar="MINUTES",
        default=DEFAULT_BACKLOG_MINUTES,
        help=f"flag a buffer whose oldest entry waited longer (default {DEFAULT_BACKLOG_MINUTES:g})",
    )
    health.set_defaults(func=_Command("doctor", "cmd_doctor"))

    _metrics_parser(sub)

    dead = sub.add_parser("dead-letters", help="documents Elasticsearch refused: list, replay or purge")
    dead.add_argument(
        "action",
        choices=["list", "replay", "purge"],
        help="list: show them; replay: index them again from the current rows; purge: delete them",
    )
    dead.add_argument("--spec", help="one spec (default: every spec)")
    dead.add_argument("--limit", type=int, default=50, help="rows to list")
    dead.add_argument("--yes", action="store_true", help="purge without asking")
    dead.set_defaults(func=_Command("commands", "cmd_dead_letters"))
    for command, example in JSON_EXAMPLES.items():
        _json_option(sub.choices[command], example)

    validate = sub.add_parser(
        "validate",
        help="check the spec file, then (unless --offline) the servers, sources and mappings "
        "against it, in one report; writes nothing. Exit 0 all good, 1 a problem in the database "
        "or index, 2 in the spec file or configuration",
    )
    validate.add_argument("--spec", help="one spec (default: every spec)")
    validate.add_argument(
        "--offline", action="store_true", help="only the checks that need no server (CI, pre-commit)"
    )
    validate.set_defaults(func=_Command("validate", "cmd_validate"))

    purge = sub.add_parser(
        "purge", help="delete dead letters and staged files older than the retention (SYNC_RETENTION_DAYS)"
    )
    purge.add_argument("--spec", help="one spec (default: every spec)")
    purge.add_argument(
        "--older-than-days", type=float, default=None, help="default: SYNC_RETENTION_DAYS (30); 0: everything"
    )
    purge.add_argument("--yes", action="store_true", help="without asking")
    purge.set_defaults(func=_Command("commands", "cmd_purge"))
    for name, examples in EXAMPLES.items():
        _examples(sub.choices[name], name, examples)
    for command in {id(p): p for p in sub.choices.values()}.values():  # aliases share a parser
        _global_options(command, argparse.SUPPRESS)
    return parser
