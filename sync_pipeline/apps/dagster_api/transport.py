"""The one way this package talks to the Dagster webserver: a GraphQL POST over urllib.

Every call (launching runs and backfills, reading runs, events, backfills and
partitions) goes through `post`, so there is one error path: a `DagsterApiError`
naming the webserver's URL without its password. `check_union` turns the error
members of a GraphQL result union (RunNotFoundError, RunConflict, PythonError,
…) into the same exceptions.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from sync_pipeline import settings
from sync_pipeline.core.report import redact

if TYPE_CHECKING:
    from sync_pipeline.core.spec.model import SyncSpec

NOT_FOUND_TYPES = frozenset(
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
# error members of result unions whose names do not end in "Error"
_ERROR_TYPES = frozenset({"RunConflict", "RunConfigValidationInvalid"})


class DagsterApiError(RuntimeError):
    """A request to the Dagster webserver failed; `url` is the webserver, password removed."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


class DagsterUnreachableError(DagsterApiError):
    """The webserver did not answer (refused, timed out, name not resolved)."""


class DagsterNotFoundError(DagsterApiError):
    """The webserver answered, but knows no such job, run, asset or backfill."""


def resolve_url(url: str | None = None) -> str:
    """The webserver URL: the argument, else $SYNC_DAGSTER_URL, else http://127.0.0.1:3000."""
    return url.rstrip("/") if url else settings.load().dagster_url


def redact_url(url: str) -> str:
    """The URL without password, query string or fragment: safe for messages and logs."""
    return redact.redact_url(url, keep_query=False)


def spec_name(spec: str | SyncSpec) -> str:
    """Every call takes a spec by name or as a SyncSpec; the webserver only knows names."""
    return spec if isinstance(spec, str) else spec.name


@dataclass(frozen=True)
class Endpoint:
    url: str  # as given, may hold credentials: never put into a message
    safe_url: str
    scheme: str
    hostname: str
    port: int | None
    path_prefix: str
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str | None) -> Endpoint:
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
        # rebuilt without the userinfo: urllib would otherwise treat it as part of the host
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{host}{port}{self.path_prefix}/graphql"

    @property
    def where(self) -> str:
        return f"Dagster webserver at {self.safe_url}"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + b64encode(pair).decode()
        return headers


def graphql(
    url: str | None, query: str, variables: Mapping[str, Any] | None = None, *, timeout: float = 30.0
):
    """POST one GraphQL document to the webserver and return its `data`.

    GraphQL-level errors (an invalid query, a server exception) raise
    DagsterApiError; a union result such as `RunNotFoundError` is returned as
    data for the caller to interpret.
    """
    return post(Endpoint.parse(url), query, variables, timeout)


def post(endpoint: Endpoint, query: str, variables: Mapping[str, Any] | None, timeout: float):
    """`graphql` for an already parsed endpoint."""
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(
        endpoint.graphql_url, data=body, headers=endpoint.headers(), method="POST"
    )
    where = endpoint.where
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


def check_union(endpoint: Endpoint, result: Mapping[str, Any] | None, what: str) -> Mapping[str, Any]:
    """Raise for the error members of a GraphQL result union; return any other member.

    Not found (an unknown job, run, asset, backfill) is a DagsterNotFoundError,
    every other error member a DagsterApiError quoting the first line of what
    Dagster said."""
    if result is None:
        raise DagsterApiError(f"{endpoint.where} returned nothing for {what}", endpoint.safe_url)
    typename = result.get("__typename", "")
    if typename in NOT_FOUND_TYPES:
        raise DagsterNotFoundError(
            f"{what}: not found on the {endpoint.where} ({result.get('message') or typename})",
            endpoint.safe_url,
        )
    if typename.endswith("Error") or typename in _ERROR_TYPES:
        detail = first_line(_error_detail(result))
        raise DagsterApiError(
            f"{what} failed on the {endpoint.where}: {typename}: {detail}"
            if detail
            else f"{what} failed on the {endpoint.where}: {typename}",
            endpoint.safe_url,
        )
    return result


def _error_detail(result: Mapping[str, Any]) -> str:
    """What an error member says: its message, else the fields the members without one carry."""
    if result.get("message"):
        return str(result["message"])
    errors = result.get("errors") or []  # RunConfigValidationInvalid
    if errors:
        return str(errors[0].get("message") or "")
    if result.get("invalidStepKey"):  # InvalidStepError
        return str(result["invalidStepKey"])
    if result.get("stepKey"):  # InvalidOutputError
        return f"step {result['stepKey']!r} has no output {result.get('invalidOutputName')!r}"
    return ""


def first_line(text: str) -> str:
    stripped = str(text).strip()
    return stripped.splitlines()[0] if stripped else ""
