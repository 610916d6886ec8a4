"""Prototype: a long-lived drainer, for freshness.

    python -m bench.prototypes.drain_loop --config sync.yaml [--interval 0.5]

Calls sync_pipeline.buffer.drain (unchanged) in one process every `interval`
seconds, instead of the buffer sensor launching a Dagster run (a new process
that imports Dagster and the code location) per drain. What it would lose
compared to runs: a Dagster run record per drain (it could log an
AssetObservation/materialization through the instance instead). Stops on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    from sync_pipeline.buffer import drain
    from sync_pipeline.resources import engine_for, es_client
    from sync_pipeline.specs import load_specs

    spec = load_specs(args.config)[0]
    engine, es = engine_for(os.environ["SYNC_PG_URL"]), es_client(os.environ["SYNC_ES_URL"])
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("drain loop ready", flush=True)
    drains = 0
    while not stopping:
        totals = drain(engine, es, spec)
        if totals.claimed:
            drains += 1
        time.sleep(args.interval)
    print(f"drain loop stopped after {drains} non-empty drains", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
