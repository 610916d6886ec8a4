"""Jobs run in this process, recorded in DAGSTER_HOME like the daemon's runs would be.

The CLI (and the tests and bench, through it) runs a spec's job with
`execute_in_process`, so every run lands in the same instance the UI shows;
summaries are folded from the run's materializations (core.report.run_totals).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from sqlalchemy.engine import Engine

from sync_pipeline import settings as settings_module
from sync_pipeline.apps.instance import dagster_home, dagster_instance
from sync_pipeline.core import naming
from sync_pipeline.core.documents.diff import VerifyReport
from sync_pipeline.core.load.counts import RUN_ORDER
from sync_pipeline.core.report.run_totals import BatchRecord, RunTotals, fold_materializations
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.defs import build_definitions
from sync_pipeline.defs.partitions import partition_keys_for
from sync_pipeline.defs.resources import resources_for
from sync_pipeline.defs.runs import run_batches, run_totals
from sync_pipeline.io.logs import LOGGER, log_fields
from sync_pipeline.io.pandas_probe import skip_pandas_probe
from sync_pipeline.io.postgres import engine_for
from sync_pipeline.io.search import SearchTarget, search_client
from sync_pipeline.ops import progress
from sync_pipeline.ops.prepare import TargetVerdict
from sync_pipeline.ops.verify import verify_spec
from sync_pipeline.settings import ElasticsearchOptions


class NoPartitions(ValueError):
    """The requested range selects no partition of the spec."""


@dataclass
class SyncSummary(RunTotals):
    """A finished run of the CLI: its totals, and which run it was."""

    spec: str = ""
    partitions: str = ""
    success: bool = False
    run_id: str = ""
    error: str = ""
    wall_seconds: float = 0.0  # the whole run, start to end, as the CLI waited for it

    @property
    def docs_per_second(self) -> float:
        """Documents written per second of the run's wall time: what a user waited for."""
        return self.counts.written / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def load_docs_per_second(self) -> float:
        """Documents written per second the bulk loads took (extract and startup not counted)."""
        return self.counts.written / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Servers:
    pg_url: str
    es_url: str
    es: ElasticsearchOptions = field(default_factory=ElasticsearchOptions, repr=False)

    @classmethod
    def from_settings(cls) -> Servers:
        config = settings_module.load()
        return cls(config.require_pg_url(), config.require_es_url(), config.es)

    def search_client(self) -> SearchTarget:
        return search_client(self.es_url, options=self.es)


# Dagster's switch for writing a batch of asset events (a range run's materialization of every
# partition of an asset) in one statement where the storage can (PostgreSQL); unset, each is
# an INSERT and commit of its own: 33 partitions × 3 assets were 99 round trips per run
EVENT_BATCH_SIZE = "DAGSTER_EVENT_BATCH_SIZE"
IN_PROCESS_EVENT_BATCH = 1000


@contextlib.contextmanager
def _batched_events() -> Iterator[None]:
    """Batched asset-event writes for a run executed in this process, unless the environment
    already says; the daemon's runs keep Dagster's default (a process started meanwhile inherits
    the setting)."""
    if os.environ.get(EVENT_BATCH_SIZE) is not None:
        yield
        return
    os.environ[EVENT_BATCH_SIZE] = str(IN_PROCESS_EVENT_BATCH)
    try:
        yield
    finally:
        os.environ.pop(EVENT_BATCH_SIZE, None)


def _job(
    spec: SyncSpec,
    name: str,
    servers: Servers,
    engine: Engine | None = None,
    prepared: Mapping[str, TargetVerdict] | None = None,
):
    """The job, on the caller's engine when it gives one (one engine for the whole command) and
    with the verdicts its preflight reached (the run binds and compares the mapping no more).
    Built from its own spec's definitions alone: a spec's jobs select its assets only, so the
    other specs' assets, sensors and schedules would change nothing but the time to build them."""
    config = settings_module.load()
    resources: dict[str, Any] = resources_for(config, pg_url=servers.pg_url, es_url=servers.es_url)
    if engine is not None:
        bound = [verdict.bound for verdict in (prepared or {}).values()]
        resources["postgres"] = resources["postgres"].lending(engine, bound)
    if prepared:
        resources["elasticsearch"] = resources["elasticsearch"].lending(prepared)
    return build_definitions([spec], resources).resolve_job_def(name)


def _console(log_level: str) -> dict[str, Any]:
    # the full event log is in DAGSTER_HOME (make ui); the terminal gets warnings only, a log
    # pipeline (SYNC_LOG_FORMAT=json) the steps' INFO records and counted events as well
    if settings_module.log_format() == "json" and logging.getLevelName(log_level.upper()) > logging.INFO:
        log_level = "INFO"
    return {"loggers": {"console": {"config": {"log_level": log_level}}}}


def _log_summary(summary: SyncSummary) -> None:
    """The run's counts as one structured record (JSON logs; silent in text, where stdout says it)."""
    # the keys in the order they always had: extracted, the counters, then the rest
    counters = summary.counts.as_dict((*RUN_ORDER, "batches"))
    record = {"extracted": summary.extracted, **counters, **vars(summary)}
    del record["counts"]
    fields = {k: round(v, 3) if isinstance(v, float) else v for k, v in record.items()}
    fields["partition"] = fields.pop("partitions")
    fields["docs_per_s"] = round(summary.docs_per_second, 1)
    outcome = "succeeded" if summary.success else "failed"
    log_fields(logging.getLogger(f"{LOGGER}.cli"), f"{summary.spec}: run {outcome}", **fields)


def partitions_in_range(spec: SyncSpec, start: datetime | None, end: datetime | None) -> list[str]:
    """The spec's partition keys in the range; NoPartitions when it selects none."""
    keys = partition_keys_for(spec, start, end)
    if not keys:
        raise NoPartitions(f"no partitions of spec '{spec.name}' fall in the requested range")
    return keys


def run_sync(
    spec: SyncSpec,
    start: datetime | None = None,
    end: datetime | None = None,
    listener: Callable[[str, dict[str, Any]], None] | None = None,
    log_level: str = "WARNING",
    servers: Servers | None = None,
    engine: Engine | None = None,
    prepared: Mapping[str, TargetVerdict] | None = None,
) -> SyncSummary:
    """Run the spec's sync job in-process over a partition range, as one run in DAGSTER_HOME;
    `listener` hears its progress (apps/cli/progress.py). `engine` and `prepared`: the caller's
    engine and its preflight's verdicts (Session.prepare_targets), reused by the run. The run's job
    is built from `spec`'s definitions alone (_job), not the whole spec file's."""
    skip_pandas_probe()
    servers = servers or Servers.from_settings()
    keys = partitions_in_range(spec, start, end)
    label = keys[0] if len(keys) == 1 else f"{keys[0]} … {keys[-1]} ({len(keys)})"
    job = _job(spec, naming.sync_job(spec.name), servers, engine, prepared)
    tags = {naming.RANGE_START_TAG: keys[0], naming.RANGE_END_TAG: keys[-1]}
    started = time.perf_counter()
    with progress.listening(listener or (lambda event, data: None)), _batched_events():
        result = execute_in_process(
            job,
            instance=dagster_instance(),
            tags=tags,
            raise_on_error=False,
            run_config=_console(log_level),
        )
    summary = summarise(result, spec, label)
    summary.wall_seconds = time.perf_counter() - started
    _log_summary(summary)
    return summary


def run_drain(
    spec: SyncSpec,
    log_level: str = "WARNING",
    servers: Servers | None = None,
    engine: Engine | None = None,
    listener: Callable[[str, dict[str, Any]], None] | None = None,
) -> SyncSummary:
    """The spec's drain job, in-process, so the run lands in DAGSTER_HOME like a sensor's would;
    `listener` hears its progress (a fan-out's batches, apps/cli/progress.py)."""
    servers = servers or Servers.from_settings()
    job = _job(spec, naming.drain_job(spec.name), servers, engine)
    started = time.perf_counter()
    with progress.listening(listener or (lambda event, data: None)), _batched_events():
        result = execute_in_process(
            job, instance=dagster_instance(), raise_on_error=False, run_config=_console(log_level)
        )
    summary = summarise(result, spec, "buffer")
    summary.wall_seconds = time.perf_counter() - started
    _log_summary(summary)
    return summary


def execute_in_process(job: dg.JobDefinition, **kwargs: Any) -> dg.ExecuteInProcessResult:
    """`job.execute_in_process(**kwargs)`, with SIGTERM left as it was. When a run ends, Dagster
    sets SIGTERM to SIGINT's handler; a process a non-interactive shell starts in the background
    (a cron script, a CI runner) has SIGINT ignored, so it would ignore SIGTERM from then on, and
    so would every process it starts (unit/test_sigterm_kept.py)."""
    before = signal.getsignal(signal.SIGTERM)
    try:
        return job.execute_in_process(**kwargs)
    finally:
        if before is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, before)  # handlers can only be set from the main thread


def summarise(result: dg.ExecuteInProcessResult, spec: SyncSpec, label: str) -> SyncSummary:
    """Totals of a finished run, read from its materialization metadata."""
    materializations = (
        event.step_materialization_data.materialization for event in result.get_asset_materialization_events()
    )
    totals = fold_materializations((m.asset_key.to_user_string(), m.metadata) for m in materializations)
    summary = SyncSummary(
        **vars(totals),
        spec=spec.name,
        partitions=label,
        success=result.success,
        run_id=result.run_id,
    )
    if not result.success:
        failures = result.get_step_failure_events()
        user_failure = failures[0].step_failure_data.user_failure_data if failures else None
        if user_failure is not None and user_failure.description:
            summary.error = user_failure.description.strip()  # a dg.Failure: its message as written
        elif failures and failures[0].step_failure_data.error:
            error = failures[0].step_failure_data.error
            while error.cause is not None:  # the root cause, not Dagster's step wrapper
                error = error.cause
            summary.error = error.message.strip()
        else:
            summary.error = "run failed"
    return summary


def run_verify(
    specs: Sequence[SyncSpec],
    selected: Sequence[SyncSpec],
    fix: bool = False,
    servers: Servers | None = None,
    engine: Engine | None = None,
) -> list[VerifyReport]:
    """verify (`fix`: --fix) of each selected spec, on the caller's engine or one of its own."""
    servers = servers or Servers.from_settings()
    es = servers.search_client()
    own = engine is None
    engine = engine or engine_for(servers.pg_url)
    try:
        # by key ranges, each read in a snapshot of its own (no transaction spans the verify)
        return [verify_spec(engine, es, spec, fix=fix) for spec in selected]
    finally:
        if own:
            engine.dispose()


@dataclass(frozen=True)
class HistoryRun:
    """One sync or drain run of the Dagster instance, with its totals (`history` prints these)."""

    run_id: str
    job: str
    spec: str
    kind: str  # "sync" or "drain"
    partitions: str  # a partition key, "first…last" for a range run, "-" for a drain
    status: str  # Dagster's run status, lower case: success, failure, started, …
    start: datetime | None
    end: datetime | None
    totals: dict[str, int]  # batches, indexed, failed, stale_skipped, dead_lettered, …

    @property
    def duration_seconds(self) -> float | None:
        return (self.end - self.start).total_seconds() if self.start and self.end else None


def _jobs(selected: Sequence[SyncSpec]) -> dict[str, tuple[str, str]]:
    """The selected specs' sync and drain jobs: job name → (spec, kind)."""
    return {
        job(spec.name): (spec.name, kind)
        for spec in selected
        for kind, job in (("sync", naming.sync_job), ("drain", naming.drain_job))
    }


def _history_run(instance: dg.DagsterInstance, record: dg.RunRecord, spec: str, kind: str) -> HistoryRun:
    run = record.dagster_run
    start, end = record.start_time, record.end_time
    return HistoryRun(
        run_id=run.run_id,
        job=run.job_name,
        spec=spec,
        kind=kind,
        partitions=naming.partition_label(run.tags) or "-",
        status=run.status.value.lower(),
        start=datetime.fromtimestamp(start, UTC) if start else None,
        end=datetime.fromtimestamp(end, UTC) if end else None,
        totals=dict(run_totals(instance, run.run_id)),
    )


def run_history(selected: Sequence[SyncSpec], last: int, pg_url: str) -> list[HistoryRun]:
    """Recent sync and drain runs with their totals, newest first."""
    instance = dagster_instance()
    jobs = _jobs(selected)
    records = instance.get_run_records(dg.RunsFilter(job_name=None), limit=max(last * 10, 100))
    runs: list[HistoryRun] = []
    for record in records:
        if record.dagster_run.job_name not in jobs:
            continue
        runs.append(_history_run(instance, record, *jobs[record.dagster_run.job_name]))
        if len(runs) >= last:
            break
    return runs


class UnknownRun(LookupError):
    """No sync or drain run of the selected specs has this id."""


# a run id prefix (`history` prints the first 8 characters) is looked for among this many runs
PREFIX_SEARCH_RUNS = 1000


def find_run(selected: Sequence[SyncSpec], run_id: str) -> tuple[HistoryRun, list[BatchRecord]]:
    """One sync or drain run by its id (or a prefix of it that is unique among recent runs), and
    every batch it recorded."""
    instance = dagster_instance()
    jobs = _jobs(selected)
    wanted = run_id.strip().lower()
    records = instance.get_run_records(dg.RunsFilter(run_ids=[wanted])) if wanted else []
    if not records and wanted:
        ids = [i for i in instance.get_run_ids(limit=PREFIX_SEARCH_RUNS) if i.startswith(wanted)]
        if len(ids) > 1:
            raise UnknownRun(f"run id '{run_id}' is ambiguous: {', '.join(i[:12] for i in ids[:5])} …")
        records = instance.get_run_records(dg.RunsFilter(run_ids=ids)) if ids else []
    record = records[0] if records else None
    if record is None or record.dagster_run.job_name not in jobs:
        specs = ", ".join(spec.name for spec in selected)
        raise UnknownRun(
            f"no sync or drain run '{run_id}' of spec {specs} in the Dagster instance "
            f"(DAGSTER_HOME={dagster_home()}): `sync-pipeline history` lists the recent ones"
        )
    history = _history_run(instance, record, *jobs[record.dagster_run.job_name])
    return history, run_batches(instance, history.run_id)
