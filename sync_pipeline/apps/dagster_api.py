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

Every failure is a `DagsterApiError` naming the webserver's URL (without a
password): `DagsterUnreachableError` when it does not answer,
`DagsterNotFoundError` for an unknown job, run, asset or backfill.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from sync_pipeline.core.specs import SyncSpec

DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
LOCATION_NAME = "sync_pipeline"
REPOSITORY_NAME = "__repository__"
SPEC_TAG = "sync_pipeline/spec"
# the tags Dagster itself reads to run a partition range as one run (dagster._core.storage.tags)
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"

# run config that asked the old default (multiprocess) executor to run every step in the run
# worker's process; the code location's executor is now in-process for every job
# (definitions.py), so this is the default and kept only for callers that pass it
IN_PROCESS: Mapping[str, Any] = {}

FINISHED_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
FINISHED_BACKFILL_STATUSES = frozenset(
    {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
)
BATCH_FIELDS = (
    "batch",
    "indexed",
    "deleted",
    "stale_skipped",
    "failed",
    "dead_lettered",
    "seconds",
    "docs_per_s",
)
COUNT_FIELDS = ("indexed", "deleted", "stale_skipped", "failed", "dead_lettered")
_NOT_FOUND_TYPES = frozenset(
    {
        "RunNotFoundError",
        "PipelineNotFoundError",
        "JobNotFoundError",
        "AssetNotFoundError",
        "BackfillNotFoundError",
        "RepositoryNotFoundError",
        "RepositoryLocationNotFound",
        "PartitionSetNotFoundError",
    }
)


class DagsterApiError(RuntimeError):
    """A request to the Dagster webserver failed; `url` is the webserver, password removed."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


class DagsterUnreachableError(DagsterApiError):
    """The webserver did not answer (refused, timed out, name not resolved)."""


class DagsterNotFoundError(DagsterApiError):
    """The webserver answered, but knows no such job, run, asset or backfill."""


# --- connection ----------------------------------------------------------------------------------


def resolve_url(url: str | None = None) -> str:
    """The webserver URL: the argument, else $SYNC_DAGSTER_URL, else http://127.0.0.1:3000."""
    return (url or os.environ.get("SYNC_DAGSTER_URL") or DEFAULT_DAGSTER_URL).rstrip("/")


def redact_url(url: str) -> str:
    """The URL without password, query string or fragment: safe for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        user = (
            f"{parts.username}:***@" if parts.password else (f"{parts.username}@" if parts.username else "")
        )
        return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, "", ""))
    except ValueError:
        return "<unparseable url>"


@dataclass(frozen=True)
class _Endpoint:
    url: str  # as given, may hold credentials: never put into a message
    safe_url: str
    scheme: str
    hostname: str
    port: int | None
    path_prefix: str
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str | None) -> _Endpoint:
        url = resolve_url(url)
        safe = redact_url(url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise DagsterApiError(f"invalid Dagster webserver URL {safe}", safe) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DagsterApiError(
                f"invalid Dagster webserver URL {safe}: expected http(s)://host[:port][/prefix]", safe
            )
        return cls(
            url=url,
            safe_url=safe,
            scheme=parts.scheme,
            hostname=parts.hostname,
            port=port,
            path_prefix=parts.path.rstrip("/"),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    @property
    def graphql_url(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{host}{port}{self.path_prefix}/graphql"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + b64encode(pair).decode()
        return headers

    def client(self, timeout: float):
        """dagster_graphql's client, for the calls it covers (launching runs, run status)."""
        from dagster_graphql import DagsterGraphQLClient
        from requests.auth import HTTPBasicAuth

        auth = HTTPBasicAuth(self.username, self.password or "") if self.username is not None else None
        return DagsterGraphQLClient(
            self.hostname,
            port_number=self.port,
            use_https=self.scheme == "https",
            timeout=max(1, math.ceil(timeout)),
            auth=auth,
            path_prefix=self.path_prefix,
        )


def graphql(
    url: str | None, query: str, variables: Mapping[str, Any] | None = None, *, timeout: float = 30.0
):
    """POST one GraphQL document to the webserver and return its `data`.

    GraphQL-level errors (an invalid query, a server exception) raise
    DagsterApiError; a union result such as `RunNotFoundError` is returned as
    data for the caller to interpret.
    """
    endpoint = _Endpoint.parse(url)
    return _post(endpoint, query, variables, timeout)


def _post(endpoint: _Endpoint, query: str, variables: Mapping[str, Any] | None, timeout: float):
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(
        endpoint.graphql_url, data=body, headers=endpoint.headers(), method="POST"
    )
    where = f"Dagster webserver at {endpoint.safe_url}"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        # the webserver answers GraphQL validation errors with 400 and server exceptions with 500,
        # both with a JSON body worth reading; anything else (a proxy's 502, a 401) is plain HTTP
        raw = exc.read()
        if not _is_graphql_body(raw):
            if exc.code in (502, 503, 504):
                raise DagsterUnreachableError(
                    f"{where} is unavailable (HTTP {exc.code})", endpoint.safe_url
                ) from None
            raise DagsterApiError(
                f"{where} answered HTTP {exc.code} {exc.reason}", endpoint.safe_url
            ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            detail = f"no answer within {timeout:g}s"
        else:
            detail = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        raise DagsterUnreachableError(f"cannot reach the {where}: {detail}", endpoint.safe_url) from None
    try:
        payload = json.loads(raw)
    except ValueError:
        raise DagsterApiError(
            f"{where} did not answer with JSON (is this Dagster?)", endpoint.safe_url
        ) from None
    if payload.get("errors"):
        messages = "; ".join(str(e.get("message", e)) for e in payload["errors"][:3])
        raise DagsterApiError(f"{where} rejected the GraphQL request: {messages}", endpoint.safe_url)
    data = payload.get("data")
    if data is None:
        raise DagsterApiError(f"{where} returned no data", endpoint.safe_url)
    return data


def _is_graphql_body(raw: bytes) -> bool:
    try:
        payload = json.loads(raw)
    except ValueError:
        return False
    return isinstance(payload, dict) and ("data" in payload or "errors" in payload)


def _check_union(endpoint: _Endpoint, result: Mapping[str, Any] | None, what: str) -> Mapping[str, Any]:
    """Raise for the error members of a GraphQL result union."""
    if result is None:
        raise DagsterApiError(
            f"Dagster webserver at {endpoint.safe_url} returned nothing for {what}", endpoint.safe_url
        )
    typename = result.get("__typename", "")
    if typename in _NOT_FOUND_TYPES:
        raise DagsterNotFoundError(
            f"{what}: not found on the Dagster webserver at {endpoint.safe_url} "
            f"({result.get('message', typename)})",
            endpoint.safe_url,
        )
    if typename.endswith("Error") or typename in ("RunConflict", "RunConfigValidationInvalid"):
        message = result.get("message") or typename
        raise DagsterApiError(
            f"{what} failed on the Dagster webserver at {endpoint.safe_url}: "
            f"{typename}: {_first_line(message)}",
            endpoint.safe_url,
        )
    return result


def _first_line(text: str) -> str:
    stripped = str(text).strip()
    return stripped.splitlines()[0] if stripped else ""


def _client_call(endpoint: _Endpoint, what: str, call):
    """Run a dagster_graphql client call, turning its errors into DagsterApiError."""
    from dagster_graphql import DagsterGraphQLClientError

    try:
        return call()
    except DagsterGraphQLClientError as exc:
        if _is_connection_failure(exc):
            raise DagsterUnreachableError(
                f"cannot reach the Dagster webserver at {endpoint.safe_url}", endpoint.safe_url
            ) from None
        kind = str(exc.args[0]) if exc.args else ""
        detail = _first_line(exc.args[1]) if len(exc.args) > 1 and isinstance(exc.args[1], str) else ""
        if kind in _NOT_FOUND_TYPES:
            raise DagsterNotFoundError(
                f"{what}: not found on the Dagster webserver at {endpoint.safe_url} ({detail or kind})",
                endpoint.safe_url,
            ) from None
        if len(exc.args) > 1:
            message = f"{kind}: {detail}" if detail else kind
        else:
            # the client's generic wrapper quotes the whole query; the cause says what happened
            cause = exc.__cause__
            message = f"{type(cause).__name__}: {_first_line(cause)}" if cause else "request failed"
        raise DagsterApiError(
            f"{what} failed on the Dagster webserver at {endpoint.safe_url}: {message}", endpoint.safe_url
        ) from None


def _is_connection_failure(exc: BaseException) -> bool:
    import requests
    from gql.transport.exceptions import TransportConnectionFailed

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current, requests.ConnectionError | requests.Timeout | TransportConnectionFailed | OSError
        ):
            return True
        if isinstance(current, Exception) and "Error when connecting to url" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


# --- launching -----------------------------------------------------------------------------------


def _spec_name(spec: str | SyncSpec) -> str:
    return spec if isinstance(spec, str) else spec.name


def partitioned_asset_keys(spec: str | SyncSpec) -> list[str]:
    name = _spec_name(spec)
    return [f"{name}_extract", f"{name}_documents", f"{name}_index"]


def deployed_partition_keys(url: str | None, spec: str | SyncSpec, *, timeout: float = 30.0) -> list[str]:
    """The partition keys of the spec's assets as the running code location defines them."""
    endpoint = _Endpoint.parse(url)
    name = _spec_name(spec)
    data = _post(
        endpoint,
        """query SyncPartitionKeys($key: AssetKeyInput!) {
          assetNodeOrError(assetKey: $key) {
            __typename
            ... on AssetNode { partitionKeys }
            ... on Error { message }
          }
        }""",
        {"key": {"path": [f"{name}_index"]}},
        timeout,
    )
    node = _check_union(endpoint, data["assetNodeOrError"], f"spec '{name}' (asset {name}_index)")
    return list(node.get("partitionKeys") or [])


def _checked_range(
    endpoint: _Endpoint, spec: str | SyncSpec, first: str, last: str, timeout: float
) -> tuple[str, str]:
    """Both keys must be partitions of the deployed spec, first ≤ last: Dagster accepts a range
    of unknown keys and only fails once the run or backfill executes."""
    name = _spec_name(spec)
    keys = deployed_partition_keys(endpoint.url, name, timeout=timeout)
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
    endpoint = _Endpoint.parse(url)
    job = f"{_spec_name(spec)}_drain"
    return _submit(endpoint, job, dict(tags or {}), run_config, timeout)


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
    (`sync_pipeline.cli.partition_keys_for`) when a SyncSpec is given, else as
    the running code location defines them. The range is checked against the
    deployed partitions before anything is launched (ValueError otherwise).
    """
    endpoint = _Endpoint.parse(url)
    name = _spec_name(spec)
    if partition_keys is None and isinstance(spec, str):
        keys = deployed_partition_keys(endpoint.url, name, timeout=timeout)
        if not keys:
            raise ValueError(f"spec '{name}' has no partitions yet")
        first, last = keys[0], keys[-1]
    else:
        if partition_keys is None:
            from sync_pipeline.defs.partitions import partition_keys_for

            partition_keys = partition_keys_for(spec, None, None)
        keys = list(partition_keys)
        if not keys:
            raise ValueError(f"no partitions given for spec '{name}'")
        first, last = _checked_range(endpoint, name, keys[0], keys[-1], timeout)
    run_tags = {**dict(tags or {}), RANGE_START_TAG: first, RANGE_END_TAG: last}
    return _submit(endpoint, f"{name}_sync", run_tags, run_config, timeout)


def _submit(
    endpoint: _Endpoint,
    job: str,
    tags: dict[str, str],
    run_config: Mapping[str, Any] | None,
    timeout: float,
) -> str:
    client = endpoint.client(timeout)
    return _client_call(
        endpoint,
        f"job '{job}'",
        lambda: client.submit_job_execution(
            job,
            repository_location_name=LOCATION_NAME,
            repository_name=REPOSITORY_NAME,
            run_config=dict(run_config or {}),
            tags=tags or None,
        ),
    )


_LAUNCH_BACKFILL = """
mutation SyncLaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""


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
    endpoint = _Endpoint.parse(url)
    name = _spec_name(spec)
    start_key, end_key = _checked_range(endpoint, name, start_key, end_key, timeout)
    partition_range = {"range": {"start": start_key, "end": end_key}}
    backfill_tags = {SPEC_TAG: name, **dict(tags or {})}
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": [key]}, "partitions": partition_range}
            for key in partitioned_asset_keys(name)
        ],
        "tags": [{"key": k, "value": v} for k, v in backfill_tags.items()],
        "title": title or f"{name} {start_key} … {end_key}",
    }
    if run_config:
        params["runConfigData"] = dict(run_config)
    data = _post(endpoint, _LAUNCH_BACKFILL, {"params": params}, timeout)
    result = _check_union(endpoint, data["launchPartitionBackfill"], f"backfill of spec '{name}'")
    return result["backfillId"]


# --- reading runs --------------------------------------------------------------------------------

_RUN_FIELDS = """
  runId jobName status creationTime startTime endTime
  tags { key value }
"""

_RUN_QUERY = f"""
query SyncRun($runId: ID!) {{
  runOrError(runId: $runId) {{
    __typename
    ... on Run {{ {_RUN_FIELDS} }}
    ... on Error {{ message }}
  }}
}}
"""

_RUNS_QUERY = f"""
query SyncRuns($filter: RunsFilter, $limit: Int) {{
  runsOrError(filter: $filter, limit: $limit) {{
    __typename
    ... on Runs {{ results {{ {_RUN_FIELDS} }} }}
    ... on Error {{ message }}
  }}
}}
"""

_METADATA = """
  metadataEntries {
    __typename label
    ... on IntMetadataEntry { intRepr }
    ... on FloatMetadataEntry { floatValue }
  }
"""

_EVENTS_QUERY = f"""
query SyncRunEvents($runId: ID!, $cursor: String, $limit: Int) {{
  logsForRun(runId: $runId, afterCursor: $cursor, limit: $limit) {{
    __typename
    ... on EventConnection {{
      cursor hasMore
      events {{
        __typename
        ... on ObservationEvent {{ assetKey {{ path }} partition {_METADATA} }}
        ... on MaterializationEvent {{ assetKey {{ path }} partition {_METADATA} }}
        ... on ExecutionStepFailureEvent {{ stepKey error {{ message className causes {{ message }} }} }}
        ... on RunFailureEvent {{ message error {{ message className causes {{ message }} }} }}
      }}
    }}
    ... on Error {{ message }}
  }}
}}
"""

EVENTS_PAGE = 1000


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat().replace("+00:00", "Z")


def _numeric_metadata(entries: Sequence[Mapping[str, Any]]) -> dict[str, int | float]:
    values: dict[str, int | float] = {}
    for entry in entries:
        if entry["__typename"] == "IntMetadataEntry" and entry.get("intRepr") is not None:
            values[entry["label"]] = int(entry["intRepr"])
        elif entry["__typename"] == "FloatMetadataEntry" and entry.get("floatValue") is not None:
            values[entry["label"]] = float(entry["floatValue"])
    return values


def _run_events(endpoint: _Endpoint, run_id: str, timeout: float) -> list[Mapping[str, Any]]:
    events: list[Mapping[str, Any]] = []
    cursor = None
    while True:
        data = _post(
            endpoint, _EVENTS_QUERY, {"runId": run_id, "cursor": cursor, "limit": EVENTS_PAGE}, timeout
        )
        page = _check_union(endpoint, data["logsForRun"], f"run {run_id}")
        events.extend(page["events"])
        if not page.get("hasMore") or not page["events"] or page.get("cursor") in (None, cursor):
            return events
        cursor = page["cursor"]


def _error_line(event: Mapping[str, Any]) -> str:
    """The first line of what went wrong, without Dagster's step-execution wrapper."""
    error = event.get("error") or {}
    message = error.get("message") or ""
    causes = error.get("causes") or []
    if error.get("className") == "DagsterExecutionStepExecutionError" and causes:
        message = causes[0].get("message") or message
    return _first_line(message or event.get("message") or "")


def _partition_range(tags: Mapping[str, str]) -> dict[str, str] | None:
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        return {"start": tags[RANGE_START_TAG], "end": tags[RANGE_END_TAG]}
    if "dagster/partition" in tags:
        return {"start": tags["dagster/partition"], "end": tags["dagster/partition"]}
    return None


def _summarise(run: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    tags = {t["key"]: t["value"] for t in run.get("tags") or []}
    batches: list[dict[str, Any]] = []
    materialized: dict[str, dict[str, int | float]] = {}
    errors: list[str] = []
    run_errors: list[str] = []
    for event in events:
        kind = event["__typename"]
        if kind in ("ObservationEvent", "MaterializationEvent"):
            asset = "/".join(event["assetKey"]["path"])
            meta = _numeric_metadata(event.get("metadataEntries") or [])
            if kind == "ObservationEvent":
                if asset.endswith(("_index", "_changes")) and "batch" in meta:
                    batches.append({"asset": asset, **{f: meta[f] for f in BATCH_FIELDS if f in meta}})
            else:
                # a range run reports the same totals once per partition: keep one per asset
                materialized.setdefault(asset, meta)
        elif kind == "ExecutionStepFailureEvent":
            errors.append(f"{event.get('stepKey')}: {_error_line(event)}")
        elif kind == "RunFailureEvent":
            run_errors.append(_error_line(event))
    if not errors:  # the run failed without a failed step (it could not start, it was killed, …)
        errors = [line for line in run_errors if line]

    totals: dict[str, Any] = {field: sum(int(b.get(field, 0)) for b in batches) for field in COUNT_FIELDS}
    totals["batches"] = len(batches)
    totals["seconds"] = round(sum(float(b.get("seconds", 0.0)) for b in batches), 3)
    docs = sum(totals[f] for f in COUNT_FIELDS)
    totals["docs_per_s"] = round(docs / totals["seconds"], 1) if totals["seconds"] else 0.0
    extracts = [m for a, m in materialized.items() if a.endswith("_extract")]
    changes = [m for a, m in materialized.items() if a.endswith("_changes")]
    totals["extracted"] = sum(int(m.get("dagster/row_count", 0)) for m in extracts) if extracts else None
    totals["claimed"] = sum(int(m.get("claimed", 0)) for m in changes) if changes else None

    started, ended = run.get("startTime"), run.get("endTime")
    return {
        "run_id": run["runId"],
        "job_name": run["jobName"],
        "status": run["status"],
        "spec": tags.get(SPEC_TAG),
        "backfill_id": tags.get(BACKFILL_TAG),
        "partition_range": _partition_range(tags),
        "creation_time": _iso(run.get("creationTime")),
        "start_time": _iso(started),
        "end_time": _iso(ended),
        "duration_s": round(ended - started, 3) if started is not None and ended is not None else None,
        "tags": tags,
        "batches": batches,
        "totals": totals,
        "errors": errors,
    }


def run_report(url: str | None, run_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """What a run did: status, job, tags, start/end time, one entry per bulk batch of its
    `_index`/`_changes` asset, and totals (plus `extracted` rows for a sync, `claimed`
    buffer entries for a drain). Raises DagsterNotFoundError for an unknown run id."""
    endpoint = _Endpoint.parse(url)
    data = _post(endpoint, _RUN_QUERY, {"runId": run_id}, timeout)
    run = _check_union(endpoint, data["runOrError"], f"run {run_id}")
    return _summarise(run, _run_events(endpoint, run_id, timeout))


def recent_runs(
    url: str | None,
    spec: str | SyncSpec | None = None,
    limit: int = 20,
    *,
    with_batches: bool = False,
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """The newest runs (of one spec when given: runs tagged sync_pipeline/spec), newest
    first, each summarised like run_report (without its batch list unless asked)."""
    endpoint = _Endpoint.parse(url)
    run_filter = {"tags": [{"key": SPEC_TAG, "value": _spec_name(spec)}]} if spec is not None else {}
    data = _post(endpoint, _RUNS_QUERY, {"filter": run_filter, "limit": int(limit)}, timeout)
    runs = _check_union(endpoint, data["runsOrError"], "the run list")["results"]
    reports = []
    for run in runs:
        report = _summarise(run, _run_events(endpoint, run["runId"], timeout))
        if not with_batches:
            report.pop("batches")
        reports.append(report)
    return reports


def run_status(url: str | None, run_id: str, *, timeout: float = 30.0) -> str:
    """The run's status name (QUEUED, STARTING, STARTED, SUCCESS, FAILURE, CANCELED, …)."""
    endpoint = _Endpoint.parse(url)
    client = endpoint.client(timeout)
    return _client_call(endpoint, f"run {run_id}", lambda: client.get_run_status(run_id)).value


def wait_for_run(url: str | None, run_id: str, *, timeout: float = 600.0, poll_seconds: float = 1.0) -> str:
    """Poll until the run finished; returns SUCCESS, FAILURE or CANCELED.
    Raises DagsterApiError when it has not finished within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        status = run_status(url, run_id)
        if status in FINISHED_RUN_STATUSES:
            return status
        if time.monotonic() >= deadline:
            safe = redact_url(resolve_url(url))
            raise DagsterApiError(f"run {run_id} still {status} after {timeout:g}s ({safe})", safe)
        time.sleep(poll_seconds)


# --- backfills and partitions --------------------------------------------------------------------

_BACKFILL_QUERY = """
query SyncBackfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status title numPartitions partitionNames
      tags { key value }
      error { message }
      runs(limit: 1000) { runId status tags { key value } }
    }
    ... on Error { message }
  }
}
"""


def backfill_status(url: str | None, backfill_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """A backfill's status (REQUESTED, COMPLETED_SUCCESS, COMPLETED_FAILED, FAILED, CANCELED,
    …), its partitions and the runs it launched."""
    endpoint = _Endpoint.parse(url)
    data = _post(endpoint, _BACKFILL_QUERY, {"id": backfill_id}, timeout)
    backfill = _check_union(endpoint, data["partitionBackfillOrError"], f"backfill {backfill_id}")
    return {
        "backfill_id": backfill["id"],
        "status": backfill["status"],
        "title": backfill.get("title"),
        "partitions": list(backfill.get("partitionNames") or []),
        "num_partitions": backfill.get("numPartitions"),
        "tags": {t["key"]: t["value"] for t in backfill.get("tags") or []},
        "error": _first_line((backfill.get("error") or {}).get("message") or "") or None,
        "runs": [
            {"run_id": r["runId"], "status": r["status"], "tags": {t["key"]: t["value"] for t in r["tags"]}}
            for r in backfill.get("runs") or []
        ],
    }


def wait_for_backfill(
    url: str | None, backfill_id: str, *, timeout: float = 600.0, poll_seconds: float = 2.0
) -> dict[str, Any]:
    """Poll until the backfill finished (see FINISHED_BACKFILL_STATUSES); returns backfill_status.
    Raises DagsterApiError when it has not finished within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        status = backfill_status(url, backfill_id)
        if status["status"] in FINISHED_BACKFILL_STATUSES:
            return status
        if time.monotonic() >= deadline:
            safe = redact_url(resolve_url(url))
            raise DagsterApiError(
                f"backfill {backfill_id} still {status['status']} after {timeout:g}s "
                "(is a dagster-daemon running on the same instance?)",
                safe,
            )
        time.sleep(poll_seconds)


_PARTITION_STATUS_QUERY = """
query SyncPartitionStatus($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      partitionKeys
      assetPartitionStatuses {
        __typename
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
        ... on DefaultPartitionStatuses {
          materializedPartitions failedPartitions materializingPartitions
        }
      }
    }
    ... on Error { message }
  }
}
"""


def partition_status(
    url: str | None, spec: str | SyncSpec, *, timeout: float = 30.0
) -> dict[str, dict[str, list]]:
    """Per partitioned asset of the spec: its partition keys by state,
    {"materialized": [...], "failed": [...], "materializing": [...], "missing": [...]}."""
    endpoint = _Endpoint.parse(url)
    result: dict[str, dict[str, list]] = {}
    for asset in partitioned_asset_keys(spec):
        data = _post(endpoint, _PARTITION_STATUS_QUERY, {"key": {"path": [asset]}}, timeout)
        node = _check_union(endpoint, data["assetNodeOrError"], f"asset {asset}")
        keys = list(node.get("partitionKeys") or [])
        position = {key: i for i, key in enumerate(keys)}
        states: dict[str, set[str]] = {"materialized": set(), "failed": set(), "materializing": set()}
        statuses = node.get("assetPartitionStatuses") or {}
        for span in statuses.get("ranges") or []:
            state = span["status"].lower()
            lo, hi = position.get(span["startKey"]), position.get(span["endKey"])
            if state in states and lo is not None and hi is not None:
                states[state].update(keys[lo : hi + 1])
        for state in states:
            states[state].update(statuses.get(f"{state}Partitions") or [])
        done = set().union(*states.values())
        result[asset] = {
            **{state: [k for k in keys if k in members] for state, members in states.items()},
            "missing": [k for k in keys if k not in done],
        }
    return result
