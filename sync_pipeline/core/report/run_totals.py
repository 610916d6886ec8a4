"""A run's totals, folded from what its assets reported: the one run summary.

The CLI (from an in-process result), `history` and the alerts (from the
instance's event log) and the Dagster API client (from GraphQL events) each
read materializations their own way, then fold them here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync_pipeline.core import naming
from sync_pipeline.core.load.counts import Counted, Counts


@dataclass
class RunTotals(Counted):
    counts: Counts = field(default_factory=Counts)
    extracted: int = 0
    claimed: int = 0
    seconds: float = 0.0  # load seconds, summed over the run's index/changes assets


def _number(value: Any) -> float:
    value = getattr(value, "value", value)  # a Dagster MetadataValue, or a plain number
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def fold_materializations(materializations: Iterable[tuple[str, Mapping[str, Any]]]) -> RunTotals:
    """Totals from (asset key, metadata) pairs. A range run repeats the same totals once per
    partition, so each asset counts once."""
    totals = RunTotals()
    seen: set[str] = set()
    for asset, metadata in materializations:
        if asset in seen:
            continue
        seen.add(asset)
        if naming.is_extract_asset(asset):
            totals.extracted += int(_number(metadata.get(naming.ROW_COUNT)))
        elif naming.is_load_asset(asset):
            totals.counts += Counts.read(metadata, _number)
            totals.claimed += int(_number(metadata.get("claimed")))
            totals.seconds += _number(metadata.get("seconds"))
    return totals


@dataclass(frozen=True)
class BatchRecord(Counted):
    """One bulk batch of a run, as the run recorded it (`history --run ID --batches`)."""

    asset: str
    batch: int
    counts: Counts = field(default_factory=Counts)
    seconds: float = 0.0
    docs_per_s: float = 0.0


def _batch_record(asset: str, values: Mapping[str, Any]) -> BatchRecord:
    counts = Counts.read(values, _number)
    speed = {name: _number(values.get(name)) for name in ("seconds", "docs_per_s")}
    return BatchRecord(asset, int(_number(values.get("batch"))), counts, **speed)


def fold_batches(observations: Iterable[tuple[str, Mapping[str, Any]]]) -> list[BatchRecord]:
    """Every batch of a run from its observations' (asset key, metadata), asset by asset in the
    order they first reported. A full sync's load records them all in one table
    (`naming.BATCH_TABLE`, its rows as mappings; listed by batch number, as concurrent requests
    finish out of order); a drain or a rebuild one observation per batch, listed as they came (a
    following drain numbers each round's batches from 1). A full sync's progress observations
    (sums of several batches: `first_batch`) are not batches, and its observations of a single
    batch with a problem repeat a row of its table."""
    tables: dict[str, list[BatchRecord]] = {}
    singles: dict[str, list[BatchRecord]] = {}
    order: dict[str, None] = {}
    for asset, metadata in observations:
        if naming.BATCH_TABLE in metadata:
            rows = (_batch_record(asset, row) for row in metadata[naming.BATCH_TABLE])
            tables.setdefault(asset, []).extend(sorted(rows, key=lambda b: b.batch))
        elif "batch" in metadata and "first_batch" not in metadata:
            singles.setdefault(asset, []).append(_batch_record(asset, metadata))
        else:
            continue
        order.setdefault(asset)
    return [batch for asset in order for batch in tables.get(asset) or singles[asset]]
