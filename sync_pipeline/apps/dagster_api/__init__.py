"""Talk to a running Dagster webserver over GraphQL: launch syncs, drains and
backfills of a spec, and read back what each run did, batch by batch.

For web applications and scripts that run beside a deployed Dagster (`make ui`,
docker compose), not inside it: nothing here imports the code location, so the
caller needs no database or Elasticsearch access, only the webserver's URL
(`SYNC_DAGSTER_URL`, default http://127.0.0.1:3000).

Runs launched here are ordinary Dagster runs: the instance's run coordinator
decides when they start. Dagster's default instance queues them (the
QueuedRunCoordinator), so a `dagster-daemon` must be running, as `dagster dev`
does; backfills always need the daemon.

Every call goes over one transport (`transport.post`, urllib), so every failure
is a `DagsterApiError` naming the webserver's URL (without a password):
`DagsterUnreachableError` when it does not answer, `DagsterNotFoundError` for
an unknown job, run, asset or backfill.

    transport   endpoint, POST, error mapping, result unions
    launch      drains, full syncs, backfills; partition range checks
    reports     run status and summaries (per-batch counts from the event log)
    backfills   backfill status, partition status
"""

from sync_pipeline.apps.dagster_api.backfills import (
    FINISHED_BACKFILL_STATUSES,
    backfill_status,
    partition_status,
    wait_for_backfill,
)
from sync_pipeline.apps.dagster_api.launch import (
    IN_PROCESS,
    deployed_partition_keys,
    launch_backfill,
    launch_drain,
    launch_full_sync,
    partitioned_asset_keys,
)
from sync_pipeline.apps.dagster_api.reports import (
    COUNT_FIELDS,
    EVENTS_PAGE,
    FINISHED_RUN_STATUSES,
    recent_runs,
    run_report,
    run_status,
    wait_for_run,
)
from sync_pipeline.apps.dagster_api.transport import (
    DagsterApiError,
    DagsterNotFoundError,
    DagsterUnreachableError,
    graphql,
    redact_url,
    resolve_url,
)

# names this module has always offered; spelled once, in naming and settings
from sync_pipeline.core.naming import (
    BACKFILL_TAG,
    BATCH_FIELDS,
    LOCATION_NAME,
    RANGE_END_TAG,
    RANGE_START_TAG,
    REPOSITORY_NAME,
    SPEC_TAG,
)
from sync_pipeline.settings import DEFAULT_DAGSTER_URL

__all__ = [
    "BACKFILL_TAG",
    "BATCH_FIELDS",
    "COUNT_FIELDS",
    "DEFAULT_DAGSTER_URL",
    "EVENTS_PAGE",
    "FINISHED_BACKFILL_STATUSES",
    "FINISHED_RUN_STATUSES",
    "IN_PROCESS",
    "LOCATION_NAME",
    "RANGE_END_TAG",
    "RANGE_START_TAG",
    "REPOSITORY_NAME",
    "SPEC_TAG",
    "DagsterApiError",
    "DagsterNotFoundError",
    "DagsterUnreachableError",
    "backfill_status",
    "deployed_partition_keys",
    "graphql",
    "launch_backfill",
    "launch_drain",
    "launch_full_sync",
    "partition_status",
    "partitioned_asset_keys",
    "recent_runs",
    "redact_url",
    "resolve_url",
    "run_report",
    "run_status",
    "wait_for_backfill",
    "wait_for_run",
]
