"""The CLI run with a controlled environment: no SYNC_* variable of the caller's leaks in, so a
test states every server URL the command sees (and `None` unsets one)."""

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
