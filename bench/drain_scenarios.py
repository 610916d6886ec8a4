"""The drain scenarios (`python -m bench.scenarios incremental|drain`): 1% of the rows updated
and 0.1% deleted with capture installed, then the drain timed; the table restored afterwards.

Each runs in its own subprocess like every scenario (bench/scenarios.py parses the arguments).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from bench import capture_modes, common, measure


def run_incremental(args: argparse.Namespace) -> dict[str, Any]:
    """Update 1% and hard-delete 0.1% of the rows with the change-buffer triggers installed,
    then time the drain (sync_pipeline.apps.cli.runner.run_drain). Expects the spec's index to hold the
    table (the previous full sync); restores the deleted rows afterwards (triggers removed)."""
    common.setup_env(args)
    pg_url, es_url = common.server_urls()
    os.environ["SYNC_PG_URL"], os.environ["SYNC_ES_URL"] = pg_url, es_url
    import sqlalchemy as sa

    from sync_pipeline.apps.cli.runner import run_drain
    from sync_pipeline.io.buffer import BUFFER
    from sync_pipeline.ops.capture import install_capture, uninstall_capture

    _, spec = common.load_spec(Path(args.config))
    es = common.es_client(es_url)
    table, removed = common.TABLE, f"{common.TABLE}_removed"
    engine = common.engine(pg_url)
    before = es.count(index=spec.target.index)["count"]
    with engine.begin() as conn:
        if _buffer_exists(conn):
            conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))
    install_capture(engine, spec)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {removed}"))
        conn.execute(sa.text(f"CREATE TABLE {removed} AS SELECT * FROM {table} WHERE id % 1000 = 3"))
        updated = conn.execute(
            sa.text(
                f"UPDATE {table} SET price = price + 1, stock = stock + 1, updated_at = now() "
                "WHERE id % 100 = 7"
            )
        ).rowcount
        deleted = conn.execute(sa.text(f"DELETE FROM {table} WHERE id % 1000 = 3")).rowcount
    started = time.perf_counter()
    summary = run_drain(spec)
    seconds = time.perf_counter() - started
    after = es.count(index=spec.target.index)["count"]
    probe = es.search(
        index=spec.target.index, query={"term": {"id": 7}}, size=1, filter_path="hits.hits._source.stock"
    )
    uninstall_capture(engine, spec)
    with engine.begin() as conn:
        leftover = conn.execute(
            sa.select(sa.func.count()).select_from(BUFFER).where(BUFFER.c.spec == spec.name)
        ).scalar()
        conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))
        conn.execute(sa.text(f"INSERT INTO {table} SELECT * FROM {removed}"))
        conn.execute(sa.text(f"DROP TABLE {removed}"))
        stock_7 = conn.execute(sa.text(f"SELECT stock FROM {table} WHERE id = 7")).scalar()
    es_stock_7 = probe.get("hits", {}).get("hits", [{}])[0].get("_source", {}).get("stock")
    return {
        "changes": updated + deleted,
        "updated": updated,
        "deleted": deleted,
        "docs": summary.indexed + summary.deleted,
        "seconds": round(seconds, 3),
        "load_seconds": round(summary.seconds, 3),
        "success": summary.success,
        "failed": summary.failed,
        "batches": summary.batches,
        "docs_in_es_before": before,
        "docs_in_es_after": after,
        "expected_after": before - deleted,
        "buffer_left": leftover,
        "update_arrived": stock_7 is not None and es_stock_7 == stock_7,
        "error": summary.error,
    }


def run_drain_scenario(args: argparse.Namespace) -> dict[str, Any]:
    """The drain of issue 16, per capture mode: with the spec's capture installed (triggers, or
    logical: a publication + a replication slot), update 1% and hard-delete 0.1% of the rows,
    then time sync_pipeline.ops.drain.drain(engine, es, spec) — the drain itself, no Dagster
    run around it (scenario `incremental` is the same through a Dagster run).

    Expects the spec's index to hold the table (the full sync just before). Afterwards, untimed:
    the deleted rows are re-inserted with the capture still installed and drained again, so the
    index matches the table for the next scenario, and the capture is uninstalled."""
    common.setup_env(args)
    pg_url, es_url = common.server_urls()
    os.environ["SYNC_PG_URL"], os.environ["SYNC_ES_URL"] = pg_url, es_url
    capture = args.capture
    capture_modes.require_capture(capture)  # CaptureUnavailable: reported as such, never measured as triggers
    import sqlalchemy as sa

    from sync_pipeline.ops.capture import install_capture, uninstall_capture
    from sync_pipeline.ops.drain import drain

    _, spec = common.load_spec(Path(args.config), args.spec)
    if str(getattr(spec, "capture", "triggers")) != capture:
        raise SystemExit(
            f"spec {spec.name} captures with {getattr(spec, 'capture', 'triggers')}, not {capture}"
        )
    es = common.es_client(es_url)
    table, removed = spec.source.table, f"{spec.source.table}_removed"
    engine = common.engine(pg_url)
    index = spec.target.index
    es.indices.refresh(index=index)
    before = es.count(index=index)["count"]
    with engine.begin() as conn:
        if _buffer_exists(conn):
            from sync_pipeline.io.buffer import BUFFER

            conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))
    install_capture(engine, spec)  # triggers, or a publication + a slot (outside any transaction)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {removed}"))
            conn.execute(sa.text(f"CREATE TABLE {removed} AS SELECT * FROM {table} WHERE id % 1000 = 3"))
        with engine.begin() as conn:
            # committed durably (the local server runs synchronous_commit = off): what the drain
            # must apply is flushed when it starts, so it times the drain, not the WAL writer
            if args.commit == "sync":
                conn.execute(sa.text("SET LOCAL synchronous_commit = on"))
            updated = conn.execute(
                sa.text(f"UPDATE {table} SET {args.update_set}, updated_at = now() WHERE id % 100 = 7")
            ).rowcount
            deleted = conn.execute(sa.text(f"DELETE FROM {table} WHERE id % 1000 = 3")).rowcount
        cpu_before = measure.cpu_seconds(0) + measure.cpu_seconds(-1)
        started = time.perf_counter()
        totals = drain(engine, es, spec)
        seconds = time.perf_counter() - started
        cpu = measure.cpu_seconds(0) + measure.cpu_seconds(-1) - cpu_before
        after = es.count(index=index)["count"]
        probe_id = 7
        with engine.connect() as conn:
            expected_row = conn.execute(
                sa.text(f"SELECT {args.probe_column} FROM {table} WHERE id = :id"), {"id": probe_id}
            ).scalar()
        hit = es.search(index=index, query={"term": {"id": probe_id}}, size=1)["hits"]["hits"]
        in_es = hit[0]["_source"].get(args.probe_column) if hit else None
        again = drain(engine, es, spec)  # nothing may be left to drain
        # restore (untimed): the deleted rows back, through the capture, so the index matches again
        with engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {table} SELECT * FROM {removed}"))
            conn.execute(sa.text(f"DROP TABLE {removed}"))
        restored = drain(engine, es, spec)
    finally:
        uninstall_capture(engine, spec)
        with engine.begin() as conn:
            if _buffer_exists(conn):
                from sync_pipeline.io.buffer import BUFFER

                conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))
    with engine.connect() as conn:
        table_rows = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
    es.indices.refresh(index=index)
    final = es.count(index=index)["count"]
    return {
        "capture": capture,
        "changes": updated + deleted,
        "updated": updated,
        "deleted": deleted,
        "docs": totals.indexed + totals.deleted,
        "claimed": totals.claimed,
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 2),
        "load_seconds": round(totals.seconds, 3),
        "batches": totals.batches,
        "failed": totals.failed,
        "stale_skipped": totals.stale_skipped,
        "docs_in_es_before": before,
        "docs_in_es_after": after,
        "expected_after": before - deleted,
        "left_after_drain": again.claimed,
        "update_arrived": expected_row is not None and str(in_es) == str(expected_row),
        "restored_docs": restored.indexed,
        "docs_in_es_final": final,
        "table_rows_final": table_rows,
    }


def _buffer_exists(conn) -> bool:
    import sqlalchemy as sa

    return bool(
        conn.execute(sa.text("SELECT to_regclass('public.sync_pipeline_buffer') IS NOT NULL")).scalar()
    )
