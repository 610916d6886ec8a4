"""The package as a user gets it (issue 31, item 1): a wheel built from the checkout, installed with
the lock into a fresh virtualenv in a temporary folder, run from a project folder of its own — no
file of the checkout, no PYTHONPATH, no DAGSTER_HOME — through `--version`, `init`, `validate
--offline`, then a full sync and a verify of a table made here, against the real servers.

Slow (a virtualenv of the whole Dagster tree, from pip's cache: about two minutes), so it is one
test doing it all."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from sync_pipeline.io.search.indices import drop_target
from sync_pipeline_tests.support.paths import ROOT

# what the build reads; a copy, so the checkout gets no build/ or egg-info, and a module deleted
# from the checkout cannot linger in a stale build/lib and ship
# (the dev harness and the tests too: as in the checkout, pyproject's package discovery must leave
# them out)
SOURCES = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "sync_pipeline",
    "sync_pipeline_devtools",
    "sync_pipeline_tests",
)
WHEEL_FILES: list[str] = []
DEV_HARNESS = (
    "sync_pipeline_devtools/",
    "sync_pipeline/dev/",
    "sync_pipeline_tests/",
)  # the built wheel's file list


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bin/ folder of a fresh virtualenv with the wheel installed, outside the repository
    (removed afterwards: half a gigabyte)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(path, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    quiet = ["-q", "--disable-pip-version-check"]
    _run([sys.executable, "-m", "pip", "wheel", *quiet, "--no-deps", str(source), "-w", str(work / "dist")],
         work, env)  # fmt: skip
    (wheel,) = (work / "dist").glob("sync_pipeline-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        WHEEL_FILES[:] = archive.namelist()
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], work, env)
    # (bytecode compiled at install: --no-compile saves little there and costs more in the first
    # import of each command below)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", *quiet,
          "-c", str(ROOT / "constraints.txt"), str(wheel)], work, env)  # fmt: skip
    yield venv / "bin"
    shutil.rmtree(work, ignore_errors=True)


def test_the_installed_wheel_inits_validates_syncs_and_verifies(installed, live, pg, es, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "DAGSTER_HOME", "SYNC_STAGING_DIR", "SYNC_CONFIG", "SYNC_DAGSTER_PG_URL")
    }
    cli = str(installed / "sync-pipeline")

    where = _run([str(installed / "python"), "-c", "import sync_pipeline; print(sync_pipeline.__file__)"],
                 project, env)  # fmt: skip
    assert Path(where.strip()).is_relative_to(installed.parent)  # the installed copy, not the checkout
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert _run([cli, "--version"], project, env).strip() == f"sync-pipeline {version}"

    assert "sync-pipeline validate --offline" in _run([cli, "init"], project, env)
    assert {p.name for p in project.iterdir()} == {"sync.yaml", "dagster.yaml", "workspace.yaml"}
    assert "1 valid (orders)" in _run([cli, "validate", "--offline"], project, env)
    # the dev harness stays in the checkout: no file of it in the wheel, and `--local` says where it is
    assert WHEEL_FILES and not [f for f in WHEEL_FILES if f.startswith(DEV_HARNESS)], WHEEL_FILES
    local = subprocess.run([cli, "--local", "verify"], cwd=project, env=env, capture_output=True, text=True)
    assert local.returncode == 2 and "python -m sync_pipeline_devtools" in local.stderr, local.stderr

    table = f"t_wheel_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    with pg.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text, updated_at timestamptz NOT NULL)"
            )
        )
        conn.execute(
            sa.text(f"INSERT INTO {table} VALUES (:id, :name, :at)"),
            [{"id": i, "name": f"item {i}", "at": now - timedelta(minutes=i)} for i in range(1, 301)],
        )
    synced = tmp_path / "synced"
    synced.mkdir()
    try:
        _run([cli, "init", "--from-database", f"public.{table}"], synced, env)
        spec_file = yaml.safe_load((synced / "sync.yaml").read_text())
        # two daily windows (a year of them costs Dagster minutes, not this test's point)
        spec_file["specs"][0]["partitions"]["start"] = (now - timedelta(days=1)).strftime("%Y-%m-%d")
        (synced / "sync.yaml").write_text(yaml.safe_dump(spec_file, sort_keys=False))
        _run([cli, "validate", "--offline"], synced, env)
        # with the servers: the table, its key and columns, the mapping the server takes
        assert "every source matches its spec" in _run([cli, "validate"], synced, env)
        summary = _run([cli, "sync", "--spec", table, "--full"], synced, env)
        assert "succeeded" in summary and (synced / ".dagster_home" / "dagster.yaml").exists()
        verified = _run([cli, "verify", "--spec", table], synced, env)
        assert "postgres=300 index=300 missing=0 extra=0 mismatched=0" in verified
    finally:
        with pg.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        drop_target(es, table)
