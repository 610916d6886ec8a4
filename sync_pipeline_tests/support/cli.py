"""The `sync-pipeline` command run as a user runs it: a real process, its exit code and output."""

import os
import subprocess
import sys
from pathlib import Path

from sync_pipeline_tests.support.paths import ROOT


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, module: str = "sync_pipeline.apps.cli"
) -> subprocess.CompletedProcess:
    """The product's CLI (`module`: the checkout's dev tool, sync_pipeline_devtools, for `services`)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
