"""Fixtures shared by the unit tests of the Flask blueprint and the Flask extension."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "sync.yaml"
    path.write_text(
        """
specs:
  - name: shop
    source: {table: shop, primary_key: id, updated_at: updated_at}
    target: {index: shop}
    partitions: {grain: month, start: "2026-01-01"}
"""
    )
    return path
