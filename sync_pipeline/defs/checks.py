"""Asset checks of the index asset: every document acknowledged, none refused, the window
matching its source."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from sync_pipeline.core import naming
from sync_pipeline.core.specs import SyncSpec
from sync_pipeline.defs.partitions import partitions_for, window_for
from sync_pipeline.defs.resources import ElasticsearchResource, PostgresResource
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
