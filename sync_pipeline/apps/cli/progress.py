"""A run's progress on stderr: a bar with rate and ETA on a terminal, plain lines elsewhere.

The listeners take ops/progress.py's events (`extracted` rows, `batch` docs/failed) and a
`finished` one. On a terminal, tqdm (already a dependency of Dagster's, pinned in the lock)
draws the bar; in a pipe, a log file, CI, or with --json (stdout is a document; stderr may be
read by a script), a line now and then with the same counts and no control characters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TextIO

from tqdm import tqdm

from sync_pipeline.io.logs import LOGGER, json_enabled, log_fields

# a plain line at most this often (seconds): a log should show that a long run moves, not flood
LINE_INTERVAL = 10.0


class _Progress:
    """The counts both forms show; a context manager that finishes the display on exit."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self.total = self.done = self.failed = 0
        self.finished = False

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self("finished", {})

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if self.finished:
            return
        if event == "extracted":
            self.total += data["rows"]
            self.extracted()
        elif event == "batch":
            self.done += data["docs"]
            self.failed += data["failed"]
            self.batch(data["docs"])
        elif event == "finished":
            self.finished = True
            self.finish()

    def extracted(self) -> None: ...

    def batch(self, docs: int) -> None: ...

    def finish(self) -> None: ...


class BarProgress(_Progress):
    """tqdm's bar: documents written of those extracted so far, rate, ETA, failures."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(stream, clock)
        self.bar = tqdm(
            total=None, file=stream, unit=" docs", desc="  indexing", dynamic_ncols=True, leave=True
        )

    def extracted(self) -> None:
        self.bar.total = max(self.total, self.done)
        self.bar.refresh()

    def batch(self, docs: int) -> None:
        if self.bar.total is not None and self.done > self.bar.total:
            self.bar.total = self.done
        self.bar.set_postfix_str(f"failed {self.failed:,}", refresh=False)
        self.bar.update(docs)

    def finish(self) -> None:
        self.bar.close()


class LineProgress(_Progress):
    """`progress: 12,000/100,000 docs (12%), 4,100 docs/s, ETA 21s, failed 0`, at most every
    `interval` seconds, and a last one at the end when any was written."""

    def __init__(
        self, stream: TextIO, clock: Callable[[], float] = time.monotonic, interval: float = LINE_INTERVAL
    ) -> None:
        super().__init__(stream, clock)
        self.interval = interval
        self.last = self.started
        self.lines = 0

    def batch(self, docs: int) -> None:
        if self.clock() - self.last >= self.interval:
            self.write()

    def finish(self) -> None:
        if self.lines:
            self.write()

    def write(self) -> None:
        self.last = now = self.clock()
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        total = max(self.total, self.done)
        parts = [
            f"{self.done:,}/{total:,} docs ({100 * self.done / total:.0f}%)"
            if total
            else f"{self.done:,} docs"
        ]
        parts.append(f"{rate:,.0f} docs/s")
        if total and rate and self.done < total:
            parts.append(f"ETA {_duration((total - self.done) / rate)}")
        parts.append(f"failed {self.failed:,}")
        if json_enabled():  # SYNC_LOG_FORMAT=json: the same counts as fields of one object
            fields = {"docs": self.done, "total": total, "docs_per_s": round(rate, 1), "failed": self.failed}
            log_fields(logging.getLogger(f"{LOGGER}.cli"), "progress: " + ", ".join(parts), **fields)
        else:
            self.stream.write("progress: " + ", ".join(parts) + "\n")
            self.stream.flush()
        self.lines += 1


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_for(stream: TextIO, *, plain: bool = False) -> _Progress:
    """The bar on a terminal; plain lines when `stream` is not one, or with `plain` (--json)."""
    isatty = getattr(stream, "isatty", None)
    if not plain and isatty is not None and isatty():
        return BarProgress(stream)
    return LineProgress(stream)
