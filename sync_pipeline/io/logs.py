"""Log lines as JSON objects (SYNC_LOG_FORMAT=json), one per line, secrets redacted.

What a log pipeline (Loki, Elasticsearch, CloudWatch …) can parse without a grok pattern:
every line is an object with `time`, `level`, `logger` and `message`, plus whatever is known
where it was logged — the command, run id, spec, partition, batch, counts, durations. Every
text in it goes through core/report/redact first, as the text output does.

`JsonFormatter` formats Python log records (the CLI's, and Dagster's console logger's through
defs/loggers.py); `JsonLines` stands in for the CLI's stderr, so what a command writes there
as plain text (progress, warnings, errors) also leaves as one object per line.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from sync_pipeline.core.report.redact import redact

LOGGER = "sync_pipeline"
# structured fields of a record: `log.info("…", extra={FIELDS: {"spec": …, "indexed": …}})`
FIELDS = "sync_fields"


def _safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return redact(str(value))


def json_line(
    fields: Mapping[str, Any],
    level: str = "info",
    logger: str = LOGGER,
    message: str = "",
    at: float | None = None,
) -> str:
    """One log object as a line of JSON (no newline); `at`: its time (default now)."""
    when = datetime.now(UTC) if at is None else datetime.fromtimestamp(at, UTC)
    head = {
        "time": when.isoformat(timespec="milliseconds"),
        "level": level,
        "logger": logger,
        "message": message,
    }
    return json.dumps(
        _safe({**head, **{k: v for k, v in fields.items() if v is not None}}), ensure_ascii=False
    )


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object; `fields` says what else the record knows."""

    def __init__(self, context: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.context = context if context is not None else {}

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        return dict(getattr(record, FIELDS, None) or {})

    def message(self, record: logging.LogRecord) -> str:
        return record.getMessage()

    def format(self, record: logging.LogRecord) -> str:
        fields = {**self.context, **self.fields(record)}
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            lines = str(error).strip().splitlines()
            fields["error"] = f"{type(error).__name__}: {lines[0] if lines else ''}"
        return json_line(fields, record.levelname.lower(), record.name, self.message(record), record.created)


def is_json_object(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


class JsonLines(io.TextIOBase):
    """A text stream that writes each line as a JSON object: a line that already is one passes
    as it is, any other becomes `{"level": "warning", "message": <the line>, …context}` (what a
    command writes to stderr is something to look at: progress comes as objects of its own)."""

    def __init__(self, stream: TextIO, context: Mapping[str, Any]) -> None:
        super().__init__()
        self.stream, self.context = stream, context
        self._pending = ""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False  # never a progress bar's control characters

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():  # a prompt, written without a newline before it waits
            self._emit(self._pending)
        self._pending = ""
        self.stream.flush()

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip():
            return
        text = line if is_json_object(line) else json_line(self.context, "warning", f"{LOGGER}.cli", line)
        self.stream.write(text + "\n")


def install_cli(log_format: str, context: dict[str, Any]) -> logging.Logger:
    """The one place the CLI's log output is set up: with `json`, stderr becomes `JsonLines` and
    the `sync_pipeline` logger writes JSON objects there at INFO; with `text`, the logger stays
    silent and stderr as it is. `context` (the command, its spec…) goes into every object and
    may be added to later."""
    logger = logging.getLogger(LOGGER)
    logger.handlers.clear()
    logger.propagate = False
    if log_format != "json":
        if isinstance(sys.stderr, JsonLines):  # an earlier command of this process had json
            sys.stderr = sys.stderr.stream
        logger.addHandler(logging.NullHandler())
        return logger
    if not isinstance(sys.stderr, JsonLines):
        sys.stderr = JsonLines(sys.stderr, context)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(context))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger


def json_enabled() -> bool:
    """Whether the CLI's stderr is JSON lines (`install_cli` with json)."""
    return isinstance(sys.stderr, JsonLines)


def log_fields(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """`message` with structured fields (text output drops them; JSON carries each)."""
    logger.log(level, message, extra={FIELDS: fields})
