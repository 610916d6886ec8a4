"""sync_pipeline.apps.dagster_api against a real dagster-webserver and dagster-daemon.

The stack is started once per session (`DagsterStack`, shared with test_flask.py):
the webserver and the daemon on the repository's workspace.yaml, a throwaway
DAGSTER_HOME with Dagster's default instance (runs are queued and launched by
the daemon, as under `make ui`), and a spec file whose specs read tables made
for this session only. Runs really execute, against the real PostgreSQL and
Elasticsearch.
"""

from __future__ import annotations

import contextlib
import json
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
from sync_pipeline.apps.dagster_api import reports
from sync_pipeline.core.specs import SyncSpec, parse_specs
from sync_pipeline.defs.partitions import partition_keys_for
from sync_pipeline.io.postgres import engine_for
from sync_pipeline.io.search import SearchNotFound, search_client

from .conftest import free_port, stop_process_groups

ROOT = Path(__file__).resolve().parent.parent
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


@pytest.fixture(scope="session")
def stack(service_urls, tmp_path_factory) -> Iterator[DagsterStack]:
    with DagsterStack.shared(service_urls, tmp_path_factory) as running:
        yield running


def month_day(key: str, day: int = 15) -> str:
    return f"{key[:8]}{day:02d} 12:00:00+00"


# --- tests ---------------------------------------------------------------------------------------


@pytest.mark.integration
def test_full_sync_is_one_run_reported_batch_by_batch(stack: DagsterStack):
    spec, keys = stack.spec("api"), stack.partition_keys("api")
    stack.insert("api", range(1, 121), month_day(keys[1]))
    stack.insert("api", range(1000, 1280), month_day(keys[2]))
    stack.insert("api", range(121, 124), None)  # NULL updated_at: owned by the first partition
    stack.insert("api", [124, 125], "2099-01-01 00:00:00+00")  # future: owned by the newest one
    stack.execute(f"UPDATE {stack.table('api')} SET deleted = true WHERE id IN (3, 4)")

    run_id = dagster_api.launch_full_sync(stack.url, spec, run_config=dagster_api.IN_PROCESS)

    status = dagster_api.wait_for_run(stack.url, run_id, timeout=RUN_TIMEOUT)
    report = dagster_api.run_report(stack.url, run_id)
    assert status == "SUCCESS", (report["errors"], stack.logs())
    assert report["status"] == "SUCCESS" and report["job_name"] == f"{spec.name}_sync"
    assert report["partition_range"] == {"start": keys[0], "end": keys[-1]}
    assert report["spec"] == spec.name and report["tags"]["sync_pipeline/spec"] == spec.name
    assert report["start_time"] <= report["end_time"] and report["end_time"].endswith("Z")
    # every bulk batch of the load, from the table its end logs (defs/reporting.BatchProgress; the
    # run page shows the same TableMetadataEntry), not only its progress observations' sums
    batches = report["batches"]
    assert [(b["asset"], b["batch"], b["batches"]) for b in batches] == [
        (f"{spec.name}_index", number, 1) for number in range(1, 10)
    ]
    assert [b["indexed"] + b["deleted"] for b in batches] == [50] * 8 + [5]
    assert sum(b["deleted"] for b in batches) == 2
    assert all(b["failed"] == 0 and b["dead_lettered"] == 0 and b["seconds"] >= 0 for b in batches)
    totals = report["totals"]
    assert (totals["extracted"], totals["indexed"], totals["deleted"], totals["failed"]) == (405, 403, 2, 0)
    assert totals["batches"] == 9 and totals["claimed"] is None and totals["docs_per_s"] > 0
    assert report["errors"] == []
    documents = stack.documents("api")
    assert len(documents) == 403 and "3" not in documents and "124" in documents and "1279" in documents
    assert documents["1"]["title"] == "item 1 商品"

    (latest, *_) = dagster_api.recent_runs(stack.url, spec.name, limit=5)
    assert latest["run_id"] == run_id and latest["totals"] == totals and "batches" not in latest
    assert run_id not in {r["run_id"] for r in dagster_api.recent_runs(stack.url, stack.table("web"))}


@pytest.mark.integration
def test_backfill_runs_the_range_as_one_run_and_materializes_it(stack: DagsterStack):
    spec, keys = stack.spec("backfill"), stack.partition_keys("backfill")
    stack.insert("backfill", range(1, 31), month_day(keys[1]))
    stack.insert("backfill", range(31, 61), month_day(keys[2], 3))
    stack.insert("backfill", range(61, 71), month_day(keys[3]))  # outside the backfill

    # through the CLI, as a user would: `sync-pipeline backfill` against the running webserver
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "sync_pipeline.apps.cli",
            "--config",
            str(stack.spec_path),
            "backfill",
            "--spec",
            spec.name,
            "--start",
            keys[1],
            "--end",
            f"{keys[2]}T12:00:00",
            "--dagster-url",
            stack.url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert launched.returncode == 0, launched.stderr
    backfill_id = launched.stdout.split()[1].rstrip(":")
    assert f"{keys[1]} … {keys[2]} (2 partitions)" in launched.stdout

    backfill = dagster_api.wait_for_backfill(stack.url, backfill_id, timeout=RUN_TIMEOUT)
    assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, stack.logs())
    assert backfill["partitions"] == keys[1:3] and backfill["tags"]["sync_pipeline/spec"] == spec.name
    # BackfillPolicy.single_run: one run over the whole range, not one per partition
    (run,) = backfill["runs"]
    assert run["status"] == "SUCCESS"
    assert run["tags"]["dagster/asset_partition_range_start"] == keys[1]
    assert run["tags"]["dagster/asset_partition_range_end"] == keys[2]
    report = dagster_api.run_report(stack.url, run["run_id"])
    assert report["backfill_id"] == backfill_id and report["spec"] == spec.name
    assert report["totals"]["indexed"] == 60 and report["totals"]["extracted"] == 60

    statuses = dagster_api.partition_status(stack.url, spec.name)
    assert set(statuses) == {f"{spec.name}_extract", f"{spec.name}_documents", f"{spec.name}_index"}
    for asset, status in statuses.items():
        assert status["materialized"] == keys[1:3], asset
        assert status["missing"] == [keys[0], *keys[3:]], asset
    assert sorted(map(int, stack.documents("backfill"))) == list(range(1, 61))


@pytest.mark.integration
def test_failures_are_clear_and_name_the_url_not_the_password(stack: DagsterStack):
    closed = f"http://admin:hunter2@127.0.0.1:{free_port()}"
    for call in (
        lambda: dagster_api.launch_drain(closed, "anything"),
        lambda: dagster_api.run_report(closed, "some-run"),
        lambda: dagster_api.launch_backfill(closed, "anything", "a", "b"),
    ):
        with pytest.raises(dagster_api.DagsterUnreachableError) as caught:
            call()
        assert "127.0.0.1" in str(caught.value) and "hunter2" not in str(caught.value)
        assert caught.value.url == closed.replace("hunter2", "***")

    with pytest.raises(dagster_api.DagsterNotFoundError, match="no_such_spec_drain"):
        dagster_api.launch_drain(stack.url, "no_such_spec")
    with pytest.raises(dagster_api.DagsterNotFoundError, match=stack.url):
        dagster_api.run_report(stack.url, str(uuid.uuid4()))
    with pytest.raises(dagster_api.DagsterNotFoundError):
        dagster_api.backfill_status(stack.url, "nosuchbf")
    with pytest.raises(dagster_api.DagsterNotFoundError, match="no_such_spec"):
        dagster_api.launch_full_sync(stack.url, "no_such_spec")
    # Dagster itself would accept these and fail later
    with pytest.raises(ValueError, match="1999-01-01"):
        dagster_api.launch_backfill(stack.url, stack.table("backfill"), "1999-01-01", "1999-02-01")
    keys = stack.partition_keys("backfill")
    with pytest.raises(ValueError, match="reversed"):
        dagster_api.launch_full_sync(stack.url, stack.spec("backfill"), [keys[2], keys[1]])
    with pytest.raises(dagster_api.DagsterApiError, match="Cannot query field"):
        dagster_api.graphql(stack.url, "{ noSuchField }")


def test_url_resolution_and_redaction(monkeypatch):
    monkeypatch.delenv("SYNC_DAGSTER_URL", raising=False)
    assert dagster_api.resolve_url() == "http://127.0.0.1:3000"
    monkeypatch.setenv("SYNC_DAGSTER_URL", "https://dagster.internal:8443/prefix/")
    assert dagster_api.resolve_url() == "https://dagster.internal:8443/prefix"
    assert dagster_api.resolve_url("http://other:3000") == "http://other:3000"
    assert dagster_api.redact_url("https://u:p%40ss@h:1/x?token=t#f") == "https://u:***@h:1/x"
    with pytest.raises(dagster_api.DagsterApiError, match="invalid Dagster webserver URL"):
        dagster_api.run_report("ftp://host", "x")


def _observation(asset: str, table: list[dict] | None = None, **numbers: int) -> dict:
    """An ObservationEvent as logsForRun returns it (the shape the integration tests read)."""
    entries = [{"__typename": "IntMetadataEntry", "label": k, "intRepr": str(v)} for k, v in numbers.items()]
    if table is not None:
        records = {"records": [json.dumps(row) for row in table]}
        entries.append({"__typename": "TableMetadataEntry", "label": "batch_table", "table": records})
    return {"__typename": "ObservationEvent", "assetKey": {"path": [asset]}, "metadataEntries": entries}


def _sums(report: dict) -> tuple[int, int, int]:
    return report["totals"]["batches"], report["totals"]["indexed"], report["totals"]["failed"]


def test_a_loading_sync_reports_its_progress_until_its_batch_table_lists_every_batch():
    run = {"runId": "r", "jobName": "shop_sync", "status": "STARTED", "tags": []}
    loading = [
        _observation("shop_index", batch=1, first_batch=1, batches=1, indexed=50),
        _observation("shop_index", batch=2, failed=3, indexed=47),  # a batch with a problem, at once
        _observation("shop_index", batch=4, first_batch=3, batches=2, indexed=90),
    ]
    report = reports._summarise(run, loading)
    assert [(b["batch"], b["batches"]) for b in report["batches"]] == [(1, 1), (2, 1), (4, 2)]
    assert _sums(report) == (4, 187, 3)

    rows = [
        {"batch": 4, "indexed": 40, "failed": 0},  # concurrent requests end out of order
        {"batch": 1, "indexed": 50, "failed": 0},
        {"batch": 3, "indexed": 50, "failed": 0},
        {"batch": 2, "indexed": 47, "failed": 3},
    ]
    ended = [*loading, _observation("shop_index", table=rows)]
    report = reports._summarise({**run, "status": "SUCCESS"}, ended)
    assert [(b["batch"], b["indexed"], b["failed"], b["batches"]) for b in report["batches"]] == [
        (1, 50, 0, 1),
        (2, 47, 3, 1),
        (3, 50, 0, 1),
        (4, 40, 0, 1),
    ]
    assert _sums(report) == (4, 187, 3)
