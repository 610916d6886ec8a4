"""What the CLI prints: tables, run summaries, and the exit code they imply."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # runner imports Dagster: not for every command that prints
    from sync_pipeline.apps.cli.runner import SyncSummary

EXIT_OK, EXIT_DRIFT, EXIT_USAGE = 0, 1, 2


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *map(line, cells[1:])])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


SUMMARY_HEADERS = [
    "spec",
    "partitions",
    "extracted",
    "indexed",
    "deleted",
    "stale",
    "conflicts",
    "failed",
    "dead letters",
    "batches",
    "wall s",
    "docs/s",
    "load docs/s",
]


def print_sync_summary(summary: SyncSummary, es_count: int | None = None) -> None:
    headers = list(SUMMARY_HEADERS)
    row: list[Any] = [
        summary.spec,
        summary.partitions,
        summary.extracted,
        *summary.counts.as_dict().values(),
        summary.wall_seconds,
        summary.docs_per_second,
        summary.load_docs_per_second,
    ]
    if es_count is not None:
        headers.append("docs in ES")
        row.append(es_count)
    print(format_table(headers, [row]))
    print(
        f"run {summary.run_id} — {'succeeded' if summary.success else 'FAILED'}"
        f" (see it with `sync-pipeline ui`, DAGSTER_HOME={os.environ.get('DAGSTER_HOME')})"
    )
    if summary.error:
        print(f"error: {summary.error}", file=sys.stderr)


def sync_exit(summary: SyncSummary) -> int:
    ok = summary.success and summary.failed == 0 and summary.dead_lettered == 0 and summary.conflicts == 0
    return EXIT_OK if ok else EXIT_DRIFT


def first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
