"""Jobs per spec: sync (a partition range as one run), drain, and the zero-downtime rebuild."""

# no `from __future__ import annotations`: Dagster inspects the context annotation at runtime
import dagster as dg

from sync_pipeline.core import naming
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.defs.assets import asset_keys
from sync_pipeline.defs.reporting import batch_logger
from sync_pipeline.defs.resources import ElasticsearchResource, PostgresResource
from sync_pipeline.ops.rebuild import rebuild


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
        tags=_tags(spec, "drain"),
    )


def build_rebuild_job(spec: SyncSpec) -> dg.JobDefinition:
    """`<spec>_rebuild`: the zero-downtime rebuild, launchable from the UI."""

    @dg.op(name=naming.rebuild_op(spec.name), tags={"kind": "elasticsearch"})
    def rebuild_index(
        context: dg.OpExecutionContext, postgres: PostgresResource, elasticsearch: ElasticsearchResource
    ) -> dg.Output:
        key = dg.AssetKey(naming.index_asset(spec.name))
        report = rebuild(postgres.engine(), elasticsearch.client(), spec, on_batch=batch_logger(context, key))
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
        name=naming.rebuild_job(spec.name),
        description=f"rebuild '{spec.target.index}' into a new versioned index and swap the alias",
        tags=_tags(spec, "rebuild"),
    )
    def rebuild_job():
        rebuild_index()

    return rebuild_job


def spec_jobs(spec: SyncSpec) -> list:
    return [build_sync_job(spec), build_drain_job(spec), build_rebuild_job(spec)]
