"""A window too big for one statement: synced by key ranges, killed halfway, resumed (issue 27, item 5).

`bench_ranges` holds N rows that all share one updated_at (a bulk import), so the whole table is
one window; its spec reads windows above `partitions.range_rows` (N / 10 here) as key ranges. The
CLI syncs it in a subprocess, which is SIGKILLed once about half the rows are searchable; a second
CLI run resumes after the last range the index confirmed; `verify` then compares every row.

Reports: rows, ranges, the seconds before the kill, the resumed run's seconds, the rows it read
and how many of them the index already held when the kill came (re-read: at most the range the
kill interrupted), the drift after `verify` (must be 0), and the target "resumed after a kill,
verify 0 drift". Run on its own: `python -m bench.ranges --rows 20000`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import common

TABLE = "bench_ranges"
INDEX = "bench_ranges"
RANGES_PER_TABLE = 10


def _imported_at() -> datetime:
    """The one updated_at of every row: inside the first monthly window, which the spec starts."""
    return (datetime.now(UTC) - timedelta(days=40)).replace(day=2, hour=0, minute=0, second=0, microsecond=0)


def seed(pg_url: str, rows: int) -> float:
    """`rows` rows of ~300 B documents, every one stamped with the same updated_at."""
    import sqlalchemy as sa

    started = time.perf_counter()
    with common.engine(pg_url).begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
        conn.execute(
            sa.text(
                f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, title text, body text, "
                "amount numeric(12, 2), updated_at timestamptz)"
            )
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {TABLE} SELECT i, 'item ' || i, repeat(md5(i::text), 6), (i % 100000) / 100.0, "
                ":at FROM generate_series(1, :rows) AS i"
            ),
            {"at": _imported_at(), "rows": rows},
        )
        conn.execute(sa.text(f"ANALYZE {TABLE}"))
    return time.perf_counter() - started


def spec_text(range_rows: int) -> str:
    start = _imported_at().replace(day=1)
    return f"""specs:
  - name: {TABLE}
    source:
      table: {TABLE}
      primary_key: id
      updated_at: updated_at
    target:
      index: {INDEX}
    partitions:
      grain: month
      start: "{start:%Y-%m-%d}"
      range_rows: {range_rows}
    batch_size: 5000
    reconcile: count
    schedule: {{"catch_up": false}}
"""


def _count(es) -> int:
    es.indices.refresh(index=INDEX)
    return int(es.count(index=INDEX)["count"])


def _records(es) -> dict[str, Any]:
    from sync_pipeline.io.search.indices import index_meta, write_index
    from sync_pipeline.ops.window_ranges import RANGES_KEY

    return index_meta(es, write_index(es, INDEX) or INDEX).get(RANGES_KEY) or {}


def _cli(config: Path, env: dict[str, str], *command: str) -> list[str]:
    return [common.SYNC_PIPELINE, "--config", str(config), *command, "--spec", TABLE]


def run(pg_url: str, es_url: str, rows: int, log=print, timeout: float | None = None) -> dict[str, Any]:
    """Seed, sync, kill halfway, resume, verify; the section's figures."""
    from sync_pipeline.io.search.indices import drop_target

    es = common.es_client(es_url)
    drop_target(es, INDEX)
    range_rows = max(1, rows // RANGES_PER_TABLE)
    log(f"ranges: seeding {rows:,} rows sharing one updated_at into {TABLE}")
    seed_seconds = seed(pg_url, rows)
    tmp = Path(tempfile.mkdtemp(prefix="sync-bench-ranges-"))
    config = tmp / "sync.yaml"
    config.write_text(spec_text(range_rows))
    env = common.server_env(pg_url, es_url) | common.run_dirs_env(config, tmp / "staging", tmp / "dagster")
    limit = timeout or 300 + rows * 0.01
    result: dict[str, Any] = {"rows": rows, "range_rows": range_rows, "seed_seconds": round(seed_seconds, 1)}

    log(f"ranges: syncing with the CLI, range_rows {range_rows:,}; SIGKILL once half is searchable")
    with (tmp / "first.log").open("wb") as out:
        started = time.perf_counter()
        # a session of its own: the kill reaches the CLI's whole process group and nothing else
        proc = subprocess.Popen(
            _cli(config, env, "sync", "--full"), env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        at_kill = 0
        while proc.poll() is None and time.perf_counter() - started < limit:
            at_kill = _count(es) if es.indices.exists(index=INDEX) else 0
            if at_kill >= rows // 2:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(1.0)
        proc.wait()
        result["seconds_before_kill"] = round(time.perf_counter() - started, 2)
        result["killed"] = proc.returncode == -signal.SIGKILL
    time.sleep(1.0)  # a mapping update the killed process sent may still be applied: read after it
    held = _count(es)
    record = _records(es)
    confirmed = next(iter(record.values()), {}) if record else {}
    result.update(
        {
            "docs_at_kill": held,
            "ranges_confirmed_at_kill": confirmed.get("ranges", 0),
            "rows_confirmed_at_kill": confirmed.get("rows", 0),
        }
    )
    log(
        f"  killed after {result['seconds_before_kill']} s: {held:,} documents, "
        f"{confirmed.get('ranges', 0)} ranges confirmed"
    )

    started = time.perf_counter()
    resumed = subprocess.run(
        _cli(config, env, "sync", "--full", "--json"), env=env, capture_output=True, timeout=limit
    )
    result["resumed_seconds"] = round(time.perf_counter() - started, 2)
    runs = _json(resumed.stdout).get("runs") or [{}]
    read = int(sum(r.get("extracted") or 0 for r in runs))
    result.update(
        {
            "resumed_ok": resumed.returncode == 0,
            "resumed_rows_read": read,
            # rows the index already held when the kill came, read again: the interrupted range's
            "rows_reread": max(0, read - (rows - held)),
            "ranges": -(-rows // range_rows),  # every row shares the window: the split is exact
            "docs_in_es": _count(es),
            "record_left": bool(_records(es)),
        }
    )
    if resumed.returncode != 0:
        result["error"] = resumed.stderr.decode(errors="replace")[-2000:]

    verified = subprocess.run(
        _cli(config, env, "verify", "--json"), env=env, capture_output=True, timeout=limit
    )
    reports = _json(verified.stdout).get("reports") or []
    drift = [r.get("drift") for r in reports]
    result["drift"] = drift[0] if len(drift) == 1 and isinstance(drift[0], int) else None
    met = bool(
        result["killed"] and result["resumed_ok"] and result["drift"] == 0 and result["docs_in_es"] == rows
    )
    result["target"] = {
        "what": "resumed after a kill, verify 0 drift",
        "measured": f"killed at {held:,}/{rows:,} docs; resumed read {read:,} rows; drift {result['drift']}",
        "met": met,
    }
    log(f"  {json.dumps(result['target'])}")
    drop_target(es, INDEX)
    with common.engine(pg_url).begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
    return result


def _json(text: bytes) -> dict[str, Any]:
    try:
        return json.loads(text)
    except ValueError:
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ranges", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args(argv)
    pg_url, es_url = common.server_urls()
    result = run(pg_url, es_url, args.rows)
    print(json.dumps(result, indent=2))
    return 0 if result["target"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
