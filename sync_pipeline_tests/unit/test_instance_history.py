"""The shared Dagster instance (PostgreSQL storage, queued runs) and `sync-pipeline history`."""

import yaml

from sync_pipeline.apps.instance import dagster_storage_url
from sync_pipeline_tests.support.paths import ROOT


def test_storage_url_keeps_credentials_and_selects_the_schema():
    url = dagster_storage_url("postgresql+psycopg://u:p%40ss@h:5432/db")
    assert url == "postgresql://u:p%40ss@h:5432/db?options=-csearch_path%3Ddagster"


def test_instance_config_queues_one_load_and_two_drains_per_spec():
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "SYNC_DAGSTER_PG_URL"}
    coordinator = config["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    load, drain = coordinator["config"]["tag_concurrency_limits"]
    assert load == {"key": "sync_pipeline/load", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    # a following drain's successor starts before it ends
    assert drain == {"key": "sync_pipeline/drain", "value": {"applyLimitPerUniqueValue": True}, "limit": 2}
