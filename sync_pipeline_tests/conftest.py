"""Shared fixtures. Integration tests get the real local PostgreSQL and
Elasticsearch, brought up by the same code users run (`services.ensure_services`),
or the servers named by SYNC_PG_URL / SYNC_ES_URL when those are set."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipeline.core.spec.model import SyncSpec, parse_specs
from sync_pipeline.io.postgres import engine_for
from sync_pipeline.io.search import search_client
from sync_pipeline.io.search.indices import drop_target
from sync_pipeline_devtools import services


def indexed(es, index: str) -> dict[str, dict]:
    """Every document of a (small) test index, by _id, after a refresh."""
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=10_000, query={"match_all": {}})["hits"]["hits"]
    return {h["_id"]: h["_source"] for h in hits}


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process_groups(processes: Iterable[subprocess.Popen], grace: float = 30.0) -> None:
    """SIGTERM each process's group, SIGKILL whatever is left of it after `grace` seconds.

    `dagster dev` and `dagster-webserver` run code servers and run workers in their group; a slow
    shutdown must neither fail the test that used them nor leave them polling the services."""
    processes = list(processes)
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_until(condition, timeout: float, what: str, pause: float = 1.0):
    """`condition()`'s first truthy value, polled every `pause` seconds; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(pause)


def at(text: str) -> datetime:
    """A UTC instant from an ISO date or timestamp."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (scenario, rows changed, drift after, dead letters[, metrics agree]) from the fault-injection
# suite; "metrics agree" is metrics_agreement.metrics_agree's "yes", "-" where it is not checked
CHAOS_RESULTS: list[tuple[str, int, int, int] | tuple[str, int, int, int, str]] = []
CHAOS_COLUMNS = ["scenario", "rows changed", "drift after", "dead letters", "metrics agree"]


# Fixtures more than one test module uses, beside the helpers they belong with.
pytest_plugins = [
    "sync_pipeline_tests.support.alerts",
    "sync_pipeline_tests.support.capture_health",
    "sync_pipeline_tests.support.logical",
    "sync_pipeline_tests.support.rebuild",
]

# A test's kind is the folder it sits in, and its marker follows from it (`-m unit`, `-m chaos` ...):
# unit (no server, no network: enforced below), integration (the real servers, no fault injected),
# chaos (fault injection against the real servers, `make chaos`) and e2e (the product driven from the
# outside as a user does: the demo, the browser UI, the installed wheel, Celery workers).
KINDS = ("unit", "integration", "chaos", "e2e")
TESTS = Path(__file__).resolve().parent

# The compatibility subset: the guarantees every supported search server must keep, run by
# `make compat` against Elasticsearch 8, OpenSearch 2 and OpenSearch 3 (the whole suite runs
# against Elasticsearch 9). Listed here, by test (a path under sync_pipeline_tests/), so the
# subset is one list to read.
COMPATIBILITY_SUBSET = (
    "unit/test_compatibility.py::",
    "integration/test_compatibility.py::",
    "e2e/test_demo_and_ui.py::test_demo_seeds_syncs_and_verifies_clean",
    "integration/test_relations.py::test_a_document_carries_its_related_rows_as_objects_and_arrays",
    "integration/test_relations.py::test_child_insert_update_and_delete_reach_their_parents",
    "integration/test_relations.py::test_a_deleted_root_row_deletes_its_document_and_unread_columns_change_nothing",
    "integration/test_relations.py::test_an_older_read_arriving_after_a_drain_of_a_child_change_is_refused",
    "integration/test_logical.py::test_updates_deletes_key_changes_and_truncate_reach_the_index",
    "integration/test_keys_versions.py::test_a_version_from_the_future_is_a_conflict_that_fails_the_drain",
    "integration/test_correctness.py::test_refused_documents_become_dead_letters_and_replay_after_a_fix",
    "integration/test_correctness.py::test_verify_fix_repairs_every_kind_of_drift",
    "integration/test_mappings.py::test_each_kind_of_mapping_conflict_stops_the_sync_before_any_write",
    "integration/test_rebuild.py::test_rebuild_swaps_the_alias_and_loses_no_write_made_meanwhile",
    "integration/test_cli.py::test_search_shows_the_top_hits_with_highlights",
    "integration/test_cli.py::test_sync_and_verify_commands_exit_codes",
    "integration/test_cli_conventions.py::test_validate_with_servers_reports_every_spec_problem_at_once_exit_1_writing_nothing",
)


def kind_of(path: Path) -> str | None:
    """The kind of a test module: the folder under sync_pipeline_tests/ it sits in."""
    try:
        folder = path.resolve().relative_to(TESTS).parts[0]
    except ValueError:
        return None
    return folder if folder in KINDS else None


def pytest_configure(config: pytest.Config) -> None:
    """A CI runner may start the suite as a background job of a non-interactive shell, which
    ignores SIGINT. Dagster sets SIGTERM to SIGINT's handler after every in-process run, so from
    the first one on, every process a test starts (`dagster dev`, the CLI, a search node) would
    ignore SIGTERM too, and each stop would wait out its grace before SIGKILL: minutes of the
    suite (unit/test_sigterm_kept.py pins the product's own paths)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = kind_of(item.path)
        if kind is None:
            # `make test` runs the folders: a test outside them would never run there
            raise pytest.UsageError(f"{item.nodeid}: a test goes in one of {', '.join(KINDS)} under {TESTS}")
        item.add_marker(getattr(pytest.mark, kind))
        test = item.path.resolve().relative_to(TESTS).as_posix() + "::" + item.name
        if any(test.startswith(entry) for entry in COMPATIBILITY_SUBSET):
            item.add_marker(pytest.mark.compat)


class ServersInUnitTest(RuntimeError):
    """A test in unit/ asked for the servers."""


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test in unit/ that asks for the servers (`service_urls`, or a fixture that needs it:
    `live`, `pg`, `es`, `scenario` ...) fails before any fixture runs, so `make unit` never starts
    or waits for a server: such a test belongs in integration/ (or chaos/, e2e/)."""
    if kind_of(item.path) == "unit" and "service_urls" in getattr(item, "fixturenames", ()):
        raise ServersInUnitTest(
            f"{item.nodeid} asks for the servers (service_urls): a unit test needs none, "
            "move it to sync_pipeline_tests/integration/"
        )


class NetworkInUnitTest(RuntimeError):
    """A test in unit/ tried to reach a server."""


@pytest.fixture(autouse=True)
def no_network_in_unit_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test that connects to a server it did not start fails, naming where: `make unit`
    needs no PostgreSQL, no search server and no network, so such a test belongs in integration/.
    A server the test runs in its own process (a webhook receiver on 127.0.0.1) is the test's own:
    connecting to a port bound in this process is allowed."""
    if kind_of(request.node.path) != "unit":
        return
    own_ports: set[int] = set()
    real_bind, real_connect, real_connect_ex = (
        socket.socket.bind,
        socket.socket.connect,
        socket.socket.connect_ex,
    )

    def bind(sock: socket.socket, address: Any) -> None:
        real_bind(sock, address)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            own_ports.add(sock.getsockname()[1])

    def allowed(sock: socket.socket, address: Any) -> bool:
        if sock.family == socket.AF_UNIX:
            return True
        return (
            isinstance(address, tuple)
            and address[0] in ("127.0.0.1", "::1", "localhost")
            and (address[1] in own_ports)
        )

    def connect(sock: socket.socket, address: Any) -> None:
        if not allowed(sock, address):
            raise NetworkInUnitTest(f"{request.node.nodeid} connects to {address!r}: move it to integration/")
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if not allowed(sock, address):
            raise NetworkInUnitTest(f"{request.node.nodeid} connects to {address!r}: move it to integration/")
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "bind", bind)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


def pytest_terminal_summary(terminalreporter) -> None:
    if not CHAOS_RESULTS:
        return
    from sync_pipeline.apps.cli.output import format_table

    terminalreporter.write_sep("=", "fault injection: drift after each scenario (must be 0)")
    rows = [(*row, "-") if len(row) < len(CHAOS_COLUMNS) else row for row in CHAOS_RESULTS]
    terminalreporter.write_line(format_table(CHAOS_COLUMNS, rows))


@pytest.fixture(scope="session")
def service_urls() -> services.ServiceUrls:
    return services.ensure_services()


@pytest.fixture(scope="session")
def secure_node(service_urls: services.ServiceUrls):
    """The local Elasticsearch with security and HTTPS on, started by the project's own code."""
    return services.up_secure()


@pytest.fixture(scope="session", autouse=True)
def isolated_dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Runs made by tests land in a throwaway instance, not the developer's."""
    home = tmp_path_factory.mktemp("dagster_home")
    staging = tmp_path_factory.mktemp("staging")
    saved = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "SYNC_STAGING_DIR")}
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["SYNC_STAGING_DIR"] = str(staging)
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture()
def live(service_urls: services.ServiceUrls, monkeypatch: pytest.MonkeyPatch):
    """Real servers, exported the way the CLI exports them."""
    monkeypatch.setenv("SYNC_PG_URL", service_urls.pg_url)
    monkeypatch.setenv("SYNC_ES_URL", service_urls.es_url)
    return service_urls


@pytest.fixture()
def pg(live) -> sa.Engine:
    return engine_for(live.pg_url)


@pytest.fixture()
def es(live):
    return search_client(live.es_url)


@dataclass
class Scenario:
    """A throwaway source table and target index for one test."""

    table: str
    index: str
    engine: sa.Engine
    es: object

    def spec(self, **overrides: str) -> SyncSpec:
        return parse_specs(self.spec_text(**overrides), origin="test")[0]

    def spec_file(self, directory: Path, **overrides: str) -> Path:
        path = directory / "sync.yaml"
        path.write_text(self.spec_text(**overrides))
        return path

    def spec_text(self, **overrides: str) -> str:
        fields = {
            "grain": "month",
            "start": "2026-01-01",
            "batch_size": "50",
            "source": f"table: {self.table}",
            "extra": "",
        } | overrides
        text = f"""
specs:
  - name: {self.table}
    source:
      {fields["source"]}
      primary_key: id
      updated_at: updated_at
{fields["extra"]}
    target:
      index: {self.index}
    partitions:
      grain: {fields["grain"]}
      start: "{fields["start"]}"
    batch_size: {fields["batch_size"]}
    fields:
      title: {{cleanse: [trim, empty_to_null]}}
"""
        return text

    def execute(self, sql: str, params: dict | list | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), params or {})


@pytest.fixture()
def scenario(pg, es) -> Iterator[Scenario]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    scen = Scenario(table=name, index=name, engine=pg, es=es)
    scen.execute(
        f"""CREATE TABLE {name} (
            id bigint PRIMARY KEY,
            title text,
            price numeric(10, 2),
            payload jsonb,
            tags text[],
            deleted boolean NOT NULL DEFAULT false,
            updated_at timestamptz
        )"""
    )
    yield scen
    scen.execute(f"DROP TABLE IF EXISTS {name}")
    drop_target(es, name)


@pytest.fixture()
def insert_rows(scenario: Scenario) -> Callable[..., None]:
    def insert(ids: range | list[int], updated_at: str | None, **values: object) -> None:
        rows = [
            {
                "id": i,
                "title": values.get("title", f"  item {i} 商品 "),
                "price": values.get("price", "19.90"),
                "payload": values.get("payload", '{"color": "红", "size": [1, 2]}'),
                "tags": values.get("tags", ["a", "b"]),
                "updated_at": updated_at,
            }
            for i in ids
        ]
        scenario.execute(
            f"INSERT INTO {scenario.table} (id, title, price, payload, tags, updated_at) "
            "VALUES (:id, :title, :price, CAST(:payload AS jsonb), :tags, CAST(:updated_at AS timestamptz))",
            rows,
        )

    return insert
