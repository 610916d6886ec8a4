"""Jobs per spec: sync (a partition range as one run), drain, and the zero-downtime rebuild."""

# no `from __future__ import annotations`: Dagster inspects the context annotation at runtime
import dagster as dg

from sync_pipeline.core import naming
from sync_pipeline.core.documents.diff import VerifyReport
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.defs.assets import asset_keys
from sync_pipeline.defs.reporting import BatchProgress
from sync_pipeline.defs.resources import ElasticsearchResource, PostgresResource
from sync_pipeline.ops.rebuild import RebuildAborted, RebuildReport, describe_catch_up, rebuild


def _tags(spec: SyncSpec, kind: str) -> dict[str, str]:
    # the instance's queue allows one run per value of the load tag
    return {naming.SPEC_TAG: spec.name, naming.LOAD_TAG: naming.load_tag(spec.name, kind)}


def build_sync_job(spec: SyncSpec):  # -> UnresolvedAssetJobDefinition (not exported by dagster)
    return dg.define_asset_job(
        name=naming.sync_job(spec.name),
        selection=dg.AssetSelection.assets(*asset_keys(spec)),
        description=f"extract → documents → index for spec '{spec.name}'; a partition range runs as one run",
        tags=_tags(spec, "sync"),
    )


def build_drain_job(spec: SyncSpec):
    return dg.define_asset_job(
        name=naming.drain_job(spec.name),
        selection=dg.AssetSelection.assets(dg.AssetKey(naming.changes_asset(spec.name))),
        description=f"apply the change buffer of spec '{spec.name}'",
        # run monitoring (deploy/dagster.yaml) fails a drain still going after this: a run worker
        # killed hard leaves its run STARTED, and the spec's drains would queue behind it forever
        tags={
            naming.SPEC_TAG: spec.name,
            naming.DRAIN_TAG: naming.load_tag(spec.name, "drain"),
            naming.MAX_RUNTIME_TAG: str(int(spec.buffer_sensor.run_timeout_seconds)),
        },
    )


def build_rebuild_job(spec: SyncSpec) -> dg.JobDefinition:
    """`<spec>_rebuild`: the zero-downtime rebuild, launchable from the UI."""

    @dg.op(name=naming.rebuild_op(spec.name), tags={"kind": "elasticsearch"})
    def rebuild_index(
        context: dg.OpExecutionContext, postgres: PostgresResource, elasticsearch: ElasticsearchResource
    ) -> dg.Output:
        key = dg.AssetKey(naming.index_asset(spec.name))

        def on_pass(number: int, verified: VerifyReport) -> None:
            context.log.info(
                f"repair pass {number}: {verified.drift} drifting; {describe_catch_up(verified)}"
            )

        # the fill is a full load: reported like a sync's (every 10 s, problems at once, the table)
        progress = BatchProgress(context, key)
        try:
            report = rebuild(
                postgres.engine(),
                elasticsearch.client(),
                spec,
                on_batch=progress,
                on_pass=on_pass,
                run_id=context.run_id,
            )
        except RebuildAborted as exc:
            # the run fails, so the failure alert fires; the old index keeps serving
            raise dg.Failure(f"not swapped: {exc}", metadata=_rebuild_metadata(exc.report)) from None
        finally:
            progress.finish()
        metadata = _rebuild_metadata(report)
        if report.problems:
            raise dg.Failure(
                f"swapped to {report.new_index}, but the catch-up left {', '.join(report.problems)}",
                metadata=metadata,
            )
        context.log.info(
            f"{spec.target.index}: {report.old_indices} → {report.new_index} in {report.seconds:.1f}s"
        )
        return dg.Output(report.new_index, metadata=metadata)

    @dg.job(
        name=naming.rebuild_job(spec.name),
        description=f"rebuild '{spec.target.index}' into a new versioned index and swap the alias",
        tags=_tags(spec, "rebuild"),
    )
    def rebuild_job():
        rebuild_index()

    return rebuild_job


def _rebuild_metadata(report: RebuildReport) -> dict:
    after = report.after_swap.repaired if report.after_swap else None
    before = report.before_swap
    return {
        "alias": report.alias,
        "new_index": report.new_index,
        "old_indices": ", ".join(report.old_indices),
        "swapped": report.swapped,
        "indexed": report.filled.indexed,
        "dead_lettered": report.dead_letters,
        "repair_passes": len(report.passes),
        # a rebuild stopped by dead letters after the fill ran no pass
        **({"drift_last_pass": before.drift} if before else {}),
        "repaired_after_swap": (after.indexed + after.deleted) if after else 0,
        "seconds": round(report.seconds, 3),
    }


def spec_jobs(spec: SyncSpec) -> list:
    return [build_sync_job(spec), build_drain_job(spec), build_rebuild_job(spec)]
