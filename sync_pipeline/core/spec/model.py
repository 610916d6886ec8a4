"""Sync specs: the YAML users write, validated once at the edge.

Everything downstream receives `SyncSpec` objects and may trust them; nothing
else in the package reads YAML or environment variables for spec content.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, ValidationError, ValidationInfo, field_validator, model_validator

from sync_pipeline.core.spec.errors import Path as KeyPath
from sync_pipeline.core.spec.errors import describe, key_lines
from sync_pipeline.core.spec.sources import SourceSpec, Strict
from sync_pipeline.core.spec.target import FieldSpec, TargetSpec

SPEC_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

Grain = Literal["hour", "day", "week", "month"]
Reconcile = Literal["count", "hash", "off"]
OnMappingChange = Literal["fail", "rebuild"]
Capture = Literal["triggers", "logical"]


class SpecError(ValueError):
    """A sync spec file that cannot be used; the message names file, spec and field."""


class PartitionSpec(Strict):
    grain: Grain = "day"
    start: datetime = Field(description="first window start; rows older than this belong to the first window")
    lookback: timedelta = Field(
        # an application's transaction stamps updated_at when it starts (now()) and may commit
        # minutes later; ten minutes covers ordinary web requests and batch jobs, and a re-read
        # is idempotent (it costs the extra rows, never a wrong document)
        default=timedelta(minutes=10),
        description="each window also re-reads this much before its start, catching rows stamped "
        "earlier but committed late; re-reads are idempotent",
    )
    settle_seconds: float = Field(
        default=60.0,
        ge=0,
        description="before reading a closed window, wait up to this long for transactions that "
        "started before its end and are still open (they may commit rows stamped inside it)",
    )
    range_rows: int = Field(
        default=1_000_000,
        ge=1,
        description="a window holding more rows than this is read as key ranges of this many rows, "
        "each one statement with a snapshot of its own, in primary-key order; a run that stops "
        "resumes after the last range Elasticsearch acknowledged (docs/configuration.md)",
    )

    @field_validator("lookback")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


DEFAULT_CRON_BY_GRAIN = {
    "hour": "5 * * * *",
    "day": "15 0 * * *",
    "week": "30 0 * * 0",
    "month": "45 0 1 * *",
}


class BufferSensorSpec(Strict):
    """How the spec's captured changes are drained: by default a drain run that follows them
    (woken by each commit) and hands over to its successor before it ends; with
    `follow_seconds: 0`, one drain per run whenever enough changes waited long enough."""

    min_changes: int = Field(default=100, ge=1, description="follow_seconds: 0 — drain at this many changes")
    max_wait_seconds: float = Field(
        default=30.0, gt=0, description="follow_seconds: 0 — or when the oldest change waited this long"
    )
    interval_seconds: int = Field(default=15, ge=1, description="how often the sensor looks")
    follow_seconds: float | None = Field(
        default=None,
        ge=0,
        description="a drain run keeps applying changes as they commit (polling the buffer, or the slot's "
        "stream) — None: for max_run_seconds, its successor starting handover_seconds before it ends, "
        "so one is always following (changes searchable in well under a second); N: until nothing "
        "arrived for N seconds; 0: one drain per run, launched by min_changes / max_wait_seconds",
    )
    notify: bool = Field(
        default=False,
        description="capture: triggers — the triggers also NOTIFY each commit that buffered a change, "
        "so a following drain wakes at once instead of looking every poll_seconds. Off by default: "
        "a NOTIFY takes a database-wide lock at commit (the application's writing commits queue on "
        "it, docs/benchmarks.md) and PREPARE TRANSACTION refuses a transaction that sent one",
    )
    poll_seconds: float = Field(
        default=0.1,
        gt=0,
        le=10,
        description="capture: triggers, notify off — a following drain looks for new changes this "
        "often (one index probe of the buffer)",
    )
    max_run_seconds: float = Field(
        default=300.0,
        gt=0,
        description="a drain run claims no new changes after this long (what is left waits for the "
        "next run), following or not",
    )
    handover_seconds: float = Field(
        default=60.0,
        gt=0,
        description="follow_seconds: None — the next drain run is requested this long before the "
        "running one ends (longer than a sensor interval plus a run's start)",
    )
    max_runtime_seconds: float | None = Field(
        default=None,
        gt=0,
        description="a drain run still going after this long is failed by Dagster's run monitoring "
        "(a dead run worker would otherwise hold the spec's drain queue forever); "
        "default: max_run_seconds + 300",
    )
    slot_lag_alert_mb: float = Field(
        default=1024.0,
        gt=0,
        description="capture: logical — alert (and `doctor` reports) when the spec's replication slot "
        "holds more WAL than this: the server keeps it on disk until the drain confirms",
    )
    lag_alert_seconds: float = Field(
        default=600.0,
        gt=0,
        description="alert when the oldest buffered change waited this long, whatever the reason "
        "(once, and a resolved message when it clears)",
    )

    @property
    def run_timeout_seconds(self) -> float:
        return self.max_runtime_seconds or self.max_run_seconds + 300

    @property
    def always_following(self) -> bool:
        return self.follow_seconds is None

    @model_validator(mode="after")
    def _handover_fits(self) -> BufferSensorSpec:
        if self.always_following and self.handover_seconds >= self.max_run_seconds:
            raise ValueError(
                f"handover_seconds ({self.handover_seconds:g}) must be below max_run_seconds "
                f"({self.max_run_seconds:g}): each run's successor is requested that long before its end"
            )
        return self


class ScheduleSpec(Strict):
    cron: str | None = Field(default=None, description="default: shortly after each window closes")
    timezone: str = "UTC"
    catch_up: bool = Field(
        default=True,
        description="a sensor syncs every closed window without a materialization (failed runs, "
        "ticks missed while the daemon was down); false leaves them to you",
    )
    stale_after: timedelta | None = Field(
        default=None,
        ge=timedelta(minutes=1),
        description="the index asset is stale (FAIL in the UI's asset health) when no window was synced "
        "for this long; default: one window plus an hour (docs/operating.md#freshness)",
    )


TRANSFORM_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")


class TransformSpec(Strict):
    """The spec's own documents stage (docs/configuration.md, `transform`)."""

    pandas: str = Field(
        description="'module.path:function', a DataFrame -> DataFrame callable run once per batch on "
        "the documents' fields (key fields restored afterwards); needs sync-pipeline[pandas]"
    )

    @field_validator("pandas")
    @classmethod
    def _callable_path(cls, value: str) -> str:
        if not TRANSFORM_PATH.match(value):
            raise ValueError(f"must be 'module.path:function', not {value!r}")
        return value


class RetrySpec(Strict):
    """Transient ES errors (429, 502-504, connection, timeout): backoff with full jitter."""

    attempts: int = Field(default=8, ge=1, le=50)
    initial_seconds: float = Field(default=0.5, gt=0)
    max_backoff_seconds: float = Field(default=30.0, gt=0)
    max_total_seconds: float = Field(default=300.0, gt=0)


def _field_key(name: str, info: ValidationInfo) -> str:
    """A `fields` key naming a relation's column must name a relation of the source (and a
    column it reads, when it lists them): refused here, with the key's own line, rather than
    when the first command meets the database."""
    source = info.data.get("source")  # absent when the source itself is invalid
    problem = source.field_path_problem(name) if isinstance(source, SourceSpec) else None
    if problem:
        raise ValueError(problem)
    return name


FieldKey = Annotated[str, AfterValidator(_field_key)]


class SyncSpec(Strict):
    name: str
    source: SourceSpec
    target: TargetSpec
    partitions: PartitionSpec
    fields: dict[FieldKey, FieldSpec] = Field(default_factory=dict)
    transform: TransformSpec | None = None
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    naive_timezone: str = Field(default="UTC", description="zone for timestamp columns without one")
    retry: RetrySpec = Field(default_factory=RetrySpec)
    buffer_sensor: BufferSensorSpec = Field(default_factory=BufferSensorSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    reconcile: Reconcile = Field(
        default="count",
        description="after each load, compare the window in PostgreSQL and ES: 'count' (one count "
        "query per side), 'hash' (count plus a content hash: re-reads the window on both sides), 'off'",
    )

    capture: Capture = Field(
        default="triggers",
        description="how changes reach the drain: 'triggers' (a buffer row written by a trigger in the "
        "writer's transaction; any server) or 'logical' (the spec's replication slot, decoded with "
        "pgoutput; needs wal_level = logical, costs the writers nothing). A file-level `capture:` "
        "sets it for every spec of the file (one database)",
    )
    on_mapping_change: OnMappingChange = Field(
        default="fail",
        description="when the index's mapping conflicts with the spec's (a type, an analyzer, a "
        "dropped field): 'fail' stops the sync before any write; 'rebuild' runs the zero-downtime "
        "rebuild into a new index and swaps the alias",
    )

    @field_validator("reconcile", mode="before")
    @classmethod
    def _reconcile_bool(cls, value: object) -> object:
        # `reconcile: true/false` from before the modes existed
        if value is True:
            return "hash"
        if value is False:
            return "off"
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SPEC_NAME.match(value):
            raise ValueError("must match [a-z][a-z0-9_]* (it becomes a Dagster asset key)")
        return value

    @field_validator("naive_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as 'Europe/Berlin')"
            ) from None
        return value

    @model_validator(mode="after")
    def _keys_survive_mapping(self) -> SyncSpec:
        for column in (*self.source.primary_key, self.source.updated_at):
            if self.fields.get(column, FieldSpec()).drop:
                raise ValueError(f"column '{column}' is a key or updated_at column and cannot be dropped")
        # a field's object: the document for a column, the relation's object for a dotted name
        targets = [(c.rpartition(".")[0], self.field_name(c)) for c in self.fields if not self.fields[c].drop]
        duplicated = {t for t in targets if targets.count(t) > 1}
        if duplicated:
            names = sorted(f"{where}.{name}" if where else name for where, name in duplicated)
            raise ValueError(f"several columns map to the same field: {names}")
        return self

    @property
    def cron(self) -> str:
        return self.schedule.cron or DEFAULT_CRON_BY_GRAIN[self.partitions.grain]

    def field_name(self, column: str) -> str:
        mapped = self.fields.get(column)
        return mapped.rename if mapped and mapped.rename else column

    @property
    def key_fields(self) -> list[str]:
        return [self.field_name(c) for c in self.source.primary_key]


class SpecFile(Strict):
    capture: Capture | None = None  # every spec's default (specs of one file share a database)
    specs: Annotated[list[SyncSpec], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _file_capture(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("capture") is not None and isinstance(raw.get("specs"), list):
            specs = [
                {"capture": raw["capture"], **spec} if isinstance(spec, dict) else spec
                for spec in raw["specs"]
            ]
            return {**raw, "specs": specs}
        return raw

    @model_validator(mode="after")
    def _unique_names(self) -> SpecFile:
        names = [s.name for s in self.specs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"spec names must be unique; repeated: {dupes}")
        return self


class _SpecLoader(yaml.SafeLoader):
    """YAML 1.1 reads on/off/yes/no as booleans, so a relation's `on:` would become the key True:
    only true/false are booleans here."""


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


# a loader step run on the parsed YAML before validation (io/models.py resolves `source.model`):
# the data to validate, and the problems found, each at its key path
Expand = Callable[[dict[str, Any]], tuple[dict[str, Any], list[tuple[KeyPath, str]]]]


def parse_specs(text: str, origin: str = "<string>", expand: Expand | None = None) -> list[SyncSpec]:
    try:
        raw = yaml.load(text, Loader=_SpecLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{origin}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{origin}: expected a mapping with a 'specs:' list at the top")
    if expand is not None:
        raw, found = expand(raw)
        if found:  # reported like pydantic's own errors: the key's line, path and spec
            errors = [{"loc": key, "type": "value_error", "msg": problem} for key, problem in found]
            raise _invalid(origin, describe(SpecFile, raw, errors, key_lines(text, _SpecLoader), origin))
    try:
        return SpecFile.model_validate(raw).specs
    except ValidationError as exc:
        # each problem as `sync.yaml:12: specs[0].source.primery_key: unknown key; did you mean …`
        errors = exc.errors()
        raise _invalid(
            origin, describe(SpecFile, raw, errors, key_lines(text, _SpecLoader), origin)
        ) from None


def _invalid(origin: str, problems: list[str]) -> SpecError:
    count = f"{len(problems)} problems" if len(problems) != 1 else "1 problem"
    return SpecError("\n".join([f"{origin}: invalid sync spec ({count})", *problems]))


def load_specs(path: str | Path, expand: Expand | None = None) -> list[SyncSpec]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: sync spec file not found (set --config or SYNC_CONFIG)") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read sync spec file: {exc.strerror}") from None
    return parse_specs(text, origin=str(path), expand=expand)


def get_spec(specs: list[SyncSpec], name: str) -> SyncSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise SpecError(f"no spec named '{name}' (known: {', '.join(s.name for s in specs)})")
