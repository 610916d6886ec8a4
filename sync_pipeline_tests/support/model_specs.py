"""Spec texts for the model-derived specs (`source.model`) and the Flask example's path."""

from __future__ import annotations

from sync_pipeline_tests.support.paths import ROOT

EXAMPLE = ROOT / "examples" / "flask_app"
LINES = "sync_pipeline_tests.support.model_shop:OrderLine"


def lines_yaml(relations: str, extra: str = "", model: str = LINES) -> str:
    return f"""specs:
  - name: lines
    source:
      model: "{model}"
      schema: shop_x
{extra}      relations: {relations}
    target: {{index: lines}}
    partitions: {{grain: month, start: "2026-01-01"}}
"""
