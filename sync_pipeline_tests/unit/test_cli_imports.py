"""The CLI imports what a command uses, when it runs (issue 27, item 4): `--help`, `--version` and
a usage error load no Dagster, pandas, Arrow, SQLAlchemy or search client, and every command's
function is found where the parser says it is."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from sync_pipeline.apps.cli.parser import build_parser
from sync_pipeline_tests.support.paths import ROOT

HEAVY = ("dagster", "pandas", "pyarrow", "sqlalchemy", "elasticsearch", "elastic_transport", "opensearchpy")

PROBE = f"""
import json, sys
HEAVY = {HEAVY!r}
from sync_pipeline.apps.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "loaded": sorted(m for m in HEAVY if m in sys.modules)}}))
"""


def _imports(*argv: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in ("SYNC_PG_URL", "SYNC_ES_URL")},
        timeout=120,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv,code",
    [(["--help"], 0), (["--version"], 0), (["sync", "--help"], 0), (["sync"], 2), (["no-such-command"], 2)],
)
def test_help_version_and_usage_errors_import_no_heavy_package(argv, code):
    assert _imports(*argv) == {"code": code, "loaded": []}


def test_a_command_that_needs_dagster_still_loads_it():
    # the probe can fail: `history` reads the Dagster instance, so Dagster is imported for it
    assert "dagster" in _imports("--config", str(ROOT / "sync.yaml"), "history", "--last", "1")["loaded"]


def test_every_command_resolves_to_its_function():
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in sub.choices.items():
        func = command.get_default("func")
        resolved = func.resolve()
        assert callable(resolved) and resolved.__name__ == func.__name__, name
