"""bench.check fails a result that lacks a section (issue 27's done-when), or whose key-range run
drifted: checked against the committed result of the issue-27 run, one section taken out at a time."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from bench import check

RESULT = Path(__file__).resolve().parents[2] / "bench" / "results" / "2026-12-07-issue27.json"
SECTIONS = ["joined", "fanout", "ranges"]


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads(RESULT.read_text())


def test_the_committed_result_carries_every_section(report):
    for section in SECTIONS:
        assert not [p for p in check.problems(report) if p.startswith(section)], section


@pytest.mark.parametrize("section", SECTIONS)
def test_a_result_without_a_section_fails_the_check(report, section):
    without = copy.deepcopy(report)
    del without[section]
    added = set(check.problems(without)) - set(check.problems(report))
    assert any(p.startswith(section) for p in added), added


def test_a_key_range_run_that_drifted_fails_the_check(report):
    drifted = copy.deepcopy(report)
    drifted["ranges"]["drift"] = 3
    assert "ranges.drift: expected 0 after the resumed run, got 3" in check.problems(drifted)


def test_the_cli_fixed_cost_figure_is_required(report):
    without = copy.deepcopy(report)
    del without["cli_fixed_cost_s"]
    assert "cli_fixed_cost_s: expected a positive number, got None" in check.problems(without)
