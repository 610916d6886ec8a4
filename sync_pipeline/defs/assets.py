"""Dagster assets generated from sync specs: extract → documents → index, and the buffer drain.

Wiring only: the work is in ops/ (sync_window, drain); this module turns a
spec into partitioned assets, hands each run its window and resources, and
reports what came back as materializations, observations and checks.
"""

# no `from __future__ import annotations`: Dagster inspects the context annotation at runtime
import warnings
from collections.abc import Callable, Iterator

import dagster as dg
from sqlalchemy.engine import Engine

from sync_pipeline.core import naming
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.defs.checks import reconcile_check, window_check_specs
from sync_pipeline.defs.freshness import changes_freshness_policy, index_freshness_policy
from sync_pipeline.defs.partitions import partitions_for, window_for
from sync_pipeline.defs.reporting import BatchProgress, batch_logger, load_check_results, totals_metadata
from sync_pipeline.defs.resources import ElasticsearchResource, PostgresResource, StagingResource
from sync_pipeline.io.replication import SlotBusy, SlotMissing
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.ops import sync_window as window_sync
from sync_pipeline.ops.binding import Bound, bind
from sync_pipeline.ops.drain import follow
from sync_pipeline.ops.metrics import measured_sync
from sync_pipeline.ops.prepare import TargetNotReady, TargetVerdict, prepare_target
from sync_pipeline.ops.readying import rebuild_for, refill
from sync_pipeline.ops.retention import purge_older_than
from sync_pipeline.ops.slots import slot_metadata
from sync_pipeline.ops.target import MappingConflict, MappingRefused, TargetState

# single-run backfills are the documented way to load a range as one run; the beta notice
# would otherwise repeat on every definitions load, in the CLI and the UI alike
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")


def asset_keys(spec: SyncSpec) -> tuple[dg.AssetKey, dg.AssetKey, dg.AssetKey]:
    return tuple(dg.AssetKey(name) for name in naming.partitioned_assets(spec.name))  # type: ignore[return-value]


def _window_run(
    context: dg.AssetExecutionContext,
    spec: SyncSpec,
    postgres: PostgresResource,
    staging: StagingResource,
    progress: BatchProgress,
) -> window_sync.WindowRun:
    time_window = context.partition_time_window
    partitions = partitions_for(spec)
    window, key = window_for(partitions, time_window.start, time_window.end, spec.partitions.lookback)
    return window_sync.WindowRun(
        spec=spec,
        window=window,
        key=key,
        engine=postgres.engine(),
        staging=staging.area(),
        run_id=context.run.run_id,
        on_batch=progress,
        log=context.log.info,
    )


def made_ready(
    engine: Engine, es: SearchTarget, verdict: TargetVerdict, run_id: str | None, log: Callable[[str], None]
) -> TargetVerdict:
    """The verdict acted on: the refill or the rebuild it asks for run here, so the load that
    follows writes into an index ready for it."""
    if verdict.needs_rebuild:
        return verdict.done(rebuild_for(engine, es, verdict, run_id, log))
    if verdict.needs_refill:
        return verdict.done(refill(engine, es, verdict, run_id, log))
    return verdict


@measured_sync
def load_window(
    run: window_sync.WindowRun,
    es: SearchTarget,
    bound: Bound | None = None,
    prepared: TargetVerdict | None = None,
    staged: bool = False,
) -> window_sync.WindowResult:
    """The window into the index: its target readied first (a verdict the CLI's preflight reached,
    or one reached here on the run's binding), then streamed from PostgreSQL, or from its staged
    documents (`staged`)."""
    verdict = prepared or prepare_target(es, bound or bind(run.engine, run.spec), run.engine)
    verdict = made_ready(run.engine, es, verdict, run.run_id, run.log)
    for line in verdict.state.lines:
        run.log(f"{run.spec.name}: {line}")
    stage = window_sync.index_stage if staged else window_sync.sync_window
    return stage(run, es, verdict)


def build_spec_assets(spec: SyncSpec) -> list[dg.AssetsDefinition]:
    """extract → documents → index as one multi-asset step (ops.sync_window says how it streams)."""
    extract_key, documents_key, index_key = asset_keys(spec)
    tags = {naming.SPEC_TAG: spec.name}
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
            kinds={"pyarrow", "pandas"} if spec.transform else {"pyarrow"},
            description="Cleansed, field-mapped documents, staged as bulk-ready NDJSON."
            + (f" Each batch goes through {spec.transform.pandas}." if spec.transform else ""),
            metadata={"transform": spec.transform.pandas} if spec.transform else None,
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
            freshness_policy=index_freshness_policy(spec),
        ),
    ]

    @dg.multi_asset(
        name=naming.sync_multi_asset(spec.name),
        specs=specs,
        check_specs=window_check_specs(index_key),
        partitions_def=partitions_for(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        can_subset=True,
    )
    def sync_window(
        context: dg.AssetExecutionContext,
        postgres: PostgresResource,
        elasticsearch: ElasticsearchResource,
        staging: StagingResource,
    ):
        progress = BatchProgress(context, index_key)
        run = _window_run(context, spec, postgres, staging, progress)
        selected = context.selected_asset_keys
        prepared = elasticsearch.take_prepared(spec.name)
        try:
            if selected >= {extract_key, documents_key, index_key}:
                result = load_window(run, elasticsearch.client(), postgres.bound(spec), prepared)
                progress.finish()
                yield _extract_result(run, result.extracted)
                yield _documents_result(run, result.documents)
                yield _index_result(context, run, postgres, elasticsearch, result.totals)
                return
            if extract_key in selected:
                yield _extract_result(run, window_sync.extract_stage(run))
            if documents_key in selected:
                yield _documents_result(run, window_sync.documents_stage(run))
            if index_key in selected:
                result = load_window(run, elasticsearch.client(), postgres.bound(spec), prepared, staged=True)
                progress.finish()
                yield _index_result(context, run, postgres, elasticsearch, result.totals)
        except (window_sync.MissingStage, MappingConflict, MappingRefused) as exc:
            # the message is the whole story (which fields, old → new, the command to run)
            raise dg.Failure(str(exc)) from None
        except window_sync.LoadFailed as exc:
            raise dg.Failure(str(exc), metadata=totals_metadata(exc.totals, spec)) from None
        finally:
            progress.finish()  # what is left and the batch table, also when the load failed
            _retain(context, spec, postgres, staging)

    return [sync_window]


def _retain(context, spec: SyncSpec, postgres: PostgresResource, staging: StagingResource) -> None:
    """Dead letters and staged files of the spec past SYNC_RETENTION_DAYS, purged; a purge that
    fails is a warning, never the run's failure."""
    if not staging.retention_days:
        return
    try:
        purged = purge_older_than(postgres.engine(), staging.area(), staging.retention_days, spec.name)
    except Exception as exc:
        context.log.warning(f"retention: purging old dead letters and staged files failed: {exc}")
        return
    if purged.dead_letters or purged.staged_files:
        context.log.info(
            f"retention ({staging.retention_days:g} days): purged {purged.dead_letters} dead letters "
            f"and {purged.staged_files} staged files"
        )


def _extract_result(run: window_sync.WindowRun, extracted: window_sync.Extracted) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        asset_key=naming.extract_asset(run.spec.name),
        metadata={
            naming.ROW_COUNT: extracted.rows,
            "seconds": round(extracted.seconds, 3),
            "window_start": str(run.window.start or "(open)"),
            "window_end": str(run.window.end or "(open)"),
            # the read waited this long for transactions older than the window's end to finish;
            # any still open then commit rows the window did not see (a later lookback reads them)
            "settle_seconds": extracted.settle_seconds,
            "open_writers_at_read": extracted.open_writers,
            # a window above partitions.range_rows: the key ranges read, and those a run before
            # this one had confirmed (ops/window_ranges.py)
            "key_ranges": extracted.key_ranges,
            "resumed_after_ranges": extracted.resumed_ranges,
            "path": (
                dg.MetadataValue.path(str(extracted.path))
                if extracted.path is not None
                # streamed: the rows went straight into documents (ops/sync_window.py says why)
                else dg.MetadataValue.text("not staged: streamed into documents")
            ),
        },
    )


def _documents_result(run: window_sync.WindowRun, documents: window_sync.Documents) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        asset_key=naming.documents_asset(run.spec.name),
        metadata={
            naming.ROW_COUNT: documents.docs,
            "soft_deleted": documents.deletes,
            "seconds": round(documents.seconds, 3),
            "fields": ", ".join(documents.fields),
            "path": dg.MetadataValue.path(str(documents.path)),
        },
    )


def _index_result(
    context: dg.AssetExecutionContext,
    run: window_sync.WindowRun,
    postgres: PostgresResource,
    elasticsearch: ElasticsearchResource,
    totals,
) -> dg.MaterializeResult:
    index_key = dg.AssetKey(naming.index_asset(run.spec.name))
    selected = context.selected_asset_check_keys
    checks = load_check_results(totals)
    if dg.AssetCheckKey(index_key, naming.CHECK_WINDOW_MATCHES) in selected:
        time_window = context.partition_time_window
        checks.append(reconcile_check(run.spec, postgres, elasticsearch, time_window.start, time_window.end))
    return dg.MaterializeResult(
        asset_key=index_key,
        metadata=totals_metadata(totals, run.spec),
        check_results=[c for c in checks if dg.AssetCheckKey(index_key, c.check_name) in selected],
    )


def build_drain_asset(spec: SyncSpec) -> dg.AssetsDefinition:
    """`<spec>_changes`: drain the change buffer (triggers) into the index."""
    key = dg.AssetKey(naming.changes_asset(spec.name))

    @dg.asset(
        key=key,
        group_name=spec.name,
        kinds={"postgres", "elasticsearch"},
        tags={naming.SPEC_TAG: spec.name},
        freshness_policy=changes_freshness_policy(spec),
        description="Captured inserts, updates and hard deletes (the trigger-fed buffer, or the "
        "replication slot) applied to the index; the buffer sensor's runs follow them as they commit.",
        check_specs=[
            dg.AssetCheckSpec(naming.CHECK_NO_FAILED, asset=key),
            dg.AssetCheckSpec(naming.CHECK_NO_DEAD_LETTERS, asset=key),
        ],
    )
    def changes(
        context: dg.AssetExecutionContext, postgres: PostgresResource, elasticsearch: ElasticsearchResource
    ) -> dg.MaterializeResult:
        # the sensor's runs follow (one always does, by default); a run launched by hand — the
        # UI's Materialize, `sync-pipeline flush` — drains what is there and ends
        by_sensor = context.run.tags.get(naming.TRIGGER_TAG) == "buffer_sensor"
        engine, es = postgres.engine(), elasticsearch.client()
        readied = TargetState()

        def drain():
            return follow(
                engine,
                es,
                spec,
                idle_seconds=spec.buffer_sensor.follow_seconds if by_sensor else 0,
                max_seconds=spec.buffer_sensor.max_run_seconds,
                run_id=context.run.run_id,
                on_batch=batch_logger(context, key),
            )

        try:
            try:
                totals = drain()
            except TargetNotReady as not_ready:  # raised before the drain wrote anything
                # as before the verdict was the caller's: the rebuild's notice on stdout
                readied = made_ready(engine, es, not_ready.verdict, context.run.run_id, print).state
                totals = drain()
            totals.mapping_changes = [*readied.lines, *totals.mapping_changes]
        except (MappingConflict, MappingRefused) as exc:
            raise dg.Failure(f"{exc}\nThe buffered changes stay queued.") from None
        except (SlotMissing, SlotBusy) as exc:
            raise dg.Failure(str(exc)) from None
        context.log.info(f"{spec.name}: drained {totals.claimed} captured changes")
        slot: dict = {}
        if spec.capture == "logical":
            with engine.connect() as conn:
                slot = slot_metadata(conn, spec)
                conn.commit()
        return dg.MaterializeResult(
            metadata={**totals_metadata(totals, spec), "claimed": totals.claimed, **slot},
            check_results=load_check_results(totals),
        )

    return changes


def all_assets(spec: SyncSpec) -> Iterator[dg.AssetsDefinition]:
    yield from build_spec_assets(spec)
    yield build_drain_asset(spec)
