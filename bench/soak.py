"""The soak: load held for MINUTES (`python -m bench.run --soak 10`; not in CI, not in bench-smoke).

On bench_products (at --rows), into its own index `bench_soak`:

1. a full sync (the in-process pipeline scenario), then the spec's capture installed
   (triggers, or logical with --soak-capture logical);
2. `sync-pipeline ui` (dagster dev: webserver + daemon) with its own instance, and the
   spec at its default buffer_sensor settings plus a schedule every `schedule_minutes`
   (a partition sync of the latest closed window, on the daemon's clock);
3. pgbench writing at a steady `--rate` (single-row UPDATEs by key, 2 clients) for the whole
   soak, while the daemon's sensor launches drains; a probe commits one marked change a
   second and times it to searchable (freshness over the whole soak);
4. a third of the way in, a backfill of the last three daily partitions through the
   webserver (`sync-pipeline backfill`), as a user would launch one;
5. at the end: pgbench stops, the probe waits for its last changes, the harness waits for
   the buffer to empty and for every run but the following drain to finish, stops the
   daemon (and with it the drain run), and runs verify: drift must be 0. Nothing is drained
   by the harness itself.
6. the metrics the exporter would export (ops/scrape, read as `sync-pipeline metrics` reads
   them), at the start and the end: report["metrics"] puts their lag beside the probe's
   freshness, and their backlog, dead letters and documents beside verify's figures.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import capture_modes, common, freshness
from bench.dagster_dev import DagsterDev
from bench.pgbench import run_pgbench

INDEX = "bench_soak"
ACTIVE = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


def run(
    harness, minutes: float, rate: float, capture: str = "triggers", schedule_minutes: int = 3,
    clients: int = 2, settle_timeout: float = 600.0,
) -> dict[str, Any]:  # fmt: skip
    import sqlalchemy as sa

    from sync_pipeline.io.buffer import has_pending
    from sync_pipeline.io.postgres import REPEATABLE_READ
    from sync_pipeline.io.search.indices import drop_target
    from sync_pipeline.ops.capture import install_capture, uninstall_capture
    from sync_pipeline.ops.verify import verify_spec

    report: dict[str, Any] = {"minutes": minutes, "rate_tps": rate, "capture": capture, "index": INDEX}
    try:
        capture_modes.require_capture(capture)
    except capture_modes.CaptureUnavailable as exc:
        report["status"] = str(exc)
        return report
    tmp = harness.tmp / "soak"
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "sync.yaml"
    config.write_text(
        common.spec_yaml(
            index=INDEX,
            capture=None if capture == "triggers" else capture,
            schedule={"cron": f"*/{schedule_minutes} * * * *", "catch_up": False},
        )
    )
    report["schedule_cron"] = f"*/{schedule_minutes} * * * *"
    specs, spec = common.load_spec(config)
    engine = common.engine(harness.pg_url)
    es = harness.es
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT count(*) FROM {common.TABLE}")).scalar()
    report["rows"] = rows
    harness.log(f"  soak: full sync of {rows:,} rows into {INDEX}")
    initial = harness.scenario("pipeline", *harness.pipeline_args(config), rows=rows)
    report["initial_sync"] = {k: initial.get(k) for k in ("docs", "seconds", "docs_in_es", "success")}
    with engine.begin() as conn:
        freshness.clear_buffer(conn, spec)
    install_capture(engine, spec)
    scraped_before = _scrape(engine, spec)  # the metrics log outlives a run: the soak's are deltas
    dev = DagsterDev(harness, config, tmp, f"bench_soak_{os.getpid()}")
    script = tmp / "soak_update.sql"
    script.write_text(
        f"\\set id random(1, {rows})\n"
        f"UPDATE {common.TABLE} SET stock = stock + 1, updated_at = now() WHERE id = :id;\n"
    )
    seconds = minutes * 60
    try:
        report["startup_s"] = dev.start()
        pgbench_out: dict[str, Any] = {}

        def writer() -> None:
            try:
                pgbench_out.update(
                    run_pgbench(
                        harness.pg_url, script, seconds, clients, tmp, "soak", rate=rate, sampling=0.2
                    )
                )
            except Exception as exc:
                pgbench_out["error"] = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=writer, daemon=True)
        prober = freshness.Prober(engine, es, INDEX).start()
        started = time.monotonic()
        thread.start()
        rng = random.Random(11)
        backfill: dict[str, Any] = {"status": "not launched"}
        while time.monotonic() - started < seconds:
            prober.change(rng.randint(1, rows), "soak")
            if backfill["status"] == "not launched" and time.monotonic() - started >= seconds / 3:
                backfill = _launch_backfill(dev, config)
                harness.log(f"  soak: backfill {backfill['status']}")
            time.sleep(1.0)
        thread.join(timeout=300)
        report["pgbench"] = pgbench_out
        report["pgbench_tps"] = pgbench_out.get("tps")
        report["backfill"] = backfill
        timed_out = prober.wait_all(300)
        prober.stop()
        report["freshness"] = freshness.summary(prober.values("soak"))
        report["freshness"]["timed_out"] = timed_out
        # quiescence: the buffer empty (the daemon's drains), then no run active
        settle_started = time.monotonic()
        while has_pending(engine, spec) and time.monotonic() - settle_started < settle_timeout:
            time.sleep(2)
        report["buffer_pending_at_end"] = has_pending(engine, spec)
        # every run but the drains finished (by default a drain run always follows the changes
        # and hands over to its successor: there is always one running, by design)
        drain_job = f"{spec.name}_drain"
        while time.monotonic() - settle_started < settle_timeout:
            runs = dev.runs("").get("runs_by_job", {})
            others = [job for name, job in runs.items() if name != drain_job]
            if not any(job["statuses"].get(s) for job in others for s in ACTIVE):
                break
            time.sleep(3)
        report["settle_s"] = round(time.monotonic() - settle_started, 1)
        # every run of the soak's own instance, by job (backfill runs may carry an asset job's name)
        report["runs"] = dev.runs("").get("runs_by_job", {})
        report["runs_summary"] = {
            job: {"statuses": job_runs["statuses"], "origins": job_runs.get("origins")}
            for job, job_runs in report["runs"].items()
        }
        origins = [o for job in report["runs"].values() for o in job.get("origins", {})]
        report["schedule_ran"], report["backfill_ran"] = "schedule" in origins, "backfill" in origins
        try:
            after, fresh = _scrape(engine, spec), report["freshness"]
            report["metrics"] = _metrics_beside_the_soak(spec.name, scraped_before, after, fresh)
        except Exception as exc:  # the soak's own figures stand without the exporter's
            report["metrics"] = {"error": f"{type(exc).__name__}: {exc}"[-1000:]}
    finally:
        report["dagster_tree_peak_rss_mb"] = dev.stop()
    try:
        es.indices.refresh(index=INDEX)
        with engine.connect().execution_options(**REPEATABLE_READ) as conn:
            verified = verify_spec(conn, es, spec)
        report["verify"] = {
            "pg_count": verified.pg_count,
            "es_count": verified.es_count,
            "missing": verified.missing,
            "extra": verified.extra,
            "mismatched": verified.mismatched,
            "mapping": verified.mapping,
        }
        report["drift"] = verified.drift
        ok = verified.drift == 0 and not report.get("buffer_pending_at_end")
        report["status"] = "ok" if ok and minutes >= 10 else ("ok (shorter than 10 min)" if ok else "drift")
    finally:
        uninstall_capture(engine, spec)
        with engine.begin() as conn:
            freshness.clear_buffer(conn, spec)
        dev.drop_schema()
        drop_target(es, INDEX)
    del specs
    return report


def _scrape(engine, spec) -> dict[str, list[tuple[float, dict[str, str]]]]:
    from sync_pipeline.ops.scrape import read, samples

    return samples(read(engine, [spec]))


def _metrics_beside_the_soak(name: str, before: dict, after: dict, fresh: dict[str, Any]) -> dict[str, Any]:
    """The exporter's figures at the soak's end beside its own: the lag quantiles (commit →
    acknowledged, over the exporter's last window) and the soak's mean lag (the lag counters'
    deltas) beside the probe's freshness (commit → searchable, so a refresh later); the backlog
    and dead letters the exporter shows, and the documents the soak's runs counted."""

    def total(found: dict, metric: str, **labels: str) -> float:  # the soak's spec only
        labels["spec"] = name
        return sum(v for v, have in found[metric] if labels.items() <= have.items())

    def delta(metric: str, **labels: str) -> float:
        return total(after, metric, **labels) - total(before, metric, **labels)

    lag = {have["quantile"]: v for v, have in after["sync_pipeline_lag_seconds"] if have["spec"] == name}
    samples_seen = delta("sync_pipeline_lag_samples_total")
    mean = delta("sync_pipeline_lag_sum_seconds_total") / samples_seen if samples_seen else None
    return {
        "lag_p50_s": lag.get("0.5"),
        "lag_p95_s": lag.get("0.95"),
        "lag_p99_s": lag.get("0.99"),
        "lag_mean_s": mean,
        "lag_samples": samples_seen,
        "freshness_p95_s": fresh.get("p95_s"),
        "freshness_mean_s": fresh.get("mean_s"),
        "buffer_entries": total(after, "sync_pipeline_buffer_entries"),
        "dead_letters": total(after, "sync_pipeline_dead_letters"),
        "documents": {
            f"{op}_{outcome}": delta("sync_pipeline_documents_total", op=op, outcome=outcome)
            for op in ("drain", "sync")
            for outcome in ("indexed", "deleted", "failed", "dead_lettered")
        },
    }


def _launch_backfill(dev: DagsterDev, config) -> dict[str, Any]:
    """The last three closed daily partitions, through the running webserver."""
    today = datetime.now(UTC).date()
    start, end = (today - timedelta(days=3)).isoformat(), today.isoformat()
    cmd = [common.SYNC_PIPELINE, "--config", str(config), "backfill", "--spec", common.SPEC_NAME,
           "--start", start, "--end", end, "--dagster-url", dev.url]  # fmt: skip
    proc = subprocess.run(cmd, env=dev.env, capture_output=True, text=True, timeout=180)
    return {
        "status": "launched" if proc.returncode == 0 else f"failed (exit {proc.returncode})",
        "start": start,
        "end": end,
        "output": (proc.stdout + proc.stderr)[-1000:],
    }
