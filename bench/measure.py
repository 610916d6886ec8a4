"""Measuring a scenario process: its CPU time and peak RSS, the result it prints, the machine.

bench/harness.py runs every scenario through `run_measured`, one subprocess at a time, so
what is measured belongs to that scenario alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common


def cpu_seconds(who: int = 0) -> float:
    """utime + stime: of this process (who=0, every thread) or of its reaped children (who=-1)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF if who == 0 else resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def proc_tree_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its live descendants, from /proc/<pid>/stat (clock ticks),
    including what each has collected from children it reaped (cutime + cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for each in [pid, *children_of(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state(0) ... utime(11) stime(12) cutime(13) cstime(14)
        total += sum(int(x) for x in fields[11:15])
    return total / tick


def postmaster_pid(pg_url: str) -> int:
    """The pid of the postmaster of the cluster at `pg_url`: the parent of a backend of ours
    (a backend's pid is pg_backend_pid(); no privilege needed). The cluster must run on this host."""
    import sqlalchemy as sa

    from sync_pipeline.io.postgres import engine_for

    engine = engine_for(pg_url)
    try:
        with engine.connect() as conn:
            backend = int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar())
        try:
            # a remote backend's pid may exist here as some other process: only a postgres counts
            if Path(f"/proc/{backend}/comm").read_text().strip() != "postgres":
                raise OSError(backend)
            fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            raise RuntimeError(
                f"PostgreSQL at {pg_url.split('@')[-1]} runs on another host (its backend {backend} is not "
                "in /proc here): its CPU cannot be measured"
            ) from None
        return int(fields[1])  # state(0) ppid(1)
    finally:
        engine.dispose()


def postgres_cpu_seconds(postmaster: int) -> float:
    """CPU seconds the whole PostgreSQL cluster has used so far (take the delta around a
    measurement): utime + stime of the postmaster and of every live child, plus the postmaster's
    cutime + cstime, where an exited backend's CPU lands once the postmaster reaps it.

    Every process of the cluster counts: background workers (checkpointer, walwriter, autovacuum,
    the WAL sender of a logical slot) and any other client's backends are included, which is noise
    for the sessions being measured; measure on a quiet cluster."""
    return proc_tree_cpu_seconds(postmaster)


# --- measuring ------------------------------------------------------------------------------------


def proc_status(pid: int | str) -> dict[str, int]:
    """VmHWM / VmRSS of a process in kB (empty when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for key in ("VmHWM", "VmRSS"):
        match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        if match:
            out[key] = int(match.group(1))
    return out


def children_of(pid: int) -> list[int]:
    """Every descendant pid of `pid` (through /proc/<pid>/task/*/children)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            for kid in kids:
                if kid not in found:
                    found.append(kid)
                    stack.append(kid)
    return found


@dataclass
class RssSampler:
    """Samples a process (and its descendants) every `interval` seconds.

    peak_mb: the highest VmHWM of the root process (its own peak resident set);
    tree_peak_mb: the highest sum of VmRSS over the root and its descendants seen.
    """

    pid: int
    interval: float = 0.1
    peak_kb: int = 0
    tree_peak_kb: int = 0
    per_pid_peak_kb: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        root = proc_status(self.pid)
        if root:
            self.peak_kb = max(self.peak_kb, root.get("VmHWM", 0), root.get("VmRSS", 0))
        total = root.get("VmRSS", 0)
        for kid in children_of(self.pid):
            status = proc_status(kid)
            total += status.get("VmRSS", 0)
            hwm = max(status.get("VmHWM", 0), status.get("VmRSS", 0))
            if hwm:
                self.per_pid_peak_kb[kid] = max(self.per_pid_peak_kb.get(kid, 0), hwm)
        self.tree_peak_kb = max(self.tree_peak_kb, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def peak_mb(self) -> float:
        return round(self.peak_kb / 1024, 1)

    @property
    def tree_peak_mb(self) -> float:
        return round(self.tree_peak_kb / 1024, 1)


def own_peak_rss_mb() -> float:
    return round(proc_status("self").get("VmHWM", 0) / 1024, 1)


RESULT_MARKER = "BENCH_RESULT "


def emit_result(result: dict[str, Any]) -> None:
    """The last line a scenario subprocess prints: its result as JSON."""
    result.setdefault("self_peak_rss_mb", own_peak_rss_mb())
    sys.stdout.write(RESULT_MARKER + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


def run_measured(
    cmd: list[str], env: dict[str, str], timeout: float, cwd: Path | None = None, log: Path | None = None
) -> dict[str, Any]:
    """Run a subprocess under the RSS sampler; returns wall seconds, rc, peaks, parsed result,
    and cpu_s: utime + stime of the subprocess and every descendant it reaped (RUSAGE_CHILDREN
    of this process before and after; the harness runs one measured subprocess at a time)."""
    started = time.perf_counter()
    cpu_before = cpu_seconds(-1)
    out_handle = open(log, "wb") if log else subprocess.PIPE  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        cmd, env=env, cwd=str(cwd or common.PROJECT_ROOT), stdout=out_handle, stderr=subprocess.STDOUT
    )
    sampler = RssSampler(proc.pid).start()
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, _ = proc.communicate()
        sampler.stop()
        raise
    finally:
        sampler.stop()
        if log:
            out_handle.close()
    wall = time.perf_counter() - started
    cpu = cpu_seconds(-1) - cpu_before
    text = log.read_text(errors="replace") if log else (stdout or b"").decode(errors="replace")
    result: dict[str, Any] = {}
    for line in text.splitlines():
        if line.startswith(RESULT_MARKER):
            result = json.loads(line[len(RESULT_MARKER) :])
    return {
        "rc": proc.returncode,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 2),
        "peak_rss_mb": sampler.peak_mb,
        "tree_peak_rss_mb": sampler.tree_peak_mb,
        "result": result,
        "output_tail": "\n".join(text.splitlines()[-15:]),
    }


def machine_description(es_url: str, pg_url: str) -> dict[str, Any]:
    import platform

    import sqlalchemy as sa

    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        info["cpu"] = cpu
    except (OSError, StopIteration):
        pass
    try:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        info["ram_gb"] = round(mem_kb / 1024 / 1024, 1)
    except (OSError, AttributeError):
        pass
    try:
        load = os.getloadavg()
        info["loadavg_at_start"] = [round(x, 2) for x in load]
    except OSError:
        pass
    es = common.es_client(es_url, timeout=30)
    try:
        nodes = es.nodes.info(filter_path="nodes.*.version,nodes.*.jvm.mem.heap_max_in_bytes")["nodes"]
        node = next(iter(nodes.values()))
        info["search_server"] = es.server.label
        info["es_heap_max_mb"] = round(node["jvm"]["mem"]["heap_max_in_bytes"] / 1024 / 1024)
    except Exception as exc:
        info["search_server"] = f"unknown ({exc})"
    with common.engine(pg_url).connect() as conn:
        info["postgresql"] = conn.execute(sa.text("SHOW server_version")).scalar()
    import dagster
    import elastic_transport
    import pandas
    import pyarrow

    info["libraries"] = {
        "dagster": dagster.__version__,
        "elastic-transport": elastic_transport.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
    }
    return info
