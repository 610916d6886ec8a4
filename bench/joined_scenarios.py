"""The joined-documents section's scenario processes (registered in bench/scenarios.py):

    python -m bench.scenarios joined-prepare-ceiling --config SPEC --out FILE
    python -m bench.scenarios joined-ceiling --config SPEC --bulk-file FILE --index NAME

The ceiling of a joined spec: its documents, relations included, read and built by the product's
own path (ops.binding.bind → io.postgres.iter_pages with the bound relations → batch_to_bulk, as
verify reads them), written once as bulk NDJSON (untimed), then loaded alone (timed) into an index
the product creates for the spec (ops.target.create_target: the same mapping as the pipeline's),
with the spec's own bulk_concurrency requests of bulk_max_mb in flight, as the pipeline sends them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench import common


def prepare_joined_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    """Untimed: every document of the spec, with its relations, as bulk NDJSON on disk."""
    from sync_pipeline.core.documents.build import batch_to_bulk
    from sync_pipeline.io.postgres import iter_pages
    from sync_pipeline.ops.binding import bind

    pg_url, _ = common.server_urls()
    _, spec = common.load_spec(Path(args.config))
    started = time.perf_counter()
    docs = 0
    out_path = Path(args.out)
    with (
        common.engine(pg_url).connect().execution_options(isolation_level="REPEATABLE READ") as conn,
        out_path.open("wb") as out,
    ):
        bound = bind(conn, spec)
        pages = iter_pages(
            conn, spec, bound.columns, None, 10_000, modes=["by_key"], relations=bound.relations
        )
        for batch in pages:
            chunk = batch_to_bulk(batch, bound.plan, include_deletes=False)  # action + source line pairs
            out.write(chunk.body.data)
            docs += chunk.docs
    return {
        "docs": docs,
        "bytes": out_path.stat().st_size,
        "seconds": round(time.perf_counter() - started, 2),
    }


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
    p = sub.add_parser("joined-prepare-ceiling")
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=prepare_joined_ceiling)

    p = sub.add_parser("joined-ceiling")
    p.add_argument("--config", required=True)
    p.add_argument("--bulk-file", required=True)
    p.add_argument("--index", required=True)
    p.set_defaults(func=run_joined_ceiling)
