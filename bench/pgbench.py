"""The cost of change capture on the user's write path, measured with pgbench.

One table `bench_pgbench` (the shape of bench_products, --pgbench-rows rows, 400k by
default) and a custom script (`-f`): single-row UPDATEs by primary key, 4 clients. The same
run measures it three ways, in a rotating order, `--pgbench-repeat` times:

- `none`: no capture installed (wal_level = logical on the server in every mode, as the
  local PostgreSQL runs; the WAL written per UPDATE is the same with and without a slot);
- `triggers`: the spec's change-buffer triggers installed (every change also inserts a buffer row);
- `logical`: the spec's logical capture installed (`capture: logical`: a publication + a
  replication slot), when this build has it.

No consumer drains during a measurement: it measures the write path alone (the triggers'
inserts, the slot's retained WAL), not a drain competing for the same two cores. Between
measurements the capture is uninstalled, the buffer emptied, the table vacuumed and a
checkpoint taken, so each mode starts from the same state.

Per mode: TPS (pgbench's, without connection time), latency average and p50/p95/p99 from
pgbench's per-transaction log (sampled), and two bulk statements timed after it: one UPDATE
of half the table and one INSERT of as many new rows (both in one transaction each).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import capture_modes, common

MODES = ["none", "triggers", "logical"]

SCRIPT = """\\set id random(1, {rows})
UPDATE {table} SET stock = stock + 1, updated_at = now() WHERE id = :id;
"""


def pgbench_binary() -> str:
    for candidate in ("/usr/lib/postgresql/15/bin/pgbench", shutil.which("pgbench") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    raise FileNotFoundError("pgbench not found (Debian: apt-get install postgresql-contrib)")


def connection_args(pg_url: str) -> tuple[list[str], dict[str, str]]:
    """pgbench's -h/-p/-U/dbname and PGPASSWORD from a SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    args = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    env = {"PGPASSWORD": url.password or ""} if url.password else {}
    return [*args, url.database or "postgres"], env


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def run_pgbench(
    pg_url: str,
    script: Path,
    seconds: float,
    clients: int,
    workdir: Path,
    label: str,
    rate: float | None = None,
    sampling: float = 0.05,
    log_latencies: bool = True,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One pgbench run; TPS, latency, and percentiles from its sampled per-transaction log."""
    conn_args, conn_env = connection_args(pg_url)
    prefix = workdir / f"pgbench-{label}"
    for old in workdir.glob(f"pgbench-{label}.*"):
        old.unlink()
    cmd = [
        pgbench_binary(), "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)),
        "-T", str(int(seconds)), "-f", str(script),
    ]  # fmt: skip
    if rate:
        cmd += ["-R", str(rate)]
    if log_latencies:
        cmd += ["-l", f"--log-prefix={prefix}", f"--sampling-rate={sampling}"]
    cmd += conn_args
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, env={**os.environ, **(env or {}), **conn_env}, capture_output=True, text=True,
        timeout=seconds + 300, cwd=str(workdir),
    )  # fmt: skip
    wall = time.perf_counter() - started
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed (exit {proc.returncode}): {out[-1500:]}")
    result: dict[str, Any] = {"seconds": seconds, "wall_s": round(wall, 2), "clients": clients}
    match = re.search(r"tps = ([\d.]+) \((?:without initial connection time|excluding connections)", out)
    result["tps"] = float(match.group(1)) if match else None
    for key, pattern in (
        ("latency_avg_ms", r"latency average = ([\d.]+) ms"),
        ("latency_stddev_ms", r"latency stddev = ([\d.]+) ms"),
        ("transactions", r"number of transactions actually processed: (\d+)"),
        ("failed_transactions", r"number of failed transactions: (\d+)"),
    ):
        found = re.search(pattern, out)
        if found:
            result[key] = float(found.group(1)) if "." in found.group(1) else int(found.group(1))
    if log_latencies:
        latencies: list[float] = []
        for path in workdir.glob(f"pgbench-{label}.*"):
            for line in path.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]) / 1000.0)  # µs → ms
            path.unlink()
        for name, q in (("latency_p50_ms", 0.5), ("latency_p95_ms", 0.95), ("latency_p99_ms", 0.99)):
            value = _percentile(latencies, q)
            result[name] = round(value, 3) if value is not None else None
        result["latency_samples"] = len(latencies)
    return result


class WritePathBench:
    """The three modes on one table, same run (see the module docstring)."""

    def __init__(self, harness, rows: int, seconds: float, clients: int, repeat: int,
                 bulk_fraction: float = 0.5) -> None:  # fmt: skip
        self.harness = harness
        self.rows, self.seconds, self.clients, self.repeat = rows, seconds, clients, repeat
        self.bulk_fraction = bulk_fraction
        self.workdir = harness.tmp / "pgbench"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.engine = common.engine(harness.pg_url)
        self.configs: dict[str, Path] = {}
        self.checkpoint = True  # CHECKPOINT between modes, while the role may
        for capture in ("triggers", "logical"):
            path = harness.tmp / f"pgbench-{capture}.yaml"
            path.write_text(
                common.spec_yaml(
                    index="bench_pgbench", name=common.PGBENCH_SPEC_NAME, table=common.PGBENCH_TABLE,
                    capture=None if capture == "triggers" else capture,
                )
            )  # fmt: skip
            self.configs[capture] = path
        self.script = self.workdir / "update_by_key.sql"
        self.script.write_text(SCRIPT.format(rows=rows, table=common.PGBENCH_TABLE))

    def _spec(self, capture: str):
        return common.load_spec(self.configs[capture], common.PGBENCH_SPEC_NAME)[1]

    def _sql(self, statement: str, autocommit: bool = False) -> float:
        import sqlalchemy as sa

        started = time.perf_counter()
        if autocommit:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(statement))
        else:
            with self.engine.begin() as conn:
                conn.execute(sa.text(statement))
        return time.perf_counter() - started

    def _reset(self) -> None:
        """No capture of ours left, empty buffer, vacuumed table, a checkpoint."""
        from sync_pipeline.ops.capture import uninstall_capture

        for capture in ("triggers", "logical"):
            if capture == "logical" and not capture_modes.logical_capture_available()[0]:
                continue
            uninstall_capture(self.engine, self._spec(capture))  # triggers, slot and publication
        # a logical install may set REPLICA IDENTITY FULL and uninstall leaves it: every mode
        # starts from the table's default identity (the primary key)
        self._sql(f"ALTER TABLE {common.PGBENCH_TABLE} REPLICA IDENTITY DEFAULT")
        self._clear_buffer()
        self._sql(f"DELETE FROM {common.PGBENCH_TABLE} WHERE id > {self.rows}")
        self._sql(f"VACUUM ANALYZE {common.PGBENCH_TABLE}", autocommit=True)
        if self.checkpoint:
            try:
                self._sql("CHECKPOINT", autocommit=True)
            except Exception:  # needs superuser or pg_checkpoint: the vacuum alone then
                self.checkpoint = False

    def _clear_buffer(self) -> None:
        import sqlalchemy as sa

        with self.engine.begin() as conn:
            if conn.execute(sa.text("SELECT to_regclass('public.sync_pipeline_buffer')")).scalar():
                conn.execute(
                    sa.text("DELETE FROM sync_pipeline_buffer WHERE spec = :s"),
                    {"s": common.PGBENCH_SPEC_NAME},
                )
                conn.commit()
        if self._buffer_exists():
            self._sql("VACUUM sync_pipeline_buffer", autocommit=True)

    def _buffer_exists(self) -> bool:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return bool(conn.execute(sa.text("SELECT to_regclass('public.sync_pipeline_buffer')")).scalar())

    def _install(self, mode: str) -> None:
        from sync_pipeline.ops.capture import install_capture

        if mode == "none":
            return
        capture_modes.require_capture(mode)
        install_capture(self.engine, self._spec(mode))

    def _bulk(self) -> dict[str, float]:
        """One UPDATE of bulk_fraction of the table and one INSERT of as many new rows."""
        count = int(self.rows * self.bulk_fraction)
        step = max(1, round(1 / self.bulk_fraction))
        update_s = self._sql(
            f"UPDATE {common.PGBENCH_TABLE} SET stock = stock + 1, updated_at = now() WHERE id % {step} = 0"
        )
        insert_s = self._sql(
            f"INSERT INTO {common.PGBENCH_TABLE} SELECT id + {self.rows}, sku, name, description, category, "
            f"brand, price, stock, rating, weight_kg, tags, attributes, created_at, now() "
            f"FROM {common.PGBENCH_TABLE} WHERE id <= {count}"
        )
        return {"bulk_rows": count, "bulk_update_s": round(update_s, 3), "bulk_insert_s": round(insert_s, 3)}

    def run(self) -> dict[str, Any]:
        log = self.harness.log if hasattr(self.harness, "log") else print
        report: dict[str, Any] = {
            "table": common.PGBENCH_TABLE,
            "rows": self.rows,
            "clients": self.clients,
            "seconds_per_run": self.seconds,
            "repeat": self.repeat,
            "script": SCRIPT.strip()
            .replace("{rows}", str(self.rows))
            .replace("{table}", common.PGBENCH_TABLE),
            "consumer_during_measurement": "none (the write path alone: nothing drains the buffer or "
            "reads the slot while pgbench runs)",
        }
        log(f"pgbench: seeding {self.rows:,} rows into {common.PGBENCH_TABLE}")
        report["seed_seconds"] = round(
            common.seed_table(self.harness.pg_url, self.rows, common.PGBENCH_TABLE), 1
        )
        _, why = capture_modes.logical_capture_available()
        report["logical_capture"] = why
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        errors: dict[str, str] = {}
        for rep in range(self.repeat):
            order = MODES[rep % len(MODES) :] + MODES[: rep % len(MODES)]
            for mode in order:
                if mode in errors:
                    continue
                self._reset()
                try:
                    self._install(mode)
                except capture_modes.CaptureUnavailable as exc:
                    errors[mode] = str(exc)
                    log(f"  pgbench {mode}: {exc}")
                    continue
                except Exception as exc:
                    errors[mode] = f"install failed: {type(exc).__name__}: {exc}"
                    log(f"  pgbench {mode}: {errors[mode]}")
                    continue
                try:
                    result = run_pgbench(
                        self.harness.pg_url, self.script, self.seconds, self.clients, self.workdir,
                        f"{mode}-{rep}",
                    )  # fmt: skip
                    result.update(self._bulk())
                    result["buffer_rows_after"] = self._buffer_rows() if mode == "triggers" else None
                    result["slot_retained_wal_bytes"] = self._slot_bytes() if mode == "logical" else None
                except Exception as exc:
                    errors[mode] = f"{type(exc).__name__}: {exc}"
                    log(f"  pgbench {mode} FAILED: {exc}")
                    continue
                finally:
                    self._reset()
                runs[mode].append(result)
                log(
                    f"  pgbench {mode}: {result['tps']:,.0f} TPS, latency {result.get('latency_avg_ms')} ms "
                    f"(p95 {result.get('latency_p95_ms')}), bulk update {result['bulk_update_s']} s"
                )
        modes: dict[str, Any] = {}
        for mode in MODES:
            good = runs[mode]
            if not good:
                modes[mode] = {"error": errors.get(mode, "not run")}
                continue
            modes[mode] = {
                key: round(statistics.median(r[key] for r in good if r.get(key) is not None), 3)
                for key in ("tps", "latency_avg_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                            "bulk_update_s", "bulk_insert_s")
                if any(r.get(key) is not None for r in good)
            }  # fmt: skip
            modes[mode]["runs"] = good
        base = modes["none"].get("tps")
        ratio = {}
        for mode, key in (("triggers", "trigger"), ("logical", "logical")):
            tps = modes[mode].get("tps")
            ratio[key] = round(tps / base, 3) if tps and base else None
        report["modes"] = modes
        report["checkpoint_between_modes"] = self.checkpoint
        report["tps_ratio"] = ratio
        report["errors"] = errors
        self._sql(f"DROP TABLE IF EXISTS {common.PGBENCH_TABLE}")
        return report

    def _buffer_rows(self) -> int | None:
        import sqlalchemy as sa

        if not self._buffer_exists():
            return None
        with self.engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT count(*) FROM sync_pipeline_buffer WHERE spec = :s"),
                {"s": common.PGBENCH_SPEC_NAME},
            ).scalar()

    def _slot_bytes(self) -> int | None:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn))::bigint "
                    "FROM pg_replication_slots WHERE slot_type = 'logical'"
                )
            ).scalar()
