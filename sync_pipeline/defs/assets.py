"""Dagster assets generated from sync specs: extract → documents → index.

Thin wiring: the work happens in extract/transform/load; this module turns a
spec into partitioned assets, moves files between them through the staging
resource and reports counts to Dagster.
"""

# no `from __future__ import annotations`: Dagster inspects the context annotation at runtime
import json
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow as pa

from sync_pipeline.core import progress
from sync_pipeline.core.documents import (
    BulkBody,
    batch_to_bulk,
    build_plan,
    index_mapping,
    index_settings,
    read_batches,
)
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.defs.partitions import partitions_for, window_for
from sync_pipeline.defs.resources import ElasticsearchResource, PostgresResource, StagingResource
from sync_pipeline.io import deadletters
from sync_pipeline.io.buffer import follow
from sync_pipeline.io.elasticsearch import (
    BatchResult,
    LoadTotals,
    bulk_indexing,
    ensure_index,
    iter_bodies,
    load_bulk,
    rebody,
    retry_policy,
    staged_lines,
)
from sync_pipeline.io.postgres import (
    Window,
    arrow_schema,
    describe_source,
    extract_window_to_parquet,
    staged_columns,
    staged_pages,
    stream_window,
)
from sync_pipeline.ops.verify import count_window, reconcile_window

# single-run backfills are the documented way to load a range as one run; the beta notice
# would otherwise repeat on every definitions load, in the CLI and the UI alike
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")

# how the extract's connection shows in pg_stat_activity
EXTRACT_APPLICATION = "sync_pipeline:extract"

def _run_window(context: dg.AssetExecutionContext, spec: SyncSpec) -> tuple[Window, str]:
    time_window = context.partition_time_window
    return window_for(partitions_for(spec), time_window.start, time_window.end, spec.partitions.lookback)


def _asset_keys(spec: SyncSpec) -> tuple[dg.AssetKey, dg.AssetKey, dg.AssetKey]:
    return (
        dg.AssetKey(f"{spec.name}_extract"),
        dg.AssetKey(f"{spec.name}_documents"),
        dg.AssetKey(f"{spec.name}_index"),
    )


def build_spec_assets(spec: SyncSpec) -> list[dg.AssetsDefinition]:
    """extract → documents → index as one multi-asset step.

    Run together (a sync, a backfill, a schedule tick), the three stages
    stream: page k+1 is read from PostgreSQL and turned into documents while
    Elasticsearch indexes page k, and each page is also written to the staging
    files on its way through. Selected on their own (a subset in the UI, or
    re-running just the load), each stage reads the previous stage's staged
    file, so the asset boundaries keep their meaning.
    """
    partitions = partitions_for(spec)
    extract_key, documents_key, index_key = _asset_keys(spec)
    tags = {"sync_pipeline/spec": spec.name}
    specs = [
        dg.AssetSpec(
            extract_key,
            kinds={"postgres", "parquet"},
            description=f"Rows of {spec.source.table or 'the spec query'} per updated_at window, as Parquet.",
            group_name=spec.name,
            tags=tags,
            skippable=True,
        ),
        dg.AssetSpec(
            documents_key,
            deps=[extract_key],
            kinds={"pyarrow"},
            description="Cleansed, field-mapped documents, staged as bulk-ready NDJSON.",
            group_name=spec.name,
            tags=tags,
            skippable=True,
        ),
        dg.AssetSpec(
            index_key,
            deps=[documents_key],
            kinds={"elasticsearch"},
            description=f"Documents bulk-loaded into Elasticsearch index '{spec.target.index}'.",
            group_name=spec.name,
            tags=tags,
            skippable=True,
        ),
    ]
    check_specs = [
        dg.AssetCheckSpec(
            "no_failed_documents",
            asset=index_key,
            description="every document of the run reached Elasticsearch (none lost to transient errors)",
        ),
        dg.AssetCheckSpec(
            "no_dead_letters",
            asset=index_key,
            description="Elasticsearch refused no document for good (see `sync-pipeline dead-letters`)",
        ),
        dg.AssetCheckSpec(
            "window_matches_source",
            asset=index_key,
            description="the window's live rows and its documents agree in count "
            "(and content hash, with reconcile: hash)",
        ),
    ]

    @dg.multi_asset(
        name=f"{spec.name}_extract_documents_index",
        specs=specs,
        check_specs=check_specs,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        can_subset=True,
    )
    def sync_window(
        context: dg.AssetExecutionContext,
        postgres: PostgresResource,
        elasticsearch: ElasticsearchResource,
        staging: StagingResource,
    ):
        selected = context.selected_asset_keys
        if selected >= {extract_key, documents_key, index_key}:
            yield from _stream_window(context, spec, postgres, elasticsearch, staging)
            return
        if extract_key in selected:
            yield _extract_stage(context, spec, postgres, staging)
        if documents_key in selected:
            yield _documents_stage(context, spec, staging)
        if index_key in selected:
            yield from _index_stage(context, spec, postgres, elasticsearch, staging)

    return [sync_window]


def _extract_result(spec: SyncSpec, window: Window, rows: int, seconds: float, path) -> dg.MaterializeResult:
    extract_key, _, _ = _asset_keys(spec)
    return dg.MaterializeResult(
        asset_key=extract_key,
        metadata={
            "dagster/row_count": rows,
            "seconds": round(seconds, 3),
            "window_start": str(window.start or "(open)"),
            "window_end": str(window.end or "(open)"),
            "path": dg.MetadataValue.path(str(path)),
        },
    )


def _documents_result(spec: SyncSpec, plan, docs: int, deletes: int, seconds: float, path):
    _, documents_key, _ = _asset_keys(spec)
    return dg.MaterializeResult(
        asset_key=documents_key,
        metadata={
            "dagster/row_count": docs,
            "soft_deleted": deletes,
            "seconds": round(seconds, 3),
            "fields": ", ".join(f.name for f in plan.fields),
            "path": dg.MetadataValue.path(str(path)),
        },
    )


def _extract_stage(
    context: dg.AssetExecutionContext, spec: SyncSpec, postgres: PostgresResource, staging: StagingResource
) -> dg.MaterializeResult:
    window, key = _run_window(context, spec)
    path = staging.path(spec.name, key, "parquet")
    started = time.perf_counter()
    with postgres.engine().connect() as conn:
        columns = describe_source(conn, spec)
    rows = extract_window_to_parquet(postgres.libpq_url(EXTRACT_APPLICATION), spec, columns, window, path)
    seconds = time.perf_counter() - started
    progress.notify("extracted", spec=spec.name, rows=rows)
    context.log.info(f"extracted {rows} rows of {spec.name} for {key} in {seconds:.1f}s")
    return _extract_result(spec, window, rows, seconds, path)


@dataclass
class _StagedDocuments:
    docs: int = 0
    deletes: int = 0
    seconds: float = 0.0


def _stage_documents(
    batches: Iterator[pa.RecordBatch], plan, path, counts: _StagedDocuments
) -> Iterator[BulkBody]:
    """Documents of each batch as a bulk body, also written to the staged NDJSON file
    (under a temporary name until the last batch is in)."""
    tmp = path.with_suffix(".ndjson.tmp")
    with tmp.open("wb") as out:
        for batch in batches:
            started = time.perf_counter()
            chunk = batch_to_bulk(batch, plan)
            out.write(chunk.body.data)
            counts.docs += chunk.docs
            counts.deletes += chunk.deletes
            counts.seconds += time.perf_counter() - started
            yield chunk.body
    tmp.replace(path)


def _documents_stage(
    context: dg.AssetExecutionContext, spec: SyncSpec, staging: StagingResource
) -> dg.MaterializeResult:
    _, key = _run_window(context, spec)
    extract_key, _, _ = _asset_keys(spec)
    source = staging.path(spec.name, key, "parquet")
    if not source.exists():
        raise dg.Failure(f"no staged extract at {source}: materialize {extract_key.to_user_string()} first")
    plan = build_plan(spec, staged_columns(source))
    target = staging.path(spec.name, key, "ndjson")
    counts = _StagedDocuments()
    for _ in _stage_documents(read_batches(source, spec.batch_size), plan, target, counts):
        pass
    return _documents_result(spec, plan, counts.docs, counts.deletes, counts.seconds, target)


def _index_stage(
    context: dg.AssetExecutionContext,
    spec: SyncSpec,
    postgres: PostgresResource,
    elasticsearch: ElasticsearchResource,
    staging: StagingResource,
) -> Iterator[dg.MaterializeResult]:
    _, key = _run_window(context, spec)
    _, documents_key, _ = _asset_keys(spec)
    documents_path = staging.path(spec.name, key, "ndjson")
    extract_path = staging.path(spec.name, key, "parquet")
    if not documents_path.exists():
        raise dg.Failure(
            f"no staged documents at {documents_path}: materialize {documents_key.to_user_string()} first"
        )
    es = elasticsearch.client()
    _ensure_target(context, es, spec, build_plan(spec, staged_columns(extract_path)))
    bodies = iter_bodies(staged_lines(documents_path), spec.batch_size, spec.target.bulk_max_bytes)
    totals = _load(context, spec, es, postgres, bodies, key)
    yield _index_result(context, spec, postgres, es, totals)


def _stream_window(
    context: dg.AssetExecutionContext,
    spec: SyncSpec,
    postgres: PostgresResource,
    elasticsearch: ElasticsearchResource,
    staging: StagingResource,
) -> Iterator[dg.MaterializeResult]:
    window, key = _run_window(context, spec)
    parquet_path = staging.path(spec.name, key, "parquet")
    documents_path = staging.path(spec.name, key, "ndjson")
    es = elasticsearch.client()
    extracted = {"rows": 0, "seconds": 0.0}
    documents = _StagedDocuments()

    with postgres.engine().connect() as conn:
        columns = describe_source(conn, spec)
    plan = build_plan(spec, columns)
    _ensure_target(context, es, spec, plan)
    rows = stream_window(postgres.libpq_url(EXTRACT_APPLICATION), spec, columns, window, spec.batch_size)
    pages = staged_pages(rows, arrow_schema(columns), parquet_path)

    def timed_pages() -> Iterator[pa.RecordBatch]:
        while True:
            started = time.perf_counter()
            page = next(pages, None)
            extracted["seconds"] += time.perf_counter() - started
            if page is None:
                return
            extracted["rows"] += page.num_rows
            yield page

    bodies = _stage_documents(timed_pages(), plan, documents_path, documents)
    totals = _load(
        context, spec, es, postgres, rebody(bodies, spec.batch_size, spec.target.bulk_max_bytes), key
    )
    progress.notify("extracted", spec=spec.name, rows=extracted["rows"])
    context.log.info(
        f"{spec.name} {key}: read {extracted['rows']} rows in {extracted['seconds']:.1f}s and built "
        f"{documents.docs} documents in {documents.seconds:.1f}s while loading (streamed)"
    )
    yield _extract_result(spec, window, extracted["rows"], extracted["seconds"], parquet_path)
    yield _documents_result(spec, plan, documents.docs, documents.deletes, documents.seconds, documents_path)
    yield _index_result(context, spec, postgres, es, totals)


def _ensure_target(context: dg.AssetExecutionContext, es, spec: SyncSpec, plan) -> None:
    if ensure_index(es, spec.target.index, index_mapping(plan), index_settings(spec)):
        context.log.info(f"created index {spec.target.index} from the spec's mapping")


def _load(
    context: dg.AssetExecutionContext,
    spec: SyncSpec,
    es,
    postgres: PostgresResource,
    bodies: Iterable[BulkBody],
    partition: str,
) -> LoadTotals:
    """Bulk-load bodies with the spec's concurrency; dead letters and batch events as they come."""
    _, _, index_key = _asset_keys(spec)

    def record(batch: BatchResult) -> None:
        if batch.rejected:
            with postgres.engine().begin() as conn:
                deadletters.record(conn, spec.name, batch.rejected, partition, context.run.run_id)
        log_batch(context, index_key, batch)
        progress.notify("batch", spec=spec.name, docs=batch.docs, failed=batch.failed)

    with ExitStack() as settings:

        def switching() -> Iterator[BulkBody]:
            for number, body in enumerate(bodies, 1):
                if number == 2:  # more than one request: a large load, worth turning refresh off
                    settings.enter_context(bulk_indexing(es, spec.target.index, spec.target.replicas))
                yield body

        totals = load_bulk(
            es,
            spec.target.index,
            switching(),
            spec.target.bulk_concurrency,
            on_batch=record,
            retry=retry_policy(spec),
        )
    es.indices.refresh(index=spec.target.index)
    context.log.info(
        f"{spec.name}: {totals.indexed} indexed, {totals.deleted} deleted, {totals.stale_skipped} stale, "
        f"{totals.failed} failed, {totals.dead_lettered} dead-lettered in {totals.batches} batches, "
        f"{totals.seconds:.1f}s"
    )
    if totals.failed:
        # documents lost to transient errors: fail the run so nothing downstream treats it as done
        raise dg.Failure(
            f"{totals.failed} documents were not acknowledged by Elasticsearch after retries",
            metadata=totals_metadata(totals, spec),
        )
    return totals


def _index_result(
    context: dg.AssetExecutionContext, spec: SyncSpec, postgres: PostgresResource, es, totals: LoadTotals
) -> dg.MaterializeResult:
    _, _, index_key = _asset_keys(spec)
    checks = [*load_check_results(totals)]
    if dg.AssetCheckKey(index_key, "window_matches_source") in context.selected_asset_check_keys:
        checks.append(reconcile_check(context, spec, postgres, es))
    selected = context.selected_asset_check_keys
    return dg.MaterializeResult(
        asset_key=index_key,
        metadata=totals_metadata(totals, spec),
        check_results=[c for c in checks if dg.AssetCheckKey(index_key, c.check_name) in selected],
    )


def reconcile_check(
    context: dg.AssetExecutionContext, spec: SyncSpec, postgres: PostgresResource, es
) -> dg.AssetCheckResult:
    """The run's windows (without the lookback) on both sides: live-row count, and with
    `reconcile: hash` also an order-independent content hash."""
    if spec.reconcile == "off":
        return dg.AssetCheckResult(
            check_name="window_matches_source", passed=True, metadata={"skipped": "reconcile: off"}
        )
    time_window = context.partition_time_window
    window, _ = window_for(partitions_for(spec), time_window.start, time_window.end)
    with postgres.engine().connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        if spec.reconcile == "count":
            source_count, target_count = count_window(conn, es, spec, window)
            hashes = {}
            passed = source_count == target_count
        else:
            source, target = reconcile_window(conn, es, spec, window)
            source_count, target_count = source.count, target.count
            hashes = {"postgres_hash": f"{source.digest:016x}", "elasticsearch_hash": f"{target.digest:016x}"}
            passed = source == target
    return dg.AssetCheckResult(
        check_name="window_matches_source",
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "mode": spec.reconcile,
            "postgres_count": source_count,
            "elasticsearch_count": target_count,
            **hashes,
            "hint": "" if passed else "run `sync-pipeline verify --fix` to repair",
        },
    )


def log_batch(context: dg.AssetExecutionContext, key: dg.AssetKey, batch: BatchResult) -> None:
    """One structured event per bulk batch: visible in the run's event log."""
    context.log_event(
        dg.AssetObservation(
            asset_key=key,
            metadata={
                "batch": batch.batch,
                "indexed": batch.indexed,
                "deleted": batch.deleted,
                "stale_skipped": batch.stale_skipped,
                "failed": batch.failed,
                "dead_lettered": batch.dead_lettered,
                "seconds": round(batch.seconds, 3),
                "docs_per_s": round(batch.docs_per_second, 1),
                **({"first_error": json.dumps(batch.errors[0])} if batch.errors else {}),
            },
        )
    )


def totals_metadata(totals: LoadTotals, spec: SyncSpec) -> dict[str, Any]:
    return {
        "dagster/row_count": totals.docs,
        "indexed": totals.indexed,
        "deleted": totals.deleted,
        "stale_skipped": totals.stale_skipped,
        "failed": totals.failed,
        "dead_lettered": totals.dead_lettered,
        "batches": totals.batches,
        "seconds": round(totals.seconds, 3),
        "docs_per_s": round(totals.docs / totals.seconds, 1) if totals.seconds else 0.0,
        "index": spec.target.index,
    }


def load_check_results(totals: LoadTotals) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            check_name="no_failed_documents",
            passed=totals.failed == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"failed": totals.failed},
        ),
        dg.AssetCheckResult(
            check_name="no_dead_letters",
            passed=totals.dead_lettered == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "dead_lettered": totals.dead_lettered,
                "first_errors": dg.MetadataValue.json(totals.first_errors),
            },
        ),
    ]


def build_drain_asset(spec: SyncSpec) -> dg.AssetsDefinition:
    """`<spec>_changes`: drain the change buffer (triggers) into the index."""
    key = dg.AssetKey(f"{spec.name}_changes")

    @dg.asset(
        key=key,
        group_name=spec.name,
        kinds={"postgres", "elasticsearch"},
        tags={"sync_pipeline/spec": spec.name},
        description="Buffered inserts, updates and hard deletes (trigger-fed outbox) applied to the index.",
        check_specs=[
            dg.AssetCheckSpec("no_failed_documents", asset=key),
            dg.AssetCheckSpec("no_dead_letters", asset=key),
        ],
    )
    def changes(
        context: dg.AssetExecutionContext, postgres: PostgresResource, elasticsearch: ElasticsearchResource
    ) -> dg.MaterializeResult:
        totals = follow(
            postgres.engine(),
            elasticsearch.client(),
            spec,
            idle_seconds=spec.buffer_sensor.follow_seconds,
            max_seconds=spec.buffer_sensor.max_run_seconds,
            run_id=context.run.run_id,
            on_batch=lambda batch: log_batch(context, key, batch),
        )
        context.log.info(f"{spec.name}: drained {totals.claimed} buffered changes")
        return dg.MaterializeResult(
            metadata={**totals_metadata(totals, spec), "claimed": totals.claimed},
            check_results=load_check_results(totals),
        )

    return changes


def build_drain_job(spec: SyncSpec):
    return dg.define_asset_job(
        name=f"{spec.name}_drain",
        selection=dg.AssetSelection.assets(dg.AssetKey(f"{spec.name}_changes")),
        description=f"apply the change buffer of spec '{spec.name}'",
        # the instance's queue allows one run per value of sync_pipeline/load
        tags={"sync_pipeline/spec": spec.name, "sync_pipeline/load": f"{spec.name}:drain"},
    )


def build_sync_job(spec: SyncSpec):  # -> UnresolvedAssetJobDefinition (not exported by dagster)
    return dg.define_asset_job(
        name=f"{spec.name}_sync",
        selection=dg.AssetSelection.assets(*_asset_keys(spec)),
        description=f"extract → documents → index for spec '{spec.name}'; a partition range runs as one run",
        tags={"sync_pipeline/spec": spec.name, "sync_pipeline/load": f"{spec.name}:sync"},
    )


def build_rebuild_job(spec: SyncSpec) -> dg.JobDefinition:
    """`<spec>_rebuild`: the zero-downtime rebuild, launchable from the UI."""

    @dg.op(name=f"{spec.name}_rebuild_index", tags={"kind": "elasticsearch"})
    def rebuild_index(
        context: dg.OpExecutionContext, postgres: PostgresResource, elasticsearch: ElasticsearchResource
    ) -> dg.Output:
        from sync_pipeline.ops.rebuild import rebuild

        key = dg.AssetKey(f"{spec.name}_index")
        report = rebuild(
            postgres.engine(), elasticsearch.client(), spec, on_batch=lambda b: log_batch(context, key, b)
        )
        context.log.info(
            f"{spec.target.index}: {report.old_indices} → {report.new_index} in {report.seconds:.1f}s"
        )
        return dg.Output(
            report.new_index,
            metadata={
                "alias": report.alias,
                "new_index": report.new_index,
                "old_indices": ", ".join(report.old_indices),
                "indexed": report.filled.indexed,
                "seconds": round(report.seconds, 3),
                "drift_before_swap": report.before_swap.drift,
                "repaired_after_swap": report.after_swap.drift,
            },
        )

    @dg.job(
        name=f"{spec.name}_rebuild",
        description=f"rebuild '{spec.target.index}' into a new versioned index and swap the alias",
        tags={"sync_pipeline/spec": spec.name, "sync_pipeline/load": f"{spec.name}:rebuild"},
    )
    def rebuild_job():
        rebuild_index()

    return rebuild_job
