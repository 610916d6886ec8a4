"""A snapshot of every name the demo spec file becomes in Dagster.

Asset keys, checks, jobs (with their tags), schedules, sensors and resources
are what a user's run history and UI bookmarks hang on: renaming one by
accident must show up in review as a change to snapshots/definitions.json.
After an intended change:
`SYNC_UPDATE_SNAPSHOTS=1 pytest sync_pipeline_tests/unit/test_definitions_snapshot.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from sync_pipeline import settings
from sync_pipeline.core.spec.model import load_specs
from sync_pipeline.defs import build_definitions
from sync_pipeline.defs.resources import resources_for
from sync_pipeline_tests.support.paths import ROOT

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "definitions.json"


def describe(defs: dg.Definitions) -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    repository = defs.get_repository_def()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitioned": type(node.partitions_def).__name__ if node.partitions_def else None,
            "tags": dict(sorted(node.tags.items())),
            "freshness": _freshness(node.freshness_policy),
        }
    return {
        "assets": assets,
        "checks": sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys),
        "jobs": {
            job.name: dict(sorted(job.tags.items()))
            for job in sorted(repository.get_all_jobs(), key=lambda j: j.name)
            if not job.name.startswith("__")
        },
        "schedules": {
            s.name: {"job": s.job_name, "cron": s.cron_schedule, "timezone": s.execution_timezone}
            for s in sorted(repository.schedule_defs, key=lambda s: s.name)
        },
        "sensors": sorted(s.name for s in repository.sensor_defs),
        "resources": sorted(defs.resources or {}),
    }


def _freshness(policy: dg.FreshnessPolicy | None) -> dict[str, float | None] | None:
    """A time-window freshness policy as its windows in seconds (what the UI's health shows)."""
    if policy is None:
        return None
    warn = getattr(policy, "warn_window", None)
    return {
        "fail_seconds": policy.fail_window.to_timedelta().total_seconds(),
        "warn_seconds": warn.to_timedelta().total_seconds() if warn else None,
    }


def test_definitions_of_the_demo_spec_file_match_the_snapshot():
    config = settings.load({})
    defs = build_definitions(load_specs(ROOT / "sync.yaml"), resources_for(config))
    current = describe(defs)
    if os.environ.get("SYNC_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert current == json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def _dagster_tool(*args: str) -> subprocess.CompletedProcess:
    # from the checkout, as a newcomer runs them: no DAGSTER_HOME, no servers
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "SYNC_PG_URL", "SYNC_ES_URL")}
    return subprocess.run(
        [str(Path(sys.executable).parent / args[0]), *args[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dagster_validates_the_workspace_and_dg_checks_the_project():
    validate = _dagster_tool("dagster", "definitions", "validate", "-w", "workspace.yaml")
    assert validate.returncode == 0, validate.stderr[-2000:]
    assert "All code locations passed validation" in validate.stderr + validate.stdout
    check = _dagster_tool("dg", "check", "defs")
    assert check.returncode == 0, check.stderr[-2000:]
    assert "All definitions loaded successfully" in check.stdout + check.stderr


def test_pyproject_and_workspace_name_the_same_code_location():
    import tomllib

    import yaml

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    assert project["dagster"]["module_name"] == workspace["module_name"] == "sync_pipeline.definitions"
    assert project["dg"]["project"]["code_location_target_module"] == workspace["module_name"]
    assert project["dagster"]["code_location_name"] == workspace["location_name"] == "sync_pipeline"
