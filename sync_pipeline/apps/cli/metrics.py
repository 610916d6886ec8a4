"""`sync-pipeline metrics --port N`: the exporter as a process of its own (apps/metrics.py); its
flags are in apps/cli/parser.py.

Serves GET /metrics (Prometheus text) and GET /healthz (JSON, 200 or 503) for every spec of the
spec file until interrupted; starts even when a server is down (/metrics and /healthz then
answer 503 saying which).
"""

from __future__ import annotations

import argparse
import sys

from sync_pipeline.apps.cli.output import EXIT_OK
from sync_pipeline.apps.cli.session import Session, UsageError


def cmd_metrics(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535 (got {args.port})")
    if args.cache_seconds < 0:
        raise UsageError(f"--cache-seconds must be 0 or more (got {args.cache_seconds:g})")
    if args.backlog_minutes <= 0:
        raise UsageError(f"--backlog-minutes must be above 0 (got {args.backlog_minutes:g})")
    from sync_pipeline.apps.metrics import Exporter, serve  # OpenTelemetry: for this command only

    session = Session.open(args, preflight=False)
    exporter = Exporter(
        session.engine, session.es, session.specs, args.backlog_minutes * 60, args.cache_seconds
    )
    try:
        server = serve(exporter, args.host, args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    host, port = server.server_address[:2]
    print(f"sync-pipeline metrics: http://{host}:{port}/metrics and /healthz", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        exporter.close()
    return EXIT_OK
