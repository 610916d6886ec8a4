"""The CLI never picks a server, a spec file or a destructive action for the user.

An unset SYNC_PG_URL with SYNC_ES_URL set used to start (and, as root, apt-install) a local
PostgreSQL: `verify --fix` would then have compared a production index with an empty local
database and deleted its documents. Now only `--local` starts the project's dev services, a
missing spec file is an error, and what deletes asks first (or takes --yes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sync_pipeline_tests.support.paths import ROOT


def cli(
    *args: str, env: dict[str, str | None], cwd: Path = ROOT, module: str = "sync_pipeline.apps.cli"
) -> subprocess.CompletedProcess:
    """The product's CLI (`module`: the checkout's dev tool, sync_pipeline_devtools, for the demo)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SYNC_")}
    environ.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environ,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
