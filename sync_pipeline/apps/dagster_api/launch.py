"""Launch a spec's runs and backfills on the webserver: drains, full syncs over a
partition range, and asset backfills.

Runs are launched with the `launchRun` mutation (the job-era name of the
`launchPipelineExecution` that dagster_graphql's client sends), over this
package's own transport, so a launch fails the way every other call does.
Partition ranges are checked against the deployed code location first: Dagster
accepts a range of unknown keys and only fails once the run executes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sync_pipeline.apps.dagster_api.transport import Endpoint, check_union, post, spec_name
from sync_pipeline.core.naming import (
    LOCATION_NAME,
    RANGE_END_TAG,
    RANGE_START_TAG,
    REPOSITORY_NAME,
    SPEC_TAG,
    drain_job,
    index_asset,
    partitioned_assets,
    sync_job,
)

if TYPE_CHECKING:
    from sync_pipeline.core.spec.model import SyncSpec

# run config that asked the old default (multiprocess) executor to run every step in the run
# worker's process; the code location's executor is now in-process for every job
# (definitions.py), so this is the default and kept only for callers that pass it
IN_PROCESS: Mapping[str, Any] = {}

_PARTITION_KEYS_QUERY = """
query SyncPartitionKeys($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode { partitionKeys }
    ... on Error { message }
  }
}
"""

# LaunchRunResult: LaunchRunSuccess or one of Dagster's execution errors; the members without
# a `message` (InvalidStepError, InvalidOutputError, RunConfigValidationInvalid) say what they
# carry instead, for check_union
_LAUNCH_RUN = """
mutation SyncLaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""

_LAUNCH_BACKFILL = """
mutation SyncLaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""


def partitioned_asset_keys(spec: str | SyncSpec) -> list[str]:
    """extract → documents → index: the spec's partitioned assets, in order."""
    return list(partitioned_assets(spec_name(spec)))


def deployed_partition_keys(url: str | None, spec: str | SyncSpec, *, timeout: float = 30.0) -> list[str]:
    """The partition keys of the spec's assets as the running code location defines them."""
    return _deployed_keys(Endpoint.parse(url), spec_name(spec), timeout)


def _deployed_keys(endpoint: Endpoint, name: str, timeout: float) -> list[str]:
    asset = index_asset(name)
    data = post(endpoint, _PARTITION_KEYS_QUERY, {"key": {"path": [asset]}}, timeout)
    node = check_union(endpoint, data["assetNodeOrError"], f"spec '{name}' (asset {asset})")
    return list(node.get("partitionKeys") or [])


def _checked_range(endpoint: Endpoint, name: str, first: str, last: str, timeout: float) -> tuple[str, str]:
    """Both keys must be partitions of the deployed spec, first ≤ last: Dagster accepts a range
    of unknown keys and only fails once the run or backfill executes."""
    keys = _deployed_keys(endpoint, name, timeout)
    index = {key: i for i, key in enumerate(keys)}
    for key in (first, last):
        if key not in index:
            window = f"{keys[0]} … {keys[-1]}" if keys else "none"
            raise ValueError(f"'{key}' is not a partition of spec '{name}' (partitions: {window})")
    if index[first] > index[last]:
        raise ValueError(f"partition range of spec '{name}' is reversed: {first} after {last}")
    return first, last


def launch_drain(
    url: str | None,
    spec: str | SyncSpec,
    *,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
) -> str:
    """Launch `<spec>_drain` (apply the change buffer); returns the run id."""
    endpoint = Endpoint.parse(url)
    return _launch_run(endpoint, drain_job(spec_name(spec)), dict(tags or {}), run_config, timeout)


def launch_full_sync(
    url: str | None,
    spec: str | SyncSpec,
    partition_keys: Sequence[str] | None = None,
    *,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
) -> str:
    """Launch `<spec>_sync` over partition_keys[0] … partition_keys[-1] as ONE run; returns its id.

    `run_config` is the run's Dagster config (the steps already run in the run's own process).

    Without partition_keys: every partition — from the spec's partitions
    (`sync_pipeline.defs.partitions.partition_keys_for`) when a SyncSpec is
    given, else as the running code location defines them. The range is
    checked against the deployed partitions before anything is launched
    (ValueError otherwise).
    """
    endpoint = Endpoint.parse(url)
    name = spec_name(spec)
    if partition_keys is None and isinstance(spec, str):
        keys = _deployed_keys(endpoint, name, timeout)
        if not keys:
            raise ValueError(f"spec '{name}' has no partitions yet")
        first, last = keys[0], keys[-1]
    else:
        if partition_keys is None:
            # Dagster's partition definitions, loaded only here: a web worker importing this
            # package for its routes pays for Dagster only if it launches without keys
            from sync_pipeline.defs.partitions import partition_keys_for

            partition_keys = partition_keys_for(spec, None, None)
        keys = list(partition_keys)
        if not keys:
            raise ValueError(f"no partitions given for spec '{name}'")
        first, last = _checked_range(endpoint, name, keys[0], keys[-1], timeout)
    # the range tags make Dagster run the whole range as one run of the partitioned job
    run_tags = {**dict(tags or {}), RANGE_START_TAG: first, RANGE_END_TAG: last}
    return _launch_run(endpoint, sync_job(name), run_tags, run_config, timeout)


def _launch_run(
    endpoint: Endpoint,
    job: str,
    tags: Mapping[str, Any],
    run_config: Mapping[str, Any] | None,
    timeout: float,
) -> str:
    """`launchRun` of the job in our code location; returns the run id."""
    metadata = {"tags": [{"key": k, "value": _tag_value(v)} for k, v in tags.items()]} if tags else {}
    params = {
        "selector": {
            "repositoryLocationName": LOCATION_NAME,
            "repositoryName": REPOSITORY_NAME,
            "jobName": job,
        },
        "runConfigData": dict(run_config or {}),
        "executionMetadata": metadata,
    }
    data = post(endpoint, _LAUNCH_RUN, {"executionParams": params}, timeout)
    result = check_union(endpoint, data["launchRun"], f"job '{job}'")
    return result["run"]["runId"]


def _tag_value(value: Any) -> str:
    # Dagster's own client JSON-encodes a value that is not a string (normalize_tags): so do we
    return value if isinstance(value, str) else json.dumps(value)


def launch_backfill(
    url: str | None,
    spec: str | SyncSpec,
    start_key: str,
    end_key: str,
    *,
    title: str | None = None,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
) -> str:
    """Backfill the spec's extract → documents → index over [start_key, end_key]; returns the
    backfill id (the UI's Backfills page lists it).

    An asset backfill: the daemon plans it and, the assets having
    BackfillPolicy.single_run, submits one run for the whole range rather than
    one per partition. Needs a running dagster-daemon.
    """
    endpoint = Endpoint.parse(url)
    name = spec_name(spec)
    start_key, end_key = _checked_range(endpoint, name, start_key, end_key, timeout)
    partition_range = {"range": {"start": start_key, "end": end_key}}
    backfill_tags = {SPEC_TAG: name, **dict(tags or {})}
    params: dict[str, Any] = {
        "partitionsByAssets": [
            {"assetKey": {"path": [key]}, "partitions": partition_range}
            for key in partitioned_asset_keys(name)
        ],
        "tags": [{"key": k, "value": v} for k, v in backfill_tags.items()],
        "title": title or f"{name} {start_key} … {end_key}",
    }
    if run_config:
        params["runConfigData"] = dict(run_config)
    data = post(endpoint, _LAUNCH_BACKFILL, {"params": params}, timeout)
    result = check_union(endpoint, data["launchPartitionBackfill"], f"backfill of spec '{name}'")
    return result["backfillId"]
