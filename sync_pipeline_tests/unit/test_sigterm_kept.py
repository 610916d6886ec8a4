"""SIGTERM keeps stopping what we run, however the process was launched.

Dagster maps SIGTERM to SIGINT's handler whenever an in-process run ends. A job that a
non-interactive shell starts in the background (cron scripts, CI runners, `cmd &` in a script)
has SIGINT ignored, so after one run SIGTERM was ignored too: `kill` no longer stopped the CLI,
and every process it started afterwards inherited the ignored SIGTERM. A JVM started that way
installs no shutdown hook, so each search node we stopped waited out the 60 s grace before
SIGKILL (three nodes of the test cluster: three minutes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sync_pipeline_devtools.services.runtime import run_launcher

SIGTERM_BIT = 1 << (signal.SIGTERM - 1)  # /proc/<pid>/status SigIgn: bit n-1 for signal n

IN_PROCESS_RUN = """
import signal
import dagster as dg
from sync_pipeline.apps.cli.runner import execute_in_process

@dg.op
def one():
    return 1

@dg.job
def tiny():
    one()

with dg.DagsterInstance.ephemeral() as instance:
    assert execute_in_process(tiny, instance=instance).success
print("SIGTERM", int(signal.getsignal(signal.SIGTERM) == signal.SIG_IGN))
"""


def _ignoring_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell does for a background job


def test_an_in_process_run_started_in_the_background_still_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", IN_PROCESS_RUN], capture_output=True, text=True, env=env, timeout=120,
        preexec_fn=_ignoring_sigint,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == ["SIGTERM", "0"], "the run left SIGTERM ignored"


def test_a_server_launched_by_a_process_ignoring_sigterm_still_stops_on_it(tmp_path: Path) -> None:
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with (tmp_path / "out").open("wb") as out:
            rc = run_launcher(["grep", "SigIgn", "/proc/self/status"], out, dict(os.environ), tmp_path, 30)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert rc == 0
    ignored = int((tmp_path / "out").read_text().split()[-1], 16)
    assert not ignored & SIGTERM_BIT, "the launched server would ignore SIGTERM"
