"""What we install in the user's database can neither be abused nor break the application's
writes (real servers).

An intruder is a login role with only what every role has on a database by default: CONNECT
and TEMP. It tries to borrow the capture's SECURITY DEFINER functions — attached to a temporary
table of its own — to write keys, a TRUNCATE and links into the owner's buffer, and to run its
own code with the owner's rights through a cast to json. The application's own writes, with
values `to_jsonb` rejects and under two-phase commit, must keep working.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from sync_pipeline.apps.cli.runner import Servers, run_drain, run_sync, run_verify
from sync_pipeline.core.cdc.triggers import marker
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io.search.indices import drop_target
from sync_pipeline.ops.capture import CaptureError, install_capture, uninstall_capture
from sync_pipeline.settings import LockSettings
from sync_pipeline_tests.conftest import Scenario, indexed

PASSWORD = uuid.uuid4().hex


def _login(url: str, role: str) -> sa.Engine:
    url = url.replace("postgresql://", "postgresql+psycopg://").replace("sync:sync@", f"{role}:{PASSWORD}@")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT")


def _buffered(engine: sa.Engine, spec: str) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "SELECT source, pk, op, link FROM public.sync_pipeline_buffer WHERE spec = :s ORDER BY id"
                ),
                {"s": spec},
            )
        ]


def _clear(engine: sa.Engine, spec: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM public.sync_pipeline_buffer WHERE spec = :s"), {"s": spec})


@pytest.fixture()
def intruder(live, scenario: Scenario) -> Iterator[tuple[str, sa.Engine]]:
    """A login role with the database's defaults only (CONNECT and TEMP, granted to PUBLIC)."""
    role = f"intruder_{uuid.uuid4().hex[:8]}"
    scenario.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    engine = _login(live.pg_url, role)
    yield role, engine
    engine.dispose()
    _drop_role(scenario, role)


def _drop_role(scenario: Scenario, role: str) -> None:
    """Drop a role once its sessions have ended.

    A backend drops its temporary tables on exit, after the client has hung up: dropping the
    role straight after `dispose()` can race that and fail on the intruder's own temp table.
    """
    count = sa.text("SELECT count(*) FROM pg_stat_activity WHERE usename = :r")
    terminate = sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r")
    started = time.monotonic()
    with scenario.engine.connect() as conn:
        while conn.execute(count, {"r": role}).scalar():
            waited = time.monotonic() - started
            assert waited < 60, f"{role}'s sessions did not end"
            if waited > 10:
                conn.execute(terminate, {"r": role})
            conn.rollback()
            time.sleep(0.05)
    scenario.execute(f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM {role}; DROP ROLE {role}")


@pytest.fixture()
def captured(scenario: Scenario, insert_rows) -> Iterator:
    insert_rows(range(1, 6), "2026-02-01 00:00:00+00")
    spec = scenario.spec()
    install_capture(scenario.engine, spec)
    _clear(scenario.engine, spec.name)
    yield spec
    uninstall_capture(scenario.engine, spec)
    _clear(scenario.engine, spec.name)


def _function(engine: sa.Engine, spec) -> str:
    """The root table's capture function, found by its marker comment (as uninstall finds it)."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT CAST(oid AS regprocedure)::text FROM pg_proc "
                "WHERE obj_description(oid, 'pg_proc') = :m"
            ),
            {"m": marker(spec.name, spec.source.table)},
        ).scalar_one()


ATTACKS = {
    # (a) a key the claim's cast refuses: every later drain of the spec would fail
    "a forged key": "CREATE TEMP TABLE loot (id text); "
    "CREATE TRIGGER t AFTER INSERT ON pg_temp.loot FOR EACH ROW EXECUTE FUNCTION {function}; "
    "INSERT INTO pg_temp.loot VALUES ('abc')",
    # a forged TRUNCATE: the next drain would verify --fix the whole spec
    "a forged truncate": "CREATE TEMP TABLE loot (id bigint); "
    "CREATE TRIGGER t AFTER TRUNCATE ON pg_temp.loot FOR EACH STATEMENT EXECUTE FUNCTION {function}; "
    "TRUNCATE pg_temp.loot",
    # (b) the intruder's own code run with the owner's rights, through a cast to json
    "a cast to json": "CREATE TYPE pg_temp.evil AS (x int); "
    "CREATE FUNCTION pg_temp.evil_json(pg_temp.evil) RETURNS json LANGUAGE sql "
    "AS $$ SELECT to_json(set_config('sync_test.ran_as', current_user::text, false)) $$; "
    "CREATE CAST (pg_temp.evil AS json) WITH FUNCTION pg_temp.evil_json(pg_temp.evil); "
    "CREATE TEMP TABLE loot (id bigint, e pg_temp.evil); "
    "CREATE TRIGGER t AFTER INSERT ON pg_temp.loot FOR EACH ROW EXECUTE FUNCTION {function}; "
    "INSERT INTO pg_temp.loot VALUES (1, ROW(1))",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_role_with_only_connect_and_temp_cannot_borrow_a_capture_function(
    scenario, captured, intruder, live, attack
):
    _, engine = intruder
    with engine.connect() as conn, pytest.raises(DBAPIError, match="permission denied for function"):
        for statement in ATTACKS[attack].format(function=_function(scenario.engine, captured)).split("; "):
            conn.execute(sa.text(statement))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_setting('sync_test.ran_as', true)")).scalar() in (
            None,
            "",
        )
    assert _buffered(scenario.engine, captured.name) == []
    # the application's writes still go through the triggers, and a drain applies them
    scenario.execute(f"UPDATE {scenario.table} SET title = 'after the attack' WHERE id = 2")
    assert [row[2] for row in _buffered(scenario.engine, captured.name)] == ["U"]
    servers = Servers(live.pg_url, live.es_url)
    assert run_sync(captured, servers=servers).success
    summary = run_drain(captured, servers=servers)
    assert summary.success and summary.indexed == 1, summary.error
    assert indexed(scenario.es, scenario.index)["2"]["title"] == "after the attack"


def test_a_function_granted_by_mistake_still_records_nothing_for_another_table(scenario, captured, intruder):
    """EXECUTE granted anyway (default privileges, a careless GRANT): the function refuses any
    table but its own, before it reads a single value of the row."""
    role, engine = intruder
    scenario.execute(f"GRANT EXECUTE ON FUNCTION {_function(scenario.engine, captured)} TO {role}")
    for attack in ATTACKS.values():
        with engine.connect() as conn:
            for statement in attack.format(function=_function(scenario.engine, captured)).split("; "):
                conn.execute(sa.text(statement))
            assert conn.execute(sa.text("SELECT current_setting('sync_test.ran_as', true)")).scalar() in (
                None,
                "",
            )
            conn.execute(sa.text("DISCARD TEMP"))
    assert _buffered(scenario.engine, captured.name) == []
    # a re-install takes EXECUTE back from every role it was granted to
    install_capture(scenario.engine, captured)
    with scenario.engine.connect() as conn:
        allowed = conn.execute(
            sa.text("SELECT has_function_privilege(:r, :f, 'EXECUTE')"),
            {"r": role, "f": _function(scenario.engine, captured)},
        ).scalar()
    assert allowed is False


def test_a_value_to_jsonb_rejects_never_fails_the_applications_write(scenario, live, insert_rows):
    """A `json` value with \\u0000 (jsonb refuses it) in a column the spec drops, and in one a
    related table's documents read: the writes succeed and the changes are buffered."""
    s = f"s_{uuid.uuid4().hex[:8]}"
    scenario.execute(
        f"ALTER TABLE {scenario.table} ADD COLUMN extra json, ADD COLUMN brand_id int; "
        f"CREATE SCHEMA {s}; CREATE TABLE {s}.brands (id int PRIMARY KEY, name text, notes json)"
    )
    insert_rows(range(1, 4), "2026-02-01 00:00:00+00")
    scenario.execute(
        f"INSERT INTO {s}.brands VALUES (1, 'Acme', '{{}}'); UPDATE {scenario.table} SET brand_id = 1"
    )
    relation = f"""      relations:
        - name: brand
          table: {s}.brands
          kind: many_to_one
          on: {{id: brand_id}}
          columns: [name, notes]"""
    text = scenario.spec_text(extra=relation).replace("fields:\n", "fields:\n      extra: {drop: true}\n")
    spec = parse_specs(text)[0]
    servers = Servers(live.pg_url, live.es_url)
    nul = '{"a": "x\\u0000y"}'
    try:
        assert run_sync(spec, servers=servers).success
        install_capture(scenario.engine, spec)
        scenario.execute(f"UPDATE {scenario.table} SET extra = '{nul}', title = 'nul' WHERE id = 1")
        assert [(r[0], r[2]) for r in _buffered(scenario.engine, spec.name)] == [(None, "U")]
        # what the drain's re-read makes of the value is issue 30's (a dead letter, not a stuck
        # stream); with the value repaired, the buffered change arrives
        scenario.execute(f"UPDATE {scenario.table} SET extra = NULL WHERE id = 1")
        assert run_drain(spec, servers=servers).success
        assert indexed(scenario.es, scenario.index)["1"]["title"] == "nul"
        # a value the documents read: the write succeeds and the change is buffered (what the drain
        # makes of a row it cannot represent is its own business, never the application's)
        scenario.execute(f"UPDATE {s}.brands SET name = 'Acme 2', notes = '{nul}'")
        assert [(r[0], r[2]) for r in _buffered(scenario.engine, spec.name)] == [("brand", "U")]
    finally:
        uninstall_capture(scenario.engine, spec)
        _clear(scenario.engine, spec.name)
        scenario.execute(f"DROP SCHEMA {s} CASCADE")


def test_two_phase_commit_works_on_a_captured_table(scenario, captured, live):
    with scenario.engine.connect() as conn:
        if int(conn.execute(sa.text("SHOW max_prepared_transactions")).scalar()) == 0:
            pytest.skip("this PostgreSQL has max_prepared_transactions = 0 (the local one enables it)")
    gid = f"sync_test_{uuid.uuid4().hex[:8]}"
    with scenario.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("BEGIN"))
        conn.execute(sa.text(f"UPDATE {scenario.table} SET title = 'two-phase' WHERE id = 3"))
        conn.execute(sa.text(f"PREPARE TRANSACTION '{gid}'"))
        conn.execute(sa.text(f"COMMIT PREPARED '{gid}'"))
    assert [row[2] for row in _buffered(scenario.engine, captured.name)] == ["U"]
    servers = Servers(live.pg_url, live.es_url)
    assert run_sync(captured, servers=servers).success
    assert run_drain(captured, servers=servers).success
    assert indexed(scenario.es, scenario.index)["3"]["title"] == "two-phase"
    assert run_verify([captured], [captured], servers=servers)[0].ok


@pytest.mark.parametrize("table", ["sync_pipeline_buffer", "sync_pipeline_dead_letters"])
def test_install_refuses_a_table_of_ours_that_another_role_created(scenario, live, insert_rows, table):
    """Before PostgreSQL 15 any role may create in `public`: a buffer made by another role would
    receive every captured change. Install refuses it and installs nothing; it never adopts it."""
    insert_rows(range(1, 3), "2026-02-01 00:00:00+00")
    spec = scenario.spec()
    squatter = f"squatter_{uuid.uuid4().hex[:8]}"
    aside = f"{table}_aside_{uuid.uuid4().hex[:6]}"
    scenario.execute(
        f"CREATE ROLE {squatter} LOGIN PASSWORD '{PASSWORD}'; GRANT CREATE ON SCHEMA public TO {squatter}"
    )
    with scenario.engine.begin() as conn:
        present = conn.execute(sa.text(f"SELECT to_regclass('public.{table}')")).scalar() is not None
        if present:  # the shared test database's own, set aside for the test
            conn.execute(sa.text(f"ALTER TABLE public.{table} RENAME TO {aside}"))
    engine = _login(live.pg_url, squatter)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"CREATE TABLE public.{table} (id bigint)"))
        with pytest.raises(CaptureError, match=f"public.{table} is owned by {squatter}"):
            install_capture(scenario.engine, spec)
        with scenario.engine.connect() as conn:
            triggers = conn.execute(
                sa.text("SELECT count(*) FROM pg_trigger WHERE tgrelid = CAST(:t AS regclass)"),
                {"t": scenario.table},
            ).scalar()
        assert triggers == 0
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS public.{table}"))
        engine.dispose()
        with scenario.engine.begin() as conn:
            if present:
                conn.execute(sa.text(f"ALTER TABLE public.{aside} RENAME TO {table}"))
            conn.execute(sa.text(f"REVOKE CREATE ON SCHEMA public FROM {squatter}; DROP ROLE {squatter}"))


@pytest.fixture()
def shop(scenario: Scenario) -> Iterator[str]:
    """products → categories in a schema of their own, one product per category."""
    s = f"s_{uuid.uuid4().hex[:8]}"
    scenario.execute(
        f"CREATE SCHEMA {s}; CREATE TABLE {s}.categories (id int PRIMARY KEY, name text); "
        f"CREATE TABLE {s}.products (id bigint PRIMARY KEY, name text, category_id int, "
        "updated_at timestamptz); "
        f"INSERT INTO {s}.categories SELECT g, 'c' || g FROM generate_series(1, 5) g; "
        f"INSERT INTO {s}.products SELECT g, 'p' || g, g, '2026-02-01+00' FROM generate_series(1, 5) g"
    )
    yield s
    scenario.execute(f"DROP SCHEMA {s} CASCADE")


_SHOP = """
specs:
  - name: {s}
    source:
      table: {s}.products
      primary_key: id
      updated_at: updated_at
      relations:
        - {{name: category, table: "{s}.categories", kind: many_to_one, on: {{id: category_id}},
           columns: [name]}}
    target: {{index: {s}}}
    partitions: {{grain: month, start: "2026-01-01"}}
"""


def _shop_spec(s: str):
    return parse_specs(_SHOP.format(s=s))[0]


def _spec_triggers(engine: sa.Engine, spec) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT count(*) FROM pg_trigger WHERE tgname LIKE :p"),
            {"p": f"sync_pipeline_{spec.name}%"},
        ).scalar()


def test_install_waits_at_most_its_lock_timeout_and_leaves_nothing_half_installed(scenario, shop, live):
    """A long transaction of the application holds a row lock on one related table: the install
    gives up after its timeout, names the table and the session, leaves no trigger anywhere, and
    the application's writes to the other table never queue behind it meanwhile."""
    spec = _shop_spec(shop)
    locks = LockSettings(timeout_seconds=1.0, attempts=2, backoff_seconds=0.2)
    app = scenario.engine.connect()
    holder = app.begin()
    app.execute(sa.text(f"UPDATE {shop}.categories SET name = name WHERE id = 1"))
    blocker = app.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    outcome: dict[str, object] = {}

    def install() -> None:
        try:
            outcome["report"] = install_capture(scenario.engine, spec, locks)
        except Exception as exc:  # the outcome is asserted below
            outcome["error"] = exc

    worker = threading.Thread(target=install, daemon=True)
    try:
        worker.start()
        writes = 0
        with scenario.engine.connect() as writer:
            writer.execute(sa.text("SET lock_timeout = '1s'"))  # a write that queued would fail here
            while worker.is_alive() and writes < 400:
                writer.execute(sa.text(f"UPDATE {shop}.products SET name = name WHERE id = {writes % 5 + 1}"))
                writer.commit()
                writes += 1
        worker.join(timeout=15)
        assert not worker.is_alive(), "the install was still waiting after 15 s"
    finally:
        holder.rollback()
        app.close()
        worker.join(timeout=30)
    error = outcome.get("error")
    assert isinstance(error, CaptureError), outcome
    assert f"{shop}.categories" in str(error) and f"pid {blocker}" in str(error), error
    assert writes > 0
    assert _spec_triggers(scenario.engine, spec) == 0  # products' trigger, made first, removed again
    # the transaction gone, it installs; a re-install while the lock is held again waits for nothing
    install_capture(scenario.engine, spec, locks)
    assert _spec_triggers(scenario.engine, spec) == 4
    with scenario.engine.connect() as again:
        again.execute(sa.text(f"UPDATE {shop}.categories SET name = name WHERE id = 2"))
        report = install_capture(scenario.engine, spec, LockSettings(timeout_seconds=0.5, attempts=1))
        again.rollback()
    assert sorted(report.tables) == [f"{shop}.categories", f"{shop}.products"]
    uninstall_capture(scenario.engine, spec)
    _clear(scenario.engine, spec.name)


def test_install_as_a_superuser_warns_and_names_the_role_that_should_own_the_capture(
    scenario, shop, live, tmp_path, capsys, monkeypatch
):
    from sync_pipeline.apps.cli import main
    from sync_pipeline.io.postgres import engine_for
    from sync_pipeline_devtools.services.postgres import pg_superuser_url

    superuser = pg_superuser_url()
    if not Path(superuser.split("host=", 1)[1].split("&", 1)[0]).exists() or os.geteuid() != 0:
        pytest.skip("needs the local cluster of this checkout and root (its superuser's socket is private)")
    spec = _shop_spec(shop)
    config = tmp_path / "sync.yaml"
    config.write_text(_SHOP.format(s=shop))
    monkeypatch.setenv("SYNC_PG_URL", superuser)
    try:
        assert main(["--config", str(config), "install-triggers", "--spec", shop]) == 0
        err = capsys.readouterr().err
        assert "warning: installing as superuser postgres" in err and "(sync)" in err, err
    finally:  # the functions are the superuser's now: only it may drop them
        uninstall_capture(engine_for(superuser), spec)
        _clear(scenario.engine, spec.name)
    # as the tables' owner: no warning
    monkeypatch.setenv("SYNC_PG_URL", live.pg_url)
    assert main(["--config", str(config), "install-triggers", "--spec", shop]) == 0
    assert "warning" not in capsys.readouterr().err
    uninstall_capture(scenario.engine, spec)
    _clear(scenario.engine, spec.name)


def test_a_column_renamed_after_install_never_fails_a_write_and_the_drain_reconciles(scenario, shop, live):
    """A migration renames a column the documents read: the application's writes go on, the
    trigger buffers an entry that says why it could not read the row, and once the spec matches
    the table again the drain reconciles the whole spec: no change is lost."""
    spec = _shop_spec(shop)
    servers = Servers(live.pg_url, live.es_url)
    assert run_sync(spec, servers=servers).success
    install_capture(scenario.engine, spec)
    try:
        scenario.execute(f"ALTER TABLE {shop}.categories RENAME COLUMN name TO title")
        scenario.execute(f"UPDATE {shop}.categories SET title = 'renamed' WHERE id = 2")  # no error
        ((source, _, op, link),) = _buffered(scenario.engine, spec.name)
        assert (source, op) == ("category", "T") and 'no field "name"' in link["capture_error"]
        scenario.execute(f"ALTER TABLE {shop}.categories RENAME COLUMN title TO name")
        summary = run_drain(spec, servers=servers)
        assert summary.success, summary.error
        assert indexed(scenario.es, shop)["2"]["category"]["name"] == "renamed"
        assert run_verify([spec], [spec], servers=servers)[0].ok
    finally:
        uninstall_capture(scenario.engine, spec)
        _clear(scenario.engine, spec.name)
        drop_target(scenario.es, shop)
