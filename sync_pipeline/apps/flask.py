"""A Flask extension (and its blueprint) that lets a web application trigger and watch syncs.

    from flask import Flask
    from sync_pipeline.apps.flask import SyncPipeline

    app = Flask(__name__)
    app.config["SYNC_PIPELINE_API_TOKEN"] = "..."     # else $SYNC_API_TOKEN
    SyncPipeline(app)                                  # or: sync = SyncPipeline(); sync.init_app(app)

`create_sync_blueprint()` is the same blueprint for an application that wires it itself.
Importing this module is light: no Dagster, pyarrow or ADBC, no allocator tuning (the one
route that needs Dagster's partition definitions imports them when it is called).

Routes (all under /sync, all answering JSON, all requiring `Authorization: Bearer <token>`):

    POST /sync/<spec>/flush    launch <spec>_drain (apply the change buffer)     → 202 {"run_id": …}
    POST /sync/<spec>/full     launch <spec>_sync over every partition, one run → 202 {"run_id": …}
    GET  /sync/runs/<run_id>   status, per-batch counts and totals of a run     → 200
    GET  /sync/runs            recent runs (?spec=NAME&limit=N), with totals    → 200
    GET  /sync/metrics         Prometheus text (only with metrics=True)          → 200
    GET  /sync/healthz         doctor's findings per spec (only with metrics=True) → 200 / 503

The runs execute in the Dagster deployment at `dagster_url` (default
$SYNC_DAGSTER_URL, else http://127.0.0.1:3000), not in the web process; the
blueprint only talks to its webserver (sync_pipeline.apps.dagster_api). Unknown spec
or run → 404, Dagster unreachable → 503, other Dagster errors → 502. /metrics and /healthz
(docs/operating.md) read SYNC_PG_URL and SYNC_ES_URL, the exporter's way (apps/metrics.py), from
their first call on.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

# absolute imports: `flask` here is the Flask package, not this module
from flask import Blueprint, Flask, Response, current_app, jsonify, request, url_for
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from sync_pipeline import settings
from sync_pipeline.apps import dagster_api
from sync_pipeline.core.naming import drain_job, sync_job
from sync_pipeline.core.spec.model import SyncSpec

TOKEN_ENV = settings.API_TOKEN
MAX_RUNS_LIMIT = 100


class SyncBlueprintConfigError(ValueError):
    """The blueprint cannot be created as configured (no token, unreadable spec file)."""


def _error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), status


def create_sync_blueprint(
    *,
    dagster_url: str | None = None,
    token: str | None = None,
    specs_path: str | Path | None = None,
    name: str = "sync",
    url_prefix: str = "/sync",
    timeout: float = 30.0,
    metrics: bool = False,
    backlog_seconds: float = 15 * 60,
) -> Blueprint:
    """The /sync blueprint. `token` (else $SYNC_API_TOKEN) is required: without one the
    blueprint is not created (SyncBlueprintConfigError), so the routes are never open.
    `specs_path` is the sync spec file (default: $SYNC_CONFIG, ./sync.yaml, the checkout's)
    that names the specs and their partitions; it is read once, here."""
    # the environment is read only for what the caller did not pass, so that a bad SYNC_*
    # value cannot stop a blueprint that needs none of them
    try:
        env = settings.load() if token is None or not specs_path or not dagster_url else settings.Settings()
    except settings.SettingsError as exc:
        raise SyncBlueprintConfigError(str(exc)) from None
    secret = token if token is not None else env.api_token
    if not secret or not secret.strip():
        raise SyncBlueprintConfigError(
            f"no API token for the sync blueprint: pass token=... or set {TOKEN_ENV} "
            "(the routes launch Dagster runs and are never served without authentication)"
        )
    expected = secret.strip().encode()

    from sync_pipeline.io.models import load_specs  # imports the user's models, when the spec names them

    try:
        specs: dict[str, SyncSpec] = {
            s.name: s for s in load_specs(Path(specs_path) if specs_path else env.config_path)
        }
    except ValueError as exc:  # SpecError: names the file and the problem
        raise SyncBlueprintConfigError(str(exc)) from None
    url = dagster_api.resolve_url(dagster_url or env.dagster_url)
    safe_url = dagster_api.redact_url(url)
    bp = Blueprint(name, __name__, url_prefix=url_prefix)

    @bp.before_request
    def require_token() -> tuple[Response, int] | None:
        scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
        # constant-time, over bytes (compare_digest refuses non-ASCII str instead of answering);
        # WSGI hands header values over as latin-1, so that gives back the bytes that were sent
        if not (scheme.lower() == "bearer" and hmac.compare_digest(_header_bytes(given.strip()), expected)):
            response, status = _error(401, "missing or invalid bearer token")
            response.headers["WWW-Authenticate"] = f'Bearer realm="{name}"'
            return response, status
        return None

    def spec_or_404(spec_name: str) -> SyncSpec:
        spec = specs.get(spec_name)
        if spec is None:
            raise _JsonError(404, f"unknown spec '{spec_name}'", known_specs=sorted(specs))
        return spec

    def accepted(run_id: str, spec: SyncSpec, job: str, **extra: Any) -> tuple[Response, int]:
        status_url = url_for(".run", run_id=run_id)
        response = jsonify(
            {"run_id": run_id, "spec": spec.name, "job": job, "status_url": status_url, **extra}
        )
        response.headers["Location"] = status_url
        return response, 202

    @bp.post("/<spec_name>/flush")
    def flush(spec_name: str):
        spec = spec_or_404(spec_name)
        run_id = dagster_api.launch_drain(url, spec, timeout=timeout)
        return accepted(run_id, spec, drain_job(spec.name))

    @bp.post("/<spec_name>/full")
    def full(spec_name: str):
        spec = spec_or_404(spec_name)
        # Dagster's partition definitions: loaded by the first full sync, not by the import
        from sync_pipeline.defs.partitions import partition_keys_for

        keys = partition_keys_for(spec, None, None)
        try:
            run_id = dagster_api.launch_full_sync(url, spec, keys, timeout=timeout)
        except ValueError as exc:  # the deployed code location has other partitions: stale spec file?
            return _error(409, str(exc))
        partitions = {"start": keys[0], "end": keys[-1], "count": len(keys)}
        return accepted(run_id, spec, sync_job(spec.name), partitions=partitions)

    @bp.get("/runs/<run_id>")
    def run(run_id: str):
        return jsonify(dagster_api.run_report(url, run_id, timeout=timeout))

    @bp.get("/runs")
    def runs():
        spec_name = request.args.get("spec")
        if spec_name is not None:
            spec_or_404(spec_name)
        try:
            limit = int(request.args.get("limit", "20"))
        except ValueError:
            return _error(400, "limit must be an integer")
        if not 1 <= limit <= MAX_RUNS_LIMIT:
            return _error(400, f"limit must be between 1 and {MAX_RUNS_LIMIT}")
        return jsonify({"runs": dagster_api.recent_runs(url, spec_name, limit, timeout=timeout)})

    if metrics:
        _metrics_routes(bp, list(specs.values()), backlog_seconds)

    @bp.errorhandler(_JsonError)
    def json_error(exc: _JsonError):
        return _error(exc.status, exc.message, **exc.extra)

    @bp.errorhandler(dagster_api.DagsterApiError)
    def dagster_error(exc: dagster_api.DagsterApiError):
        if isinstance(exc, dagster_api.DagsterUnreachableError):
            return _error(503, str(exc), dagster_url=safe_url)
        if isinstance(exc, dagster_api.DagsterNotFoundError):
            return _error(404, str(exc))
        return _error(502, str(exc), dagster_url=safe_url)

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _http_error_json(exc)

    @bp.errorhandler(Exception)
    def unexpected(exc: Exception):
        current_app.logger.exception("sync blueprint: unexpected error")
        return _error(500, "internal error (see the application log)")

    # An unknown path or a wrong method under the prefix fails in routing, before any
    # blueprint is chosen, so blueprint error handlers never see it: answer those in JSON
    # with an app-level handler that leaves every other path to the app's own handling.
    @bp.record_once
    def json_routing_errors(state) -> None:
        prefix = (state.url_prefix or url_prefix).rstrip("/")
        for error_class in (NotFound, MethodNotAllowed):
            previous = state.app.error_handler_spec[None][error_class.code].get(error_class)
            state.app.register_error_handler(error_class, _routing_handler(prefix, previous))

    return bp


def _metrics_routes(bp: Blueprint, specs: list[SyncSpec], backlog_seconds: float) -> None:
    """GET metrics and healthz, served by an exporter made at the first call (OpenTelemetry, the
    database and the search client are loaded then, not when the extension is imported)."""
    made: list[Any] = []
    lock = threading.Lock()

    def exporter() -> Any:
        with lock:
            if not made:
                from sync_pipeline.apps.metrics import Exporter
                from sync_pipeline.io.postgres import engine_for
                from sync_pipeline.io.search import search_client

                env = settings.load()
                engine = engine_for(env.require_pg_url())
                es_url = env.require_es_url()
                made.append(
                    Exporter(engine, lambda: search_client(es_url, options=env.es), specs, backlog_seconds)
                )
            return made[0]

    def answer(route: Callable[[Any], tuple[int, str, bytes]]) -> Response | tuple[Response, int]:
        try:
            found = exporter()
        except settings.SettingsError as exc:  # no SYNC_PG_URL / SYNC_ES_URL: say which
            return _error(503, str(exc))
        status, kind, body = route(found)
        return Response(body, status=status, content_type=kind)

    bp.add_url_rule("/metrics", "metrics", lambda: answer(lambda e: e.metrics()))
    bp.add_url_rule("/healthz", "healthz", lambda: answer(lambda e: e.healthz()))


# app.config keys the extension reads; each falls back to the environment variable beside it
CONFIG_TOKEN = "SYNC_PIPELINE_API_TOKEN"  # $SYNC_API_TOKEN
CONFIG_SPECS = "SYNC_PIPELINE_CONFIG"  # $SYNC_CONFIG, else ./sync.yaml
CONFIG_DAGSTER_URL = "SYNC_PIPELINE_DAGSTER_URL"  # $SYNC_DAGSTER_URL, else http://127.0.0.1:3000
CONFIG_URL_PREFIX = "SYNC_PIPELINE_URL_PREFIX"  # default /sync
CONFIG_TIMEOUT = "SYNC_PIPELINE_TIMEOUT"  # seconds per call to Dagster's webserver, default 30
CONFIG_METRICS = "SYNC_PIPELINE_METRICS"  # True: also GET <prefix>/metrics and <prefix>/healthz
EXTENSION_NAME = "sync_pipeline"


class SyncPipeline:
    """The /sync routes as a Flask extension: `SyncPipeline(app)`, or `init_app(app)` from an
    application factory. Reads app.config (CONFIG_* above) when init_app runs, the environment
    for what app.config leaves out; registers the blueprint and `app.extensions["sync_pipeline"]`."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        config = app.config
        token = config.get(CONFIG_TOKEN) or os.environ.get(TOKEN_ENV)
        if not token or not str(token).strip():
            raise SyncBlueprintConfigError(
                f"no API token for the sync routes of app '{app.name}': set app.config['{CONFIG_TOKEN}'] "
                f"or {TOKEN_ENV} (the routes launch Dagster runs and are never served without authentication)"
            )
        try:
            timeout = float(config.get(CONFIG_TIMEOUT, 30.0))
        except (TypeError, ValueError):
            timeout = -1.0
        if not 0 < timeout < float("inf"):
            raise SyncBlueprintConfigError(
                f"app.config['{CONFIG_TIMEOUT}'] must be a number of seconds > 0, "
                f"not {config.get(CONFIG_TIMEOUT)!r}"
            )
        blueprint = create_sync_blueprint(
            token=str(token),
            specs_path=config.get(CONFIG_SPECS) or None,
            dagster_url=config.get(CONFIG_DAGSTER_URL) or None,
            url_prefix=config.get(CONFIG_URL_PREFIX, "/sync"),
            timeout=timeout,
            metrics=bool(config.get(CONFIG_METRICS, False)),
        )
        app.register_blueprint(blueprint)
        app.extensions[EXTENSION_NAME] = self


def _header_bytes(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # not from a real WSGI server; never equal to a token's bytes
        return value.encode("utf-8", "surrogatepass")


class _JsonError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def _http_error_json(exc: HTTPException) -> Response:
    response = exc.get_response()
    response.data = jsonify({"error": exc.description or exc.name}).get_data()
    response.content_type = "application/json"
    return response


def _routing_handler(prefix: str, previous: Callable[[Any], Any] | None) -> Callable[[HTTPException], Any]:
    def handler(exc: HTTPException):
        path = request.path
        if path == prefix or path.startswith(prefix + "/"):
            return _http_error_json(exc)
        return previous(exc) if previous is not None else exc

    return handler
