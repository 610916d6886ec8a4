"""A real dagster-webserver and dagster-daemon on the repository's workspace.yaml, started once
per session (`DagsterStack`), for the Dagster API client and the Flask blueprint tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.apps import dagster_api
from sync_pipeline.core.spec.model import SyncSpec, parse_specs
from sync_pipeline.defs.partitions import partition_keys_for
from sync_pipeline.io.postgres import engine_for
from sync_pipeline.io.search import SearchNotFound, search_client
from sync_pipeline_tests.conftest import free_port, stop_process_groups
from sync_pipeline_tests.support.paths import ROOT

BIN = Path(sys.executable).parent
RUN_TIMEOUT = 240.0
ROLES = ("api", "backfill", "web")


def drop_index(es, name: str) -> None:
    """The index of that name, or every index behind the alias of that name."""
    with contextlib.suppress(SearchNotFound):
        for index in es.indices.get(index=name):
            es.indices.delete(index=index, ignore_unavailable=True)


def _months_ago(now: datetime, months: int) -> str:
    index = now.year * 12 + now.month - 1 - months
    return f"{index // 12:04d}-{index % 12 + 1:02d}-01"


class DagsterStack:
    """A real Dagster deployment of this repository for the tests of one session.

    Specs `<prefix>_api`, `<prefix>_backfill` and `<prefix>_web`, one per test
    that launches runs, each reading its own table into its own index; monthly
    partitions starting four months ago (so five partitions, the newest open).
    """

    _shared: ClassVar[DagsterStack | None] = None
    _users: ClassVar[int] = 0

    def __init__(
        self, directory: Path, pg_url: str, es_url: str, extra_env: dict[str, str] | None = None, es=None
    ) -> None:
        self.directory = directory
        self.pg_url, self.es_url = pg_url, es_url
        self.extra_env = extra_env or {}  # credentials and TLS settings of a secured node
        self.prefix = f"fx{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.engine = engine_for(pg_url)
        self.es = es if es is not None else search_client(es_url)
        self.start = _months_ago(datetime.now(UTC), 4)
        self.spec_path = directory / "sync.yaml"
        self.spec_path.write_text(self._spec_text())
        self.specs = {s.name.rsplit("_", 1)[1]: s for s in parse_specs(self.spec_path.read_text())}
        self.processes: list[tuple[subprocess.Popen, Path]] = []

    # --- the specs and their tables ----------------------------------------------------------

    def table(self, role: str) -> str:
        return f"{self.prefix}_{role}"

    def spec(self, role: str) -> SyncSpec:
        return self.specs[role]

    def partition_keys(self, role: str) -> list[str]:
        return partition_keys_for(self.spec(role), None, None)

    def _spec_text(self) -> str:
        entries = "".join(
            f"""
  - name: {self.table(role)}
    source:
      table: {self.table(role)}
      primary_key: id
      updated_at: updated_at
      soft_delete: deleted
    target:
      index: {self.table(role)}
    partitions:
      grain: month
      start: "{self.start}"
    schedule: {{catch_up: false}}  # the test launches every run it counts
    batch_size: 50
    fields:
      title: {{cleanse: [trim, empty_to_null]}}
"""
            for role in ROLES
        )
        return "specs:" + entries

    def execute(self, sql: str, params: dict | list | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), params or {})

    def insert(self, role: str, ids: range | list[int], updated_at: str | None, **values: object) -> None:
        self.execute(
            f"INSERT INTO {self.table(role)} (id, title, price, updated_at) "
            "VALUES (:id, :title, :price, CAST(:updated_at AS timestamptz))",
            [
                {
                    "id": i,
                    "title": values.get("title", f"  item {i} 商品 "),
                    "price": values.get("price", "19.90"),
                    "updated_at": updated_at,
                }
                for i in ids
            ],
        )

    def documents(self, role: str) -> dict[str, dict]:
        index = self.table(role)
        if not self.es.indices.exists(index=index):
            return {}
        self.es.indices.refresh(index=index)
        hits = self.es.search(index=index, size=10_000, query={"match_all": {}})["hits"]["hits"]
        return {h["_id"]: h["_source"] for h in hits}

    # --- processes ---------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        home = self.directory / "dagster_home"
        home.mkdir(exist_ok=True)
        # Dagster's default instance otherwise (QueuedRunCoordinator, DefaultRunLauncher, SQLite)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        staging = self.directory / "staging"
        staging.mkdir(exist_ok=True)
        return {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "SYNC_CONFIG": str(self.spec_path),
            "SYNC_STAGING_DIR": str(staging),
            "SYNC_PG_URL": self.pg_url,
            "SYNC_ES_URL": self.es_url,
            **self.extra_env,
        }

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = self.directory / f"{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its code servers and run workers share its process group
            )
        self.processes.append((process, log))

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for _, log in self.processes)

    def up(self) -> None:
        for role in ROLES:
            self.execute(
                f"""CREATE TABLE {self.table(role)} (
                    id bigint PRIMARY KEY,
                    title text,
                    price numeric(10, 2),
                    deleted boolean NOT NULL DEFAULT false,
                    updated_at timestamptz
                )"""
            )
        env = self._environment()
        # create the SQLite storage once, here: the webserver and the daemon racing to create it
        # at start-up is a known way for one of them to die
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            instance.get_runs(limit=1)
        workspace = str(ROOT / "workspace.yaml")
        self._spawn(
            "webserver",
            [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(self.port)],
            env,
        )
        self._spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace], env)
        deadline = time.monotonic() + 180
        while True:
            for process, _ in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a Dagster process exited early\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dagster-webserver did not answer in 180 s\n{self.logs()}") from None
                time.sleep(1)
        entries = dagster_api.graphql(
            self.url,
            "{ workspaceOrError { ... on Workspace { locationEntries { name "
            "locationOrLoadError { __typename ... on PythonError { message } } } } } }",
        )["workspaceOrError"]["locationEntries"]
        loaded = {e["name"]: e["locationOrLoadError"] for e in entries}
        if (loaded.get("sync_pipeline") or {}).get("__typename") != "RepositoryLocation":
            raise RuntimeError(f"code location did not load: {loaded}\n{self.logs()}")

    def down(self) -> None:
        stop_process_groups(process for process, _ in self.processes)
        for role in ROLES:
            self.execute(f"DROP TABLE IF EXISTS {self.table(role)}")
            drop_index(self.es, self.table(role))

    @classmethod
    @contextlib.contextmanager
    def shared(cls, service_urls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterStack]:
        """One stack per session, however many test modules ask for it."""
        if cls._shared is None:
            stack = cls(tmp_path_factory.mktemp("dagster_stack"), service_urls.pg_url, service_urls.es_url)
            try:
                stack.up()
            except BaseException:
                stack.down()
                raise
            cls._shared = stack
        cls._users += 1
        try:
            yield cls._shared
        finally:
            cls._users -= 1
            if cls._users == 0:
                cls._shared.down()
                cls._shared = None


def month_day(key: str, day: int = 15) -> str:
    return f"{key[:8]}{day:02d} 12:00:00+00"
