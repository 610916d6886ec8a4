"""The CLI never picks a server, a spec file or a destructive action for the user.

An unset SYNC_PG_URL with SYNC_ES_URL set used to start (and, as root, apt-install) a local
PostgreSQL: `verify --fix` would then have compared a production index with an empty local
database and deleted its documents. Now only `--local` starts the project's dev services, a
missing spec file is an error, and what deletes asks first (or takes --yes).
"""

from __future__ import annotations

import pytest

from sync_pipeline_tests.support.cli_safety import cli
from sync_pipeline_tests.support.paths import ROOT


@pytest.mark.parametrize(("unset", "kept"), [("SYNC_PG_URL", "SYNC_ES_URL"), ("SYNC_ES_URL", "SYNC_PG_URL")])
def test_an_unset_server_url_is_an_error_naming_it_and_nothing_is_started(unset, kept):
    env = {kept: "http://127.0.0.1:9" if kept == "SYNC_ES_URL" else "postgresql://u:p@127.0.0.1:9/db"}
    env["SYNC_LOCAL_PG_PORT"], env["SYNC_LOCAL_ES_PORT"] = "9", "9"  # were anything started: refused
    result = cli("--config", str(ROOT / "sync.yaml"), "verify", "--fix", "--yes", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert unset in result.stderr and "--local" in result.stderr
    assert "starting" not in result.stderr.lower() and "Traceback" not in result.stderr


def test_a_missing_spec_file_never_falls_back_to_the_checkouts_demo_spec(tmp_path):
    result = cli("verify", env={"SYNC_PG_URL": "postgresql://u:p@127.0.0.1:9/db"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "sync.yaml: sync spec file not found" in result.stderr
