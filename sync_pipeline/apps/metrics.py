"""The exporter: sync_pipeline's metrics as OpenTelemetry instruments, served as Prometheus text on
/metrics, and its health on /healthz — `sync-pipeline metrics --port N`, or the Flask extension's
routes (apps/flask.py).

Every metric is an asynchronous OpenTelemetry instrument (an observable counter or gauge) whose
callback reports what the database holds at the scrape (ops/scrape.py): the runs' figures are
sums over the table they append to, so the exporter keeps no state of its own and a restart of
it loses nothing. The OpenTelemetry SDK's Prometheus exporter turns the instruments into the
Prometheus text format (opentelemetry-exporter-prometheus, over prometheus_client), in a
registry of the exporter's own, so two exporters in one process never collide.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.engine import Engine

from sync_pipeline.apps.health_json import HEALTHZ_SCHEMA, healthz_document
from sync_pipeline.core.report.metrics import METRICS, Metric
from sync_pipeline.core.report.redact import redact
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.ops import scrape

CACHE_SECONDS = 5.0  # scrapes and health checks closer together than this share one reading
JSON = "application/json"
log = logging.getLogger(__name__)


class _Cached:
    """The value of `read`, read again only once it is `seconds` old (one reader at a time)."""

    def __init__(self, read: Callable[[], Any], seconds: float) -> None:
        self._read, self._seconds = read, seconds
        self._lock = threading.Lock()
        self._value: Any = None
        self._at = float("-inf")

    def get(self) -> Any:
        with self._lock:
            if time.monotonic() - self._at >= self._seconds:
                self._value = self._read()
                self._at = time.monotonic()
            return self._value


class Exporter:
    """/metrics and /healthz for the specs of one spec file, against one database and server."""

    def __init__(
        self,
        engine: Engine,
        es: Callable[[], SearchTarget],
        specs: Sequence[SyncSpec],
        backlog_seconds: float,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.specs = list(specs)
        client: list[SearchTarget] = []

        def search() -> SearchTarget:  # one client for the exporter's life, made when first needed
            if not client:
                client.append(es())
            return client[0]

        self._samples = _Cached(lambda: scrape.samples(scrape.read(engine, self.specs)), cache_seconds)
        self._health = _Cached(
            lambda: scrape.health(engine, search(), self.specs, backlog_seconds), cache_seconds
        )
        self._scraping = threading.Lock()
        self.registry = CollectorRegistry()
        # no otel_scope_* labels: one scope, and the labels stay the documented ones
        reader = PrometheusMetricReader(scope_info_enabled=False, registry=self.registry)
        self._provider = MeterProvider(
            metric_readers=[reader], resource=Resource.create({"service.name": "sync_pipeline"})
        )
        meter = self._provider.get_meter("sync_pipeline")
        for metric in METRICS:
            counter = metric.kind == "counter"
            create = meter.create_observable_counter if counter else meter.create_observable_gauge
            create(metric.instrument, [self._callback(metric)], unit=metric.unit, description=metric.help)

    def _callback(self, metric: Metric) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(value, labels) for value, labels in self._samples.get()[metric.name]]

        return observe

    def metrics(self) -> tuple[int, str, bytes]:
        """(status, content type, body) of /metrics."""
        try:
            with self._scraping:
                # read here, where a failure can answer 503 (a callback's error is only logged)
                self._samples.get()
                return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        except Exception as exc:  # the database is unreachable: say so, in one line
            log.warning("sync_pipeline metrics: scrape failed: %s", exc)
            return 503, "text/plain; charset=utf-8", f"scrape failed: {_one_line(exc)}\n".encode()

    def healthz(self) -> tuple[int, str, bytes]:
        """(status, content type, body) of /healthz: 200 when nothing needs action, else 503."""
        try:
            health = self._health.get()
            status, document = health.status, healthz_document(health)
        except Exception as exc:
            status, document = 503, {"schema": HEALTHZ_SCHEMA, "ok": False, "error": _one_line(exc)}
        return status, JSON, json.dumps(document, default=str).encode()

    def close(self) -> None:
        self._provider.shutdown()


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return redact(f"{type(exc).__name__}: {lines[0] if lines else ''}")


def serve(exporter: Exporter, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server answering GET /metrics and /healthz (not started: serve_forever it)."""
    routes = {"/metrics": exporter.metrics, "/healthz": exporter.healthz}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            status, kind, body = route() if route else (404, "text/plain", b"not found: /metrics, /healthz\n")
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # scrapes every 15 s: no line each
            pass

    return ThreadingHTTPServer((host, port), Handler)
