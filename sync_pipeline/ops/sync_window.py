"""Sync one updated_at window: extract → documents → index.

Run together (a sync, a backfill, a schedule tick), the stages stream: page
k+1 is read from PostgreSQL and turned into documents while Elasticsearch
indexes page k, and each body is also written to the staged NDJSON file on its
way through (the rows are not staged: see `sync_window`). Run on their own (a
subset in the UI, or re-running just the load), each stage reads the previous
stage's staged file. Callable without Dagster:
the assets, the CLI's in-process runs, tests and the bench all come here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from sqlalchemy.engine import Engine

from sync_pipeline.core import naming
from sync_pipeline.core.documents.build import DocumentPlan, batch_to_bulk
from sync_pipeline.core.load.bulk import (
    BatchResult,
    BulkBody,
    LoadTotals,
    Rejected,
    iter_bodies,
    rebody,
)
from sync_pipeline.core.mapping.fields import refresh_interval
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.columns import arrow_schema
from sync_pipeline.core.sql.statements import KeyRange
from sync_pipeline.core.windows import Window
from sync_pipeline.io import deadletters
from sync_pipeline.io.bulk_load import bulk_indexing, load_bulk
from sync_pipeline.io.postgres import libpq_url, open_writers_before, stream_window
from sync_pipeline.io.search import SearchTarget
from sync_pipeline.io.staging import (
    StagingArea,
    read_batches,
    staged_bodies,
    staged_columns,
    staged_lines,
    staged_pages,
    staging_to,
)
from sync_pipeline.ops import progress
from sync_pipeline.ops.binding import Bound, bind
from sync_pipeline.ops.metrics import measured_sync, observe_batch
from sync_pipeline.ops.prepare import TargetVerdict
from sync_pipeline.ops.target import TargetState
from sync_pipeline.ops.window_ranges import RangeSplit, split_window


class MissingStage(RuntimeError):
    """A stage ran on its own, but the stage before it has not staged this window yet."""


class LoadFailed(RuntimeError):
    """Documents were not acknowledged by Elasticsearch after the retries; `totals` says how many."""

    def __init__(self, message: str, totals: LoadTotals) -> None:
        super().__init__(message)
        self.totals = totals


@dataclass(frozen=True)
class WindowRun:
    """One window of one spec, and where its run reads and writes: the run's engine (its
    caller builds one per run and disposes of it) and staging area."""

    spec: SyncSpec
    window: Window
    key: str  # the staging file name of the window
    engine: Engine
    staging: StagingArea
    run_id: str | None = None
    on_batch: Callable[[BatchResult], None] | None = None
    log: Callable[[str], None] = print

    def path(self, suffix: str) -> Path:
        return self.staging.path(self.spec.name, self.key, suffix)


@dataclass
class Extracted:
    rows: int = 0
    seconds: float = 0.0
    path: Path | None = None  # None: not staged (a streamed run)
    settle_seconds: float = 0.0  # waited for open transactions older than the window's end
    open_writers: int = 0  # still open when the read began (their rows need a later read)
    key_ranges: int = 0  # statements it took, when read by key ranges (ops/window_ranges.py)
    resumed_ranges: int = 0  # ranges an earlier run confirmed, not read again


def settle(run: WindowRun, counts: Extracted, sleep=time.sleep, clock=time.monotonic) -> None:
    """Do not read a closed window while a transaction that began before its end is still open:
    it may commit rows stamped inside the window (updated_at = now() is its start) after the
    read, and the window would never see them. Waits up to `partitions.settle_seconds`."""
    end = run.window.end
    if end is None or end > datetime.now(UTC):
        return  # the open window: later runs read it again
    limit = run.spec.partitions.settle_seconds
    started = clock()
    while True:
        with run.engine.connect() as conn:
            count, oldest = open_writers_before(conn, end)
            conn.rollback()
        if count == 0 or clock() - started >= limit:
            break
        sleep(0.5)
    counts.settle_seconds = round(clock() - started, 3)
    counts.open_writers = count
    if count:
        run.log(
            f"{run.spec.name} {run.key}: {count} transaction(s) open since {oldest} are still open "
            f"after {limit:.0f}s; rows they commit later reach the index through a later window's "
            "lookback or the change buffer"
        )


@dataclass
class Documents:
    docs: int = 0
    deletes: int = 0
    seconds: float = 0.0
    path: Path | None = None
    fields: tuple[str, ...] = ()
    # rows no document can carry (core/sql/poison.py): dead letters instead of documents
    rejected: list[Rejected] = field(default_factory=list)


@dataclass
class WindowResult:
    extracted: Extracted = field(default_factory=Extracted)
    documents: Documents = field(default_factory=Documents)
    totals: LoadTotals = field(default_factory=LoadTotals)
    target: TargetState = field(default_factory=TargetState)  # what readying the index took


def _documents(
    batches: Iterator[pa.RecordBatch], plan: DocumentPlan, counts: Documents, run: WindowRun
) -> Iterator[BulkBody]:
    """Each batch's documents as one bulk body, timed and counted; its rows no document can
    carry are stored as dead letters as they come, and the window goes on."""
    engine = run.engine
    for batch in batches:
        started = time.perf_counter()
        chunk = batch_to_bulk(batch, plan)
        counts.docs += chunk.docs
        counts.deletes += chunk.deletes
        counts.seconds += time.perf_counter() - started
        if chunk.rejected:
            with engine.begin() as conn:
                deadletters.record(conn, run.spec.name, chunk.rejected, run.key, run.run_id)
            counts.rejected.extend(chunk.rejected)
        if chunk.docs:
            yield chunk.body


def _timed(pages: Iterator[pa.RecordBatch], counts: Extracted) -> Iterator[pa.RecordBatch]:
    while True:
        started = time.perf_counter()
        page = next(pages, None)
        counts.seconds += time.perf_counter() - started
        if page is None:
            return
        counts.rows += page.num_rows
        yield page


def _read(run: WindowRun, bound: Bound, key_range: KeyRange | None = None) -> Iterator[pa.RecordBatch]:
    """The window's rows (of one key range of it), relations and version included, by one COPY
    statement."""
    url = libpq_url(run.engine.url.render_as_string(hide_password=False), naming.EXTRACT_APPLICATION)
    return stream_window(
        url, run.spec, bound.columns, run.window, run.spec.batch_size, bound.relations, key_range
    )


@measured_sync
def sync_window(run: WindowRun, es: SearchTarget, target: TargetVerdict) -> WindowResult:
    """The whole window, streamed: extract, documents and load overlap; staged files on the side.
    `target`: the index ready for writes (ops/prepare.py; its caller ran what it asked for)."""
    spec = run.spec
    result = WindowResult()
    bound = target.bound
    result.target = target.require_ready()
    result.documents.path = run.path("ndjson")
    result.documents.fields = tuple(f.name for f in bound.plan.fields)
    settle(run, result.extracted)
    # No Parquet on this path: the staged NDJSON is what a failed load is re-sent from, and
    # writing every row as zstd Parquet too cost ~9 s of CPU per million 1 KB rows. An older
    # extract of the window would now be behind the documents staged next to it, so it goes:
    # `<spec>_documents` run alone then asks for `<spec>_extract` first instead of rebuilding
    # the documents from rows older than the index holds.
    run.path("parquet").unlink(missing_ok=True)
    split = split_window(run.engine, es, bound, run.window, run.key, result.target, run.log)
    if split is not None:
        result.totals = _load_ranges(run, es, bound, split, result)
    else:
        rows = _read(run, bound)
        bodies = staged_bodies(
            _documents(_timed(rows, result.extracted), bound.plan, result.documents, run),
            result.documents.path,
        )
        result.totals = load(run, es, rebody(bodies, spec.batch_size, spec.target.bulk_max_bytes))
        progress.notify("extracted", spec=spec.name, rows=result.extracted.rows)
    # the window's dead-lettered rows in its totals, as refused documents are (the run's check
    # fails on them, and `dead-letters` lists why)
    result.totals.count_dead_letters(result.documents.rejected)
    result.totals.mapping_changes = result.target.lines
    run.log(
        f"{spec.name} {run.key}: read {result.extracted.rows} rows in {result.extracted.seconds:.1f}s "
        f"and built {result.documents.docs} documents in {result.documents.seconds:.1f}s while loading "
        "(streamed)"
    )
    return result


def _load_ranges(
    run: WindowRun, es: SearchTarget, bound: Bound, split: RangeSplit, result: WindowResult
) -> LoadTotals:
    """The window by key ranges (ops/window_ranges.py): each read by a statement of its own,
    loaded, and confirmed once Elasticsearch acknowledged all of it, before the next is read."""
    spec = run.spec
    totals = LoadTotals()
    result.extracted.resumed_ranges = split.confirmed.ranges
    with staging_to(result.documents.path) as staged:
        for key_range in split.ranges():
            result.extracted.key_ranges += 1
            before = result.extracted.rows
            rows = _read(run, bound, key_range)
            documents = _documents(_timed(rows, result.extracted), bound.plan, result.documents, run)
            bodies = rebody(staged(documents), spec.batch_size, spec.target.bulk_max_bytes)
            try:
                part = load(run, es, bodies)
            except LoadFailed as failed:
                totals.merge(failed.totals)
                raise LoadFailed(str(failed), totals) from None
            totals.merge(part)
            read = result.extracted.rows - before
            split.confirm(key_range, read)
            progress.notify("extracted", spec=spec.name, rows=read)
            run.log(
                f"{spec.name} {run.key}: key range {split.confirmed.ranges} confirmed ({read} rows, "
                f"keys after {list(key_range.after or ())} up to {list(key_range.upto or ['the end'])})"
            )
    return totals


def extract_stage(run: WindowRun) -> Extracted:
    """The window's rows into its staged Parquet file."""
    spec = run.spec
    path = run.path("parquet")
    started = time.perf_counter()
    bound = bind(run.engine, spec)
    counts = Extracted(path=path)
    settle(run, counts)
    rows = _read(run, bound)
    count = sum(batch.num_rows for batch in staged_pages(rows, arrow_schema(bound.read_columns), path))
    seconds = time.perf_counter() - started
    progress.notify("extracted", spec=spec.name, rows=count)
    run.log(f"extracted {count} rows of {spec.name} for {run.key} in {seconds:.1f}s")
    counts.rows, counts.seconds = count, seconds
    return counts


def documents_stage(run: WindowRun) -> Documents:
    """The staged extract into the staged bulk NDJSON documents."""
    source = run.path("parquet")
    if not source.exists():
        raise MissingStage(
            f"no staged extract at {source}: materialize {naming.extract_asset(run.spec.name)} first"
        )
    plan = Bound.staged(run.spec, staged_columns(source)).plan
    counts = Documents(path=run.path("ndjson"), fields=tuple(f.name for f in plan.fields))
    batches = read_batches(source, run.spec.batch_size)
    for _ in staged_bodies(_documents(batches, plan, counts, run), counts.path):
        pass
    return counts


@measured_sync
def index_stage(run: WindowRun, es: SearchTarget, target: TargetVerdict) -> WindowResult:
    """The staged documents into the index (`target` ready for writes, as for `sync_window`)."""
    spec = run.spec
    documents_path = run.path("ndjson")
    if not documents_path.exists():
        raise MissingStage(
            f"no staged documents at {documents_path}: materialize {naming.documents_asset(spec.name)} first"
        )
    result = WindowResult()
    result.target = target.require_ready()
    bodies = iter_bodies(staged_lines(documents_path), spec.batch_size, spec.target.bulk_max_bytes)
    result.totals = load(run, es, bodies)
    result.totals.mapping_changes = result.target.lines
    return result


def load(run: WindowRun, es: SearchTarget, bodies: Iterable[BulkBody]) -> LoadTotals:
    """Bulk-load bodies with the spec's concurrency; refused documents become dead letters as
    they come. Raises LoadFailed when documents were not acknowledged after the retries."""
    spec = run.spec
    engine = run.engine

    def record(batch: BatchResult) -> None:
        observe_batch(batch)
        if batch.rejected:
            with engine.begin() as conn:
                deadletters.record(conn, spec.name, batch.rejected, run.key, run.run_id)
        if run.on_batch is not None:
            run.on_batch(batch)
        progress.notify("batch", spec=spec.name, docs=batch.docs, failed=batch.failed)

    with ExitStack() as settings:

        def switching() -> Iterator[BulkBody]:
            for number, body in enumerate(bodies, 1):
                if number == 2:  # more than one request: a large load, worth turning refresh off
                    settings.enter_context(
                        bulk_indexing(
                            es,
                            spec.target.index,
                            spec.target.replicas,
                            refresh_interval(spec.target.settings),
                        )
                    )
                yield body

        totals = load_bulk(
            es,
            spec.target.index,
            switching(),
            spec.target.bulk_concurrency,
            on_batch=record,
            retry=spec.retry,
        )
    es.indices.refresh(index=spec.target.index)
    run.log(
        f"{spec.name}: {totals.indexed} indexed, {totals.deleted} deleted, {totals.stale_skipped} stale, "
        f"{totals.failed} failed, {totals.dead_lettered} dead-lettered in {totals.batches} batches, "
        f"{totals.seconds:.1f}s"
    )
    if totals.failed:
        # documents lost to transient errors: fail the run so nothing downstream treats it as done
        raise LoadFailed(
            f"{totals.failed} documents were not acknowledged by Elasticsearch after retries", totals
        )
    return totals
