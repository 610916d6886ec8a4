"""One key encoding on every path, and versions ordered by the read (real servers).

Each key type goes sync → drain (update) → delete → verify; the time-zone and clock cases
show a version that a column the application controls cannot fool.
"""

from __future__ import annotations

from sync_pipeline.core.specs import parse_specs


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
