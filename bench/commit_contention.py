"""What a NOTIFY per captured write costs concurrent writers (issue 24, item 3), with pgbench.

A commit that sent a NOTIFY takes PostgreSQL's database-wide notify lock (PreCommit_Notify)
and holds it until the commit is flushed, so notifying commits queue on it one by one. The
dev cluster runs with fsync off, which hides exactly that: this starts its **own durable
PostgreSQL 15 cluster** (temp dir on the machine's disk, `fsync`/`synchronous_commit` on,
`wal_level = logical`, run as `syncpipe` when root, a free loopback port), deleted at the end.

Table `bench_contention` (--rows, 100k), pgbench's single-row UPDATE by key (`-M prepared
-j 2`) at each of --clients (16,32,64), four modes rotated per repetition: `none`,
`triggers_notify` (`buffer_sensor: {notify: true}`), `triggers` (the default, no NOTIFY),
`logical` (publication + slot). Nothing drains during a run; before each: capture
uninstalled, buffer emptied, VACUUM, CHECKPOINT. pg_stat_activity is sampled every 0.2 s for
what pgbench's backends wait on (`Lock:object` is the notify lock). Reported per mode and
client count: medians of TPS and latency avg / p95, and TPS ÷ `none` at the same count.

    .venv/bin/python -m bench.commit_contention --seconds 20 --repeat 3 --clients 16,32,64 \\
        --output bench/results/2026-12-06-notify.json

or `bench.run --commit-contention [--commit-contention-{seconds,clients,repeat} …]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import common
from bench.pgbench import run_pgbench
from sync_pipeline.apps.cli.output import format_table
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline_devtools.services import runtime

MODES = ["none", "triggers_notify", "triggers", "logical"]
TABLE = "bench_contention"
SPEC_NAME = "bench_contention"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SCRIPT = """\\set id random(1, {rows})
UPDATE bench_contention SET stock = stock + 1, updated_at = now() WHERE id = :id;
"""
# max_prepared_transactions: to try PREPARE TRANSACTION after a write in each mode
SERVER_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "wal_level": "logical",
                   "max_connections": "200", "max_replication_slots": "8", "max_wal_senders": "8",
                   "max_prepared_transactions": "4"}  # fmt: skip
SHOWN = ["full_page_writes", "shared_buffers", "wal_sync_method", "commit_delay", "server_version"]
SEED = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (id bigint PRIMARY KEY, stock int NOT NULL, updated_at timestamptz NOT NULL);
INSERT INTO {TABLE} SELECT g, (g * 7) % 1000, now() - (g % 1000) * interval '1 minute'
  FROM generate_series(1, CAST(:rows AS bigint)) AS g;
ANALYZE {TABLE};
"""

Log = Callable[[str], None]


def _log(message: str) -> None:
    print(f"[commit-contention {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _spec_yaml(mode: str) -> str:
    extra = {"logical": "    capture: logical\n", "triggers_notify": '    buffer_sensor: {"notify": true}\n'}
    return (
        f"specs:\n  - name: {SPEC_NAME}\n    source:\n      table: {TABLE}\n      primary_key: id\n"
        f"      updated_at: updated_at\n    target:\n      index: {TABLE}\n    partitions:\n"
        f'      grain: day\n      start: "{common.partitions_start()}"\n'
        f'    schedule: {{"catch_up": false}}\n{extra.get(mode, "")}'
    )


@contextlib.contextmanager
def durable_cluster(base: Path, log: Log = _log) -> Iterator[tuple[str, Path]]:
    """A fresh PostgreSQL 15 cluster (SERVER_SETTINGS) under `base`: yields (URL, data dir);
    stopped and deleted on the way out, whatever happened."""
    root = Path(tempfile.mkdtemp(prefix="sync-bench-commit-", dir=base))
    runtime._owned_dir(root, 0o700)  # the service user's (when root), nobody else's
    with socket.socket() as sock:  # a free loopback port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data, password = root / "data", secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C.UTF-8"}

    def as_pg(*cmd: str, timeout: float = 300) -> None:
        proc = subprocess.run(runtime._as_service_user([*cmd]), cwd=root, env=env, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-1500:]}")

    ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        pwfile = root / "pw"
        pwfile.write_text(password + "\n")
        runtime._chown_tree(root)
        log(f"initdb {data} (port {port})")
        as_pg(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--no-locale",
              "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}")  # fmt: skip
        pwfile.unlink()
        conf = {**SERVER_SETTINGS, "listen_addresses": "'127.0.0.1'", "port": str(port),
                "unix_socket_directories": f"'{root}'"}  # fmt: skip
        with open(data / "postgresql.conf", "a") as handle:
            handle.write("\n# bench/commit_contention.py: a durable cluster\n")
            handle.writelines(f"{key} = {value}\n" for key, value in conf.items())
        started = True  # from here on, stop it on the way out (a start that timed out may still run)
        as_pg(*ctl, "-l", str(root / "postgresql.log"), "-w", "-t", "120", "start", timeout=180)
        yield f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres", data
    finally:
        if started:
            try:
                as_pg(*ctl, "-m", "fast", "-w", "-t", "60", "stop", timeout=90)
            except Exception as exc:  # our postmaster only: the pid in our own data dir
                log(f"pg_ctl stop failed ({exc}); SIGKILL to our postmaster")
                with contextlib.suppress(OSError, ValueError, IndexError):
                    os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
                    time.sleep(2)
        shutil.rmtree(root, ignore_errors=True)
        log(f"cluster stopped and {root} deleted")


def machine(path: Path) -> dict[str, Any]:
    """nproc, the CPU; the device, filesystem and kind of disk `path` is on, its fdatasync rate."""
    info: dict[str, Any] = {"nproc": os.cpu_count(), "kernel": platform.release(), "path": str(path)}
    with contextlib.suppress(OSError, StopIteration):
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["findmnt", "-no", "SOURCE,FSTYPE", "-T", str(path)], capture_output=True,
                             text=True, timeout=10).stdout.split()  # fmt: skip
        if len(out) >= 2:
            info["device"], info["fstype"] = out[0], out[1]
            name = Path(out[0]).name
            for key, leaf in (("rotational", "queue/rotational"), ("model", "device/model")):
                with contextlib.suppress(OSError):
                    info[key] = (Path("/sys/block") / name / leaf).read_text().strip()
    probe = path / f".fsync-probe-{os.getpid()}"
    try:
        cmd = [str(PG_BIN / "pg_test_fsync"), "-s", "1", "-f", str(probe)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
        found = re.search(r"one 8kB write.*?\n.*?\n.*?\n\s+fdatasync\s+([\d.]+) ops/sec", out, re.S)
        info["fdatasync_8k_ops_per_s"] = float(found.group(1)) if found else None
    except (OSError, subprocess.SubprocessError) as exc:
        info["fdatasync_8k_ops_per_s"] = f"not measured: {exc}"
    finally:
        probe.unlink(missing_ok=True)
    return info


class WaitSampler(threading.Thread):
    """What the pgbench backends wait on, sampled every `interval` s while a run lasts."""

    def __init__(self, engine, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.engine, self.interval = engine, interval
        self.counts: Counter[str] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        query = sa.text(
            "SELECT coalesce(wait_event_type || ':' || wait_event, 'running'), count(*) "
            "FROM pg_stat_activity WHERE application_name = 'pgbench' AND state = 'active' GROUP BY 1"
        )
        with contextlib.suppress(Exception), self.engine.connect() as conn:
            while not self.stop.wait(self.interval):
                for event, count in conn.execute(query):
                    self.counts[event] += count
                conn.commit()

    def shares(self) -> dict[str, float]:
        total = sum(self.counts.values()) or 1
        return {event: round(n / total, 3) for event, n in self.counts.most_common(6)}


class CommitContention:
    def __init__(self, pg_url: str, workdir: Path, rows: int, seconds: float, clients: list[int],
                 repeat: int, log: Log = _log) -> None:  # fmt: skip
        self.pg_url, self.workdir, self.rows = pg_url, workdir, rows
        self.seconds, self.clients, self.repeat, self.log = seconds, clients, repeat, log
        self.engine = common.engine(pg_url)
        self.specs = {}
        for mode in MODES[1:]:
            path = workdir / f"{mode}.yaml"
            path.write_text(_spec_yaml(mode))
            self.specs[mode] = common.load_spec(path, SPEC_NAME)[1]
        self.script = workdir / "update_by_key.sql"
        self.script.write_text(SCRIPT.format(rows=rows))

    def _sql(self, statement: str) -> Any:
        """One statement in its own transaction (VACUUM and CHECKPOINT need autocommit)."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            result = conn.execute(sa.text(statement))
            return result.scalar() if result.returns_rows else None

    def _reset(self) -> None:
        uninstall_capture(self.engine, self.specs["logical"])  # the spec's triggers, slot, publication
        self._sql(f"ALTER TABLE {TABLE} REPLICA IDENTITY DEFAULT")
        if self._sql("SELECT to_regclass('public.sync_pipeline_buffer') IS NOT NULL"):
            self._sql("TRUNCATE sync_pipeline_buffer")  # this cluster holds nothing else
            self._sql("VACUUM sync_pipeline_buffer")
        self._sql(f"VACUUM ANALYZE {TABLE}")
        self._sql("CHECKPOINT")

    def _two_phase(self) -> str:
        """Whether PREPARE TRANSACTION accepts a transaction that wrote the table, in this mode."""
        gid = f"bench_contention_{secrets.token_hex(4)}"
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            try:
                conn.execute(sa.text("BEGIN"))
                conn.execute(sa.text(f"UPDATE {TABLE} SET stock = stock WHERE id = 1"))
                conn.execute(sa.text(f"PREPARE TRANSACTION '{gid}'"))
            except Exception as exc:
                with contextlib.suppress(Exception):
                    conn.execute(sa.text("ROLLBACK"))
                return "refused: " + str(getattr(exc, "orig", exc)).splitlines()[0]
            conn.execute(sa.text(f"ROLLBACK PREPARED '{gid}'"))
            return "accepted"

    def _one(self, mode: str, clients: int, rep: int) -> dict[str, Any]:
        self._reset()
        if mode != "none":
            install_capture(self.engine, self.specs[mode])
        load = os.getloadavg()[0]
        sampler = WaitSampler(self.engine)
        sampler.start()
        try:
            result = run_pgbench(
                self.pg_url, self.script, self.seconds, clients, self.workdir, f"{mode}-{clients}-{rep}"
            )
        finally:
            sampler.stop.set()
            sampler.join(5)
        result.update(mode=mode, repetition=rep, waits=sampler.shares(),
                      loadavg_before_after=[round(load, 2), round(os.getloadavg()[0], 2)])  # fmt: skip
        if mode.startswith("triggers"):
            result["buffer_rows_after"] = self._sql("SELECT count(*) FROM sync_pipeline_buffer")
        if rep == 0 and clients == self.clients[0]:
            result["prepare_transaction"] = self._two_phase()
        return result

    def run(self) -> dict[str, Any]:
        self.log(f"seeding {self.rows:,} rows into {TABLE}")
        for statement in SEED.replace(":rows", str(int(self.rows))).split(";\n"):
            if statement.strip():
                self._sql(statement)
        runs: list[dict[str, Any]] = []
        errors: dict[str, str] = {}
        for rep in range(self.repeat):
            order = MODES[rep % len(MODES) :] + MODES[: rep % len(MODES)]
            for clients in self.clients:
                for mode in order:
                    if mode in errors:
                        continue
                    try:
                        result = self._one(mode, clients, rep)
                    except Exception as exc:
                        errors[mode] = f"{type(exc).__name__}: {exc}"[-1500:]
                        self.log(f"  {mode} FAILED: {errors[mode]}")
                        continue
                    runs.append(result)
                    top = next(iter(result["waits"].items()), ("-", 0))
                    self.log(f"  rep {rep + 1} {clients:>2} clients {mode:<15} {result['tps']:>8,.0f} TPS, "
                             f"avg {result.get('latency_avg_ms')} ms, p95 {result.get('latency_p95_ms')} ms, "
                             f"most waited {top[0]} {top[1]:.0%}")  # fmt: skip
        self._reset()
        return {"runs": runs, "errors": errors, **summarise(runs, self.clients)}


def summarise(runs: list[dict[str, Any]], clients: list[int]) -> dict[str, Any]:
    """Medians by mode and client count, and each mode's TPS ÷ `none` at the same count."""
    results: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        for count in clients:
            good = [r for r in runs if r["mode"] == mode and r["clients"] == count and r.get("tps")]
            if not good:
                continue
            entry = {"runs": len(good), "tps_each": [round(r["tps"], 1) for r in good]}
            for key in ("tps", "latency_avg_ms", "latency_p95_ms", "latency_p99_ms"):
                values = [r[key] for r in good if r.get(key) is not None]
                entry[key] = round(statistics.median(values), 3) if values else None
            waits = sum((Counter(r.get("waits", {})) for r in good), Counter())
            entry["waits"] = {event: round(share / len(good), 3) for event, share in waits.most_common(4)}
            results.setdefault(mode, {})[str(count)] = entry
            base = results.get("none", {}).get(str(count), {}).get("tps")  # "none" comes first
            entry["tps_ratio_to_none"] = round(entry["tps"] / base, 3) if base and entry["tps"] else None
    ratio = {mode: {n: e["tps_ratio_to_none"] for n, e in by.items()} for mode, by in results.items()}
    two_phase = {r["mode"]: r["prepare_transaction"] for r in runs if "prepare_transaction" in r}
    return {"results": results, "tps_ratio_to_none": ratio, "prepare_transaction": two_phase}


def run(rows: int = 100_000, seconds: float = 20, clients: list[int] | None = None, repeat: int = 3,
        base: Path = Path("/var/tmp"), log: Log = _log) -> dict[str, Any]:  # fmt: skip
    """The whole section: machine context, the cluster, the measurement, the cluster gone."""
    clients = clients or [16, 32, 64]
    started = time.perf_counter()
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "table": TABLE, "rows": rows, "seconds_per_run": seconds, "clients": clients, "repeat": repeat,
        "modes": MODES, "script": SCRIPT.format(rows=rows).strip(),
        "pgbench": "-n -M prepared -j 2 -c <clients> -T <seconds> -f update_by_key.sql",
        "consumer_during_measurement": "none: nothing drains the buffer or reads the slot while pgbench runs",
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip
    log("machine context (and a 15 s pg_test_fsync probe of the data dir's disk)")
    report["machine"] = machine(base)
    log(f"  {json.dumps(report['machine'])}")
    with (
        tempfile.TemporaryDirectory(prefix="sync-bench-commit-work-") as work,
        durable_cluster(base, log) as (url, data),
    ):
        bench = CommitContention(url, Path(work), rows, seconds, clients, repeat, log)
        with bench.engine.connect() as conn:
            query = sa.text("SELECT name, setting FROM pg_settings WHERE name = ANY(:n)")
            shown = conn.execute(query, {"n": [*SERVER_SETTINGS, *SHOWN]}).all()
        report["server"] = {"data_dir": str(data), **dict(shown)}
        log(f"  server {json.dumps(report['server'])}")
        report.update(bench.run())
        bench.engine.dispose()
    report["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    return report


def print_table(report: dict[str, Any]) -> None:
    rows = []
    for count in report["clients"]:
        for mode in MODES:
            entry = report.get("results", {}).get(mode, {}).get(str(count))
            if entry is None:
                rows.append([count, mode, "n/a", "", "", "", ""])
                continue
            top = ", ".join(f"{k} {v:.0%}" for k, v in list(entry["waits"].items())[:2])
            ratio = "-" if entry["tps_ratio_to_none"] is None else f"{entry['tps_ratio_to_none']:.2f}"
            rows.append([count, mode, round(entry["tps"]), entry["latency_avg_ms"], entry["latency_p95_ms"],
                         ratio, top])  # fmt: skip
    print(f"\ncommit contention: {report['rows']:,} rows, {report['seconds_per_run']:g} s per run, "
          f"medians of {report['repeat']}; fsync=on, synchronous_commit=on")  # fmt: skip
    print(format_table(["clients", "mode", "TPS", "lat avg ms", "p95 ms", "× none", "waits (sampled)"], rows))
    for mode, what in (report.get("prepare_transaction") or {}).items():
        print(f"  PREPARE TRANSACTION after a write, {mode}: {what}")
    for mode, why in (report.get("errors") or {}).items():
        print(f"  {mode}: {why}")
    host = report.get("machine", {})
    print(f"  nproc {host.get('nproc')}, data dir on {host.get('device')} ({host.get('fstype')}), fdatasync "
          f"{host.get('fdatasync_8k_ops_per_s')}/s; load {report.get('loadavg_at_start')} → "
          f"{report.get('loadavg_at_end')}")  # fmt: skip


def _interrupted(signum: int, frame: Any) -> None:  # SIGTERM unwinds like Ctrl-C: the cluster goes
    raise KeyboardInterrupt


def parse_clients(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    # fmt: off
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in bench_contention (100,000)")
    parser.add_argument("--seconds", type=float, default=20, help="seconds per pgbench run (20)")
    parser.add_argument("--clients", type=parse_clients, default=[16, 32, 64], help="client counts: 16,32,64")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode and client count (3, rotating)")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="the cluster's temp dir's parent")
    parser.add_argument("--output", help="result JSON (default: print only)")
    # fmt: on
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    report = {"command": " ".join(sys.argv)}
    report.update(run(args.rows, args.seconds, args.clients, args.repeat, args.dir))
    print_table(report)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"commit_contention": report}, indent=2, default=str) + "\n")
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
