"""Every name sync_pipeline gives a thing in Dagster, spelled once.

Asset keys, job, sensor and schedule names, run tags and the metadata keys a
run's totals are read back from. They are part of the user's run history (the
UI lines runs up by them), so changing one here is a breaking change; the
definitions snapshot test pins them.
"""

from __future__ import annotations

from collections.abc import Mapping

from sync_pipeline.core.load.counts import PER_BATCH

LOCATION_NAME = "sync_pipeline"
REPOSITORY_NAME = "__repository__"

# --- tags ---------------------------------------------------------------------------------------
SPEC_TAG = "sync_pipeline/spec"
LOAD_TAG = "sync_pipeline/load"  # the instance's queue runs one run per value at a time
# drains: two per spec at a time, so a following drain's successor starts before it ends
DRAIN_TAG = "sync_pipeline/drain"
TRIGGER_TAG = "sync_pipeline/trigger"
BUFFER_MAX_ID_TAG = "sync_pipeline/buffer_max_id"
# Dagster's own tags, read by the run summaries and alerts (dagster._core.storage.tags)
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"
MAX_RUNTIME_TAG = "dagster/max_runtime"  # read by Dagster's run monitoring

# --- how our connections show in pg_stat_activity -------------------------------------------------
EXTRACT_APPLICATION = "sync_pipeline:extract"

# --- metadata keys --------------------------------------------------------------------------------
ROW_COUNT = "dagster/row_count"
# a load's counters are keyed by their names: core/load/counts.COUNTERS
# a batch's metadata, and the columns of a run's batch table: its number, its counters, its speed
BATCH_FIELDS = ("batch", *PER_BATCH, "seconds", "docs_per_s")
# the observation holding every batch of a full sync's load as a table (defs/reporting.BatchProgress)
BATCH_TABLE = "batch_table"

# --- check names ----------------------------------------------------------------------------------
CHECK_NO_FAILED = "no_failed_documents"
CHECK_NO_DEAD_LETTERS = "no_dead_letters"
CHECK_WINDOW_MATCHES = "window_matches_source"
CHECK_MAPPING_MATCHES = "mapping_matches_spec"


def extract_asset(spec: str) -> str:
    return f"{spec}_extract"


def documents_asset(spec: str) -> str:
    return f"{spec}_documents"


def index_asset(spec: str) -> str:
    return f"{spec}_index"


def changes_asset(spec: str) -> str:
    return f"{spec}_changes"


def partitioned_assets(spec: str) -> tuple[str, str, str]:
    """extract → documents → index: the spec's partitioned assets, in order."""
    return extract_asset(spec), documents_asset(spec), index_asset(spec)


def sync_multi_asset(spec: str) -> str:
    return f"{spec}_extract_documents_index"


def sync_job(spec: str) -> str:
    return f"{spec}_sync"


def drain_job(spec: str) -> str:
    return f"{spec}_drain"


def rebuild_job(spec: str) -> str:
    return f"{spec}_rebuild"


def rebuild_op(spec: str) -> str:
    return f"{spec}_rebuild_index"


def buffer_sensor(spec: str) -> str:
    return f"{spec}_buffer_sensor"


def catchup_sensor(spec: str) -> str:
    return f"{spec}_catchup_sensor"


def window_schedule(spec: str) -> str:
    return f"{spec}_window_schedule"


def load_tag(spec: str, kind: str) -> str:
    """`<spec>:sync`, `<spec>:drain`, `<spec>:rebuild`: one run of each kind per spec at a time."""
    return f"{spec}:{kind}"


def is_load_asset(asset: str) -> bool:
    """The assets whose materializations carry a run's load totals."""
    return asset.endswith(("_index", "_changes"))


def is_extract_asset(asset: str) -> bool:
    return asset.endswith("_extract")


def partition_label(tags: Mapping[str, str]) -> str | None:
    """The run's partition (`2026-01-01`) or range (`2026-01-01…2026-02-01`) from its tags."""
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}…{end}"
    return start or end or None
