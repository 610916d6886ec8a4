"""A picture of the exported metrics from a real run, for docs/operating.md.

    python -m sync_pipeline_devtools.metrics_plot --out docs/images/metrics.png [--seconds 120]

Against SYNC_PG_URL / SYNC_ES_URL (else the checkout's local services): a throwaway table with
trigger capture, a writer committing at a rate that steps up and down, a following drain
(ops/drain.follow, as the buffer sensor's runs do), the exporter (apps/metrics.py) on a free
port, and a scrape of its /metrics every 2 s over HTTP. The series plotted are the scraped
values, as Prometheus would have stored them. Needs matplotlib (a dev dependency).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from sync_pipeline.apps.metrics import Exporter, serve
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io.postgres import engine_for
from sync_pipeline.io.search import search_client
from sync_pipeline.io.search.indices import drop_target
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import follow

SPEC = """
specs:
  - name: {name}
    source: {{table: {name}, primary_key: id, updated_at: updated_at}}
    target: {{index: {name}}}
    partitions: {{grain: month, start: "2026-01-01"}}
    batch_size: 500
"""
RATES = (50, 200, 800, 200, 50)  # rows committed per second, each for a fifth of the run


def _write(engine: sa.Engine, table: str, seconds: float, stop: threading.Event) -> None:
    started, next_id = time.monotonic(), 1
    while not stop.is_set() and (elapsed := time.monotonic() - started) < seconds:
        rate = RATES[min(len(RATES) - 1, int(elapsed / seconds * len(RATES)))]
        rows = [{"id": i, "title": f"item {i}"} for i in range(next_id, next_id + rate // 10)]
        with engine.begin() as conn:
            insert = f"INSERT INTO {table} (id, title, updated_at) VALUES (:id, :title, now())"
            conn.execute(sa.text(insert), rows)
        next_id += len(rows)
        time.sleep(0.1)


def _scrape(port: int) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _pick(scraped: dict, name: str, **labels: str) -> float | None:
    wanted = set(labels.items())
    found = [v for (n, have), v in scraped.items() if n == name and wanted <= have]
    return found[0] if found else None


def run(out: Path, seconds: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not os.environ.get("SYNC_PG_URL") or not os.environ.get("SYNC_ES_URL"):
        from sync_pipeline_devtools import services

        urls = services.ensure_services()
        os.environ["SYNC_PG_URL"], os.environ["SYNC_ES_URL"] = urls.pg_url, urls.es_url
    engine, es = engine_for(os.environ["SYNC_PG_URL"]), search_client(os.environ["SYNC_ES_URL"])
    name = f"metrics_plot_{uuid.uuid4().hex[:6]}"
    spec = parse_specs(SPEC.format(name=name), origin="metrics_plot")[0]
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"CREATE TABLE {name} (id bigint PRIMARY KEY, title text, updated_at timestamptz)")
        )
    install_capture(engine, spec)
    exporter = Exporter(engine, lambda: es, [spec], 900, cache_seconds=0)
    server = serve(exporter, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    stop = threading.Event()
    drain = threading.Thread(target=follow, args=(engine, es, spec, None, seconds + 20), daemon=True)
    writer = threading.Thread(target=_write, args=(engine, name, seconds, stop), daemon=True)
    series: list[tuple[float, dict]] = []
    try:
        drain.start()
        writer.start()
        started = time.monotonic()
        while time.monotonic() - started < seconds + 25:
            series.append((time.monotonic() - started, _scrape(port)))
            time.sleep(2)
    finally:
        stop.set()
        writer.join()
        drain.join()
        server.shutdown()
        exporter.close()
        uninstall_capture(engine, spec)
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
            conn.execute(sa.text("DELETE FROM sync_pipeline_metrics WHERE spec = :s"), {"s": name})
        drop_target(es, name)
    _plot(plt, series, name, out)


def _rate(times: list[float], counter: list[float], i: int, window: float = 30.0) -> float:
    """The counter's increase over the last `window` seconds, per second (Prometheus' rate())."""
    j = next(k for k in range(i + 1) if times[i] - times[k] <= window)
    return (counter[i] - counter[j]) / (times[i] - times[j]) if i > j else 0.0


def _plot(plt, series: list[tuple[float, dict]], spec: str, out: Path) -> None:
    times = [t for t, _ in series]
    run = {"spec": spec, "op": "drain"}
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    for q, style in (("0.5", "-"), ("0.95", "--"), ("0.99", ":")):
        axes[0].plot(times, [_pick(s, "sync_pipeline_lag_seconds", spec=spec, quantile=q) for _, s in series],
                     style, label=f"p{float(q) * 100:g}")  # fmt: skip
    axes[0].set_ylabel("lag (s)")
    axes[0].set_title("sync_pipeline, scraped from /metrics every 2 s during a following drain")
    axes[1].plot(times, [_pick(s, "sync_pipeline_buffer_entries", spec=spec) for _, s in series])
    axes[1].set_ylabel("buffer entries")
    indexed = [_pick(s, "sync_pipeline_documents_total", **run, outcome="indexed") or 0 for _, s in series]
    axes[2].plot(times, [_rate(times, indexed, i) for i in range(len(times))])
    axes[2].set_ylabel("documents/s (30 s rate)")
    latency = [_pick(s, "sync_pipeline_bulk_latency_seconds", **run, quantile="0.95") for _, s in series]
    axes[3].plot(times, latency)
    axes[3].set_ylabel("bulk p95 (s)")
    axes[3].set_xlabel("seconds into the run")
    axes[0].legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"wrote {out} ({len(series)} scrapes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/metrics.png"))
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    run(args.out, args.seconds)


if __name__ == "__main__":
    main()
