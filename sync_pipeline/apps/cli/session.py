"""The prologue every command shares: settings, specs, servers, and a preflight check.

A command names what it needs (`Session.open(args, ...)`): the spec file is
read and validated once, the servers are SYNC_PG_URL / SYNC_ES_URL or — only
with an explicit `--local`, and only when the dev tool registered `LOCAL_SERVICES` —
the project's local services started for the missing ones, and the preflight
fails fast, before any run starts, with one line naming the server and the cause.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Protocol

from sqlalchemy.engine import Connection, Engine

from sync_pipeline import settings as settings_module
from sync_pipeline.apps.cli.output import first_line
from sync_pipeline.core.report.redact import redact_url
from sync_pipeline.core.spec.model import SyncSpec, get_spec
from sync_pipeline.io.models import load_specs
from sync_pipeline.io.postgres import describe_source, engine_for, sqlalchemy_url
from sync_pipeline.io.search import SearchTarget, connection_problem, search_client
from sync_pipeline.ops.binding import Bound, bind
from sync_pipeline.ops.prepare import TargetVerdict, prepare_target
from sync_pipeline.ops.target import MappingRefused, conflict_error, mapping_drift
from sync_pipeline.settings import Settings


class UsageError(Exception):
    """Bad arguments or configuration; exit code 2."""


class LocalServers(Protocol):
    """What `--local` starts: the project's dev PostgreSQL and search node."""

    def ensure(self) -> tuple[str, str]:
        """Start what is not running; (pg_url, es_url)."""

    def dagster_storage(self) -> str:
        """The Dagster run storage on the dev PostgreSQL."""


# `--local`: set only by the dev tool (`python -m sync_pipeline_devtools`, a checkout's dev install),
# which then runs this CLI; the product never imports nor starts the dev harness itself
LOCAL_SERVICES: list[LocalServers] = []
LOCAL_MISSING = (
    "--local starts the project's dev services, which are not part of the installed package: "
    "run it from a checkout as `python -m sync_pipeline_devtools --local <command> …`, "
    "or set SYNC_PG_URL and SYNC_ES_URL"
)


def local_servers() -> LocalServers:
    """The registered dev services (`--local`); UsageError when none is (the installed product)."""
    if not LOCAL_SERVICES:
        raise UsageError(LOCAL_MISSING)
    return LOCAL_SERVICES[-1]


def parse_time(value: str, flag: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not an ISO-8601 date or timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def confirm(args: argparse.Namespace, what: str) -> None:
    """Go on only with `--yes`, or a `y` typed at a terminal: UsageError otherwise (nothing done)."""
    if getattr(args, "yes", False):
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{what}: nothing was changed; pass --yes to confirm (no terminal to ask)")
    # the question on stderr: stdout may be a pipe (`verify --fix --json | jq`)
    print(f"{what}. Go on? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = input().strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError(f"{what}: not confirmed, nothing was changed")


def pg_label(url: str) -> str:
    return redact_url(sqlalchemy_url(url))


def load_spec_file(settings: Settings, config: str | None) -> list[SyncSpec]:
    return load_specs(Path(config) if config else settings.config_path)


@dataclass
class Session:
    settings: Settings
    specs: list[SyncSpec]
    selected: list[SyncSpec]
    pg_url: str = ""
    es_url: str = ""
    local: bool = False  # --local: the project's dev services for unset URLs
    _engine: Engine | None = field(default=None, repr=False)
    # the servers of the command running now, for the one-line error when one goes away mid-command
    current: ClassVar[Session | None] = None

    @classmethod
    def open(
        cls,
        args: argparse.Namespace,
        *,
        one: bool = False,
        servers: bool = True,
        preflight: bool = True,
        spec_name: str | None = None,
    ) -> Session:
        """Specs (`--spec`, or every spec unless `one`), servers, preflight."""
        settings = settings_module.load()
        specs = load_spec_file(settings, args.config)
        name = spec_name or getattr(args, "spec", None)
        selected = [get_spec(specs, name)] if (name or one) else list(specs)
        session = cls(settings, specs, selected, local=getattr(args, "local", False))
        Session.current = session
        if servers:
            session.use_servers()
            if preflight:
                session.preflight()
        return session

    @property
    def spec(self) -> SyncSpec:
        return self.selected[0]

    def use_servers(self) -> None:
        """SYNC_PG_URL / SYNC_ES_URL; an unset one is an error naming it. Only with `--local` are
        the project's local dev services started for the unset ones: a command pointed at one
        production server never meets an empty local one (verify --fix would then delete
        everything the local one lacks)."""
        if self.local:
            local = local_servers()
            self.pg_url, self.es_url = local.ensure()
            if not self.settings.pg_url:  # the local dev database: its own schema holds the history
                os.environ.setdefault(settings_module.DAGSTER_PG_URL, local.dagster_storage())
            return
        self.pg_url = self.settings.require_pg_url()
        self.es_url = self.settings.require_es_url()

    @property
    def engine(self) -> Engine:
        """The command's one engine, handed to every use case and run it starts."""
        if self._engine is None:
            self._engine = engine_for(self.pg_url)
        return self._engine

    def close(self) -> None:
        """The command ended: its engine's connections are closed."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def es(self, request_timeout: float | None = None) -> SearchTarget:
        return search_client(self.es_url, request_timeout=request_timeout, options=self.settings.es)

    def preflight(self, mapping: bool = False) -> None:
        """Both servers reachable, every selected source matching its spec; with `mapping`, also
        no index whose mapping conflicts with its spec's (unless the spec rebuilds on its own):
        the run would stop at its first load anyway, so it is not started."""
        problem = self.search_problem()
        if problem:
            raise UsageError(problem)
        with self.connect() as conn:
            for spec in self.selected:
                describe_source(conn, spec)
                if mapping and spec.on_mapping_change == "fail":
                    _refuse_mapping_conflict(self.es(), bind(conn, spec))

    def prepare_targets(self) -> dict[str, TargetVerdict]:
        """`preflight(mapping=True)` for a sync, whose run reuses what it finds: each selected spec
        bound once and its index compared once (ops/prepare.py; created or changed in place as
        the run would first thing). A conflict the spec does not rebuild for stops here, before
        the run starts; a rebuild or refill it needs is the run's to do."""
        problem = self.search_problem()
        if problem:
            raise UsageError(problem)
        es, verdicts = self.es(), {}
        with self.connect() as conn:
            bound = [bind(conn, spec) for spec in self.selected]
            conn.commit()
        for each in bound:
            try:
                verdicts[each.spec.name] = prepare_target(es, each, self.engine)
            except MappingRefused:
                continue  # nothing created: the run meets it again and fails with it, as before
        return verdicts

    def search_problem(self) -> str | None:
        """Why the search server cannot be used (unreachable, refusing us, unsupported), in one
        line; None when it answers and is one we support."""
        from sync_pipeline.io.search import SearchConnectionError, UnsupportedServer

        es_label = redact_url(self.es_url)
        try:
            # which server it is comes first: an unsupported one is refused by name
            self.es(request_timeout=10).check()
        except UnsupportedServer as exc:
            return str(exc)
        except Exception as exc:
            problem = connection_problem(exc, es_label, self.settings.es)
            if problem:
                return problem
            if isinstance(exc, SearchConnectionError):
                return f"cannot connect to the search server at {es_label}"
            return f"the search server at {es_label} refused us: {first_line(exc)}"
        return None

    def connect(self) -> Connection:
        """A connection to PostgreSQL; UsageError naming the server when there is none."""
        from sqlalchemy.exc import OperationalError

        try:
            return self.engine.connect()
        except OperationalError as exc:
            raise UsageError(
                f"cannot connect to PostgreSQL at {pg_label(self.pg_url)}: {first_line(exc.orig)}"
            ) from None


def _refuse_mapping_conflict(es: SearchTarget, bound: Bound) -> None:
    found = mapping_drift(es, bound)
    if found is not None and found[1].conflicts:
        raise conflict_error(bound, found[0], found[1].conflicts)
