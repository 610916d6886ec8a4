"""updated_at windows: which rows a partition owns, on both sides.

A partition [start, end) reads the rows whose updated_at falls in it. The
first partition also owns rows older than its start and rows with a NULL
updated_at; the newest (still open) partition owns rows stamped in the future.
Together the partitions therefore cover every row of the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Window:
    """[start, end) on updated_at; an open side means "everything beyond it"."""

    start: datetime | None
    end: datetime | None
    include_null_updated_at: bool = False


def window_between(
    start: datetime,
    end: datetime,
    first_start: datetime | None,
    last_end: datetime | None,
    lookback: timedelta = timedelta(0),
) -> Window:
    """The window a run over [start, end) reads, given where the first partition starts and
    the last one ends (None: no partitions). `lookback` widens the read backwards for late
    commits; the partition (and its staging key) stays the same."""
    lower_open = first_start is None or start <= first_start
    upper_open = last_end is None or end >= last_end
    return Window(
        start=None if lower_open else start - lookback,
        end=None if upper_open else end,
        include_null_updated_at=lower_open,
    )


def window_key(start: datetime, end: datetime) -> str:
    """The staging file name of a run over [start, end)."""
    return f"{start:%Y%m%dT%H%M}_{end:%Y%m%dT%H%M}"


def _es_instant(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def es_window_query(field_name: str, window: Window) -> dict[str, Any]:
    """The same rows as the SQL window predicate, as an Elasticsearch query on the document's
    updated_at field."""
    bounds: dict[str, str] = {}
    if window.start is not None:
        bounds["gte"] = _es_instant(window.start)
    if window.end is not None:
        bounds["lt"] = _es_instant(window.end)
    in_range: dict[str, Any] = (
        {"range": {field_name: bounds}} if bounds else {"exists": {"field": field_name}}
    )
    if not window.include_null_updated_at:
        return in_range
    missing = {"bool": {"must_not": {"exists": {"field": field_name}}}}
    return {"bool": {"should": [in_range, missing], "minimum_should_match": 1}}
