"""Asset checks of the index asset: every document acknowledged, none refused, the window
matching its source, the index's mapping matching the spec's."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from sync_pipeline.core import naming
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.defs.partitions import partitions_for, window_for
from sync_pipeline.defs.resources import ElasticsearchResource, PostgresResource
from sync_pipeline.io.postgres import repeatable_read
from sync_pipeline.ops.target import field_sources, mapping_drift
from sync_pipeline.ops.verify import count_window, reconcile_window


def window_check_specs(index_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            naming.CHECK_NO_FAILED,
            asset=index_key,
            description="every document of the run reached Elasticsearch (none lost to transient errors)",
        ),
        dg.AssetCheckSpec(
            naming.CHECK_NO_DEAD_LETTERS,
            asset=index_key,
            description="Elasticsearch refused no document for good (see `sync-pipeline dead-letters`)",
        ),
        dg.AssetCheckSpec(
            naming.CHECK_WINDOW_MATCHES,
            asset=index_key,
            description="the window's live rows and its documents agree in count "
            "(and content hash, with reconcile: hash)",
        ),
    ]


def reconcile_check(
    spec: SyncSpec,
    postgres: PostgresResource,
    elasticsearch: ElasticsearchResource,
    start: datetime,
    end: datetime,
) -> dg.AssetCheckResult:
    """The run's windows (without the lookback) on both sides: live-row count, and with
    `reconcile: hash` also an order-independent content hash."""
    if spec.reconcile == "off":
        return dg.AssetCheckResult(
            check_name=naming.CHECK_WINDOW_MATCHES, passed=True, metadata={"skipped": "reconcile: off"}
        )
    window, _ = window_for(partitions_for(spec), start, end)
    es = elasticsearch.client()
    with repeatable_read(postgres.engine()) as conn:
        if spec.reconcile == "count":
            source_count, target_count = count_window(conn, es, spec, window, postgres.bound(spec))
            hashes = {}
            passed = source_count == target_count
        else:
            source, target = reconcile_window(conn, es, spec, window, postgres.bound(spec))
            source_count, target_count = source.count, target.count
            hashes = {"postgres_hash": f"{source.digest:016x}", "elasticsearch_hash": f"{target.digest:016x}"}
            passed = source == target
    return dg.AssetCheckResult(
        check_name=naming.CHECK_WINDOW_MATCHES,
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


def build_mapping_check(spec: SyncSpec) -> dg.AssetChecksDefinition:
    """`mapping_matches_spec`: the live index against the spec's mapping and the source's column
    types, on demand (the UI's "Execute") and before every load anyway (ops/prepare.py). Changes
    the next load makes in place warn; changes only a rebuild can make fail."""
    index_key = dg.AssetKey(naming.index_asset(spec.name))

    @dg.asset_check(
        asset=index_key,
        name=naming.CHECK_MAPPING_MATCHES,
        description="the index's mapping is the spec's (conflicts need `sync-pipeline rebuild`)",
        blocking=False,
    )
    def mapping_matches_spec(
        postgres: PostgresResource, elasticsearch: ElasticsearchResource
    ) -> dg.AssetCheckResult:
        bound = postgres.bound(spec)
        found = mapping_drift(elasticsearch.client(), bound)
        if found is None:
            return dg.AssetCheckResult(passed=True, metadata={"index": "not created yet"})
        index, diff = found
        sources = field_sources(bound)
        return dg.AssetCheckResult(
            passed=diff.same,
            severity=dg.AssetCheckSeverity.ERROR if diff.conflicts else dg.AssetCheckSeverity.WARN,
            metadata={
                "index": index,
                "conflicts": dg.MetadataValue.md(
                    "\n".join(f"- {c.describe(sources)}" for c in diff.conflicts)
                ),
                "in_place": dg.MetadataValue.md(
                    "\n".join(f"- {c.describe(sources)}" for c in diff.additions)
                ),
                "hint": f"sync-pipeline rebuild --spec {spec.name}" if diff.conflicts else "",
            },
        )

    return mapping_matches_spec
