"""The joined-documents section's scenario processes (registered in bench/scenarios.py):

    python -m bench.scenarios joined-ceiling --config SPEC --bulk-file FILE --index NAME

The ceiling of a joined spec: its documents, relations included, written once as bulk NDJSON by
`prepare-ceiling` (untimed, bench/scenarios.py), then loaded alone (timed) into an index
the product creates for the spec (ops.target.create_target: the same mapping as the pipeline's),
with the spec's own bulk_concurrency requests of bulk_max_mb in flight, as the pipeline sends them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import common


def run_joined_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    """Timed: only the bulk load of the pre-serialised documents, into the spec's own index layout."""
    from bench.scenarios import load_bulk_file
    from sync_pipeline.io.search.indices import drop_target
    from sync_pipeline.ops.binding import bind
    from sync_pipeline.ops.target import create_target

    pg_url, es_url = common.server_urls()
    _, spec = common.load_spec(Path(args.config))
    es = common.es_client(es_url)
    drop_target(es, args.index)
    engine = common.engine(pg_url)
    create_target(es, bind(engine, spec), engine, index=args.index)
    # the pipeline's own bulk settings: its requests in flight and its body size
    args.threads, args.body_mb = spec.target.bulk_concurrency, spec.target.bulk_max_mb
    return load_bulk_file(es, args)


def register(sub: Any) -> None:
    """The subcommands, on bench/scenarios.py's parser."""
    p = sub.add_parser("joined-ceiling")
    p.add_argument("--config", required=True)
    p.add_argument("--bulk-file", required=True)
    p.add_argument("--index", required=True)
    p.set_defaults(func=run_joined_ceiling)
