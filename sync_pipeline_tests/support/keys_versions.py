"""The spec of a key-type scenario (one key column of a given type)."""

from __future__ import annotations

from sync_pipeline.core.spec.model import parse_specs


def _spec(table: str, key: str, extra: str = ""):
    return parse_specs(
        f"""
specs:
  - name: {table}
    source: {{table: {table}, primary_key: {key}, updated_at: updated_at}}
    target: {{index: {table}}}
    partitions: {{grain: month, start: "2026-01-01"}}
{extra}
"""
    )[0]
