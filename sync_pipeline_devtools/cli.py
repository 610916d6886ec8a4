"""`python -m sync_pipeline_devtools`: the product's CLI plus what only a checkout has.

    python -m sync_pipeline_devtools services up|down|status|env [--target KIND]
    python -m sync_pipeline_devtools --local demo [--rows N]
    python -m sync_pipeline_devtools --local <any sync-pipeline command> …   (e.g. ui, verify)

The same parser as `sync-pipeline`, with `services` and `demo` added and `--local` served: this
registers the project's local services as `sync_pipeline.apps.cli.session.LOCAL_SERVICES`
(the product itself never imports this package), then runs the product's `main`. Local services
start only on explicit request: `services up`, or `--local` with SYNC_PG_URL/SYNC_ES_URL unset.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence

import sqlalchemy as sa

from sync_pipeline import settings as settings_module
from sync_pipeline.apps.cli import main as product_main
from sync_pipeline.apps.cli import session as session_module
from sync_pipeline.apps.cli.output import EXIT_DRIFT, EXIT_OK, print_sync_summary, sync_exit
from sync_pipeline.apps.cli.parser import _examples, _global_options
from sync_pipeline.apps.cli.parser import build_parser as product_parser
from sync_pipeline.apps.cli.progress import progress_for
from sync_pipeline.apps.cli.runner import Servers, run_drain, run_sync, run_verify
from sync_pipeline.apps.cli.search import search_lines
from sync_pipeline.apps.cli.session import Session, UsageError
from sync_pipeline.io.search.indices import backing_indices, drop_target, index_meta
from sync_pipeline.ops.capture import install_capture
from sync_pipeline_devtools import services
from sync_pipeline_devtools.demo import DEMO_CHANGES, SCHEMA, DemoError, change_demo, seed_demo

PROG = "python -m sync_pipeline_devtools"
DEMO_QUERY = "青花瓷茶杯"


class DevServices:
    """`--local`: the project's dev PostgreSQL and search node, for the unset SYNC_* URLs."""

    def ensure(self) -> tuple[str, str]:
        urls = services.ensure_services()
        return urls.pg_url, urls.es_url

    def dagster_storage(self) -> str:
        return services.local_dagster_storage()


def build_parser() -> argparse.ArgumentParser:
    """The product's parser, with `services` and `demo`."""
    parser = product_parser()
    parser.prog = PROG
    parser.description = "sync-pipeline with the checkout's dev harness: local services and the demo."
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.prog = PROG
    serve = sub.add_parser("services", help="local PostgreSQL + Elasticsearch for dev and tests")
    serve.add_argument(
        "action",
        choices=["up", "down", "status", "env"],
        help="up: start them (idempotent); down: stop them; status: what runs where; env: the "
        "SYNC_* variables that point at them, as shell exports",
    )
    serve.add_argument(
        "--secure",
        action="store_true",
        help="the local Elasticsearch with security and HTTPS on (its own port): up starts it, "
        "env prints SYNC_ES_URL, SYNC_ES_USERNAME, SYNC_ES_PASSWORD and SYNC_ES_CA_CERTS for it",
    )
    serve.add_argument(
        "--nodes",
        type=int,
        choices=[1, 3],
        default=1,
        help="up --nodes 3: also a local three-node Elasticsearch cluster (its own ports), for faults",
    )
    serve.add_argument(
        "--target",
        choices=services.SEARCH_KINDS,
        help="the local search node up starts and env names: elasticsearch (9), elasticsearch8, "
        "opensearch2 or opensearch (3), and down stops alone; default $SYNC_LOCAL_SEARCH, else elasticsearch",
    )
    serve.set_defaults(func=cmd_services)
    demo = sub.add_parser(
        "demo",
        help="seed the demo tables, run a full sync, print a summary. e.g. " + PROG + " --local demo",
    )
    demo.add_argument("--rows", type=int, default=100_000, help="products to seed (default 100000)")
    demo.set_defaults(func=cmd_demo)
    for command in (serve, demo):
        _global_options(command, argparse.SUPPRESS)
    _examples(serve, "services", [f"{PROG} services up", f'eval "$({PROG} services env)"'])
    _examples(demo, "demo", [f"{PROG} --local demo --rows 10000"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    session_module.LOCAL_SERVICES.append(DevServices())
    try:
        return product_main(argv, parser=build_parser(), usage_errors=(services.ServiceError,))
    finally:
        session_module.LOCAL_SERVICES.pop()


def cmd_services(args: argparse.Namespace) -> int:
    if args.action in ("up", "env") and args.secure:
        # the secured node: started (a no-op when running) so that its API key is current
        print("\n".join(services.up_secure().env_lines()))
    elif args.action == "up":
        urls = services.up(search=args.target)
        kind = args.target or services.local_settings().search
        print(f"postgresql:    {urls.pg_url}\n{kind + ':':<14} {urls.es_url}")
        if args.nodes == 3:
            members = services.up_cluster()
            print(f"cluster:       {', '.join(node.url for node in members)}")
    elif args.action == "down" and args.target:
        services.down_search(args.target)
        print(f"local {args.target} stopped")
    elif args.action == "down":
        services.down()
        print("local services stopped")
    elif args.action == "status":
        for name, state in services.status().items():
            print(f"{name}: {state}")
    else:
        lines = services.env_lines(services.local_urls(args.target))
        storage = services.local_dagster_storage()
        print("\n".join([*lines, f"export {settings_module.DAGSTER_PG_URL}={shlex.quote(storage)}"]))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    session = Session.open(args, spec_name="products", preflight=False)
    spec = session.spec
    es = session.es()
    _refuse_an_index_not_ours(es, spec.target.index)
    started = time.perf_counter()
    try:
        with session.engine.begin() as conn:
            seed_demo(conn, args.rows)
    except DemoError as exc:
        raise UsageError(str(exc)) from None
    seconds = time.perf_counter() - started
    print(f"seeded {args.rows:,} products (with categories, tags and reviews) in {seconds:.1f}s")
    # a fresh index each demo, created from the spec's mapping by the first load
    drop_target(es, spec.target.index)
    session.preflight()
    servers = Servers(session.pg_url, session.es_url, session.settings.es)
    with progress_for(sys.stderr) as listener:
        summary = run_sync(spec, listener=listener, servers=servers)
    count = es.count(index=spec.target.index)["count"] if es.indices.exists(index=spec.target.index) else 0
    print()
    print_sync_summary(summary, es_count=count)
    if not summary.success:
        return EXIT_DRIFT
    drained = _demo_changes(session, spec, servers, change_demo, DEMO_CHANGES)
    print()
    reports = run_verify(session.specs, [spec], servers=servers)
    for report in reports:
        print("verify: " + "\n".join(report.lines()))
    # what a user synced for: the same search as `sync-pipeline search --spec products 茶杯`
    print("\n" + "\n".join(search_lines(es, spec, DEMO_QUERY, size=3)))
    ok = all(r.ok for r in reports) and sync_exit(summary) == EXIT_OK and sync_exit(drained) == EXIT_OK
    return EXIT_OK if ok else EXIT_DRIFT


def _refuse_an_index_not_ours(es, name: str) -> None:
    """The demo deletes its index and builds it anew: only one that sync_pipeline made."""
    for index in backing_indices(es, name):
        if not index_meta(es, index):
            raise UsageError(
                f"index {index} exists and was not made by sync_pipeline: the demo deletes and "
                "re-creates its index, so it stops here; use another cluster, or another index name"
            )


def _demo_changes(session: Session, spec, servers: Servers, change, changes: dict[str, str]):
    """Triggers on every table of the documents, a category renamed and a tag added, one drain:
    the changes reach every product they feed."""
    es = session.es()
    tables = install_capture(session.engine, spec, session.settings.locks).tables
    print(f"\nchange capture installed on {', '.join(tables)}")
    with session.engine.begin() as conn:
        changed = change(conn)
    print(f"changed: {changes['category']}  ({changed['category']} row)")
    print(f"         {changes['tag']}  ({changed['tag']} row)")
    drained = run_drain(spec, servers=servers)
    print_sync_summary(drained)
    renamed = es.count(index=spec.target.index, query={"term": {"category.name": "Tea & Teaware"}})["count"]
    with session.engine.connect() as conn:
        expected = conn.execute(
            sa.text(f"SELECT count(*) FROM {SCHEMA}.products WHERE category_id = 7 AND deleted_at IS NULL")
        ).scalar_one()
    tags = es.get(index=spec.target.index, id="1")["_source"].get("tags")
    print(f"category rename reached {renamed:,} of {expected:,} products; product 1 tags: {tags}")
    return drained
