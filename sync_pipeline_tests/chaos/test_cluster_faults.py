"""A three-node cluster with one replica, as small production clusters run: a data node killed
mid-load and restarted, the cluster red meanwhile (real servers: `services up --nodes 3`)."""

from __future__ import annotations

import pytest

from sync_pipeline.io.search import search_client
from sync_pipeline.io.search.indices import drop_target
from sync_pipeline_devtools import services
from sync_pipeline_devtools.services.cluster import kill_node, wait_status
from sync_pipeline_tests.conftest import wait_until
from sync_pipeline_tests.support.faults import cli_sync, doc_count, record, seed


@pytest.fixture(scope="module")
def cluster(service_urls):
    members = services.up_cluster()
    yield members
    services.down_cluster()  # three JVMs: not kept for the rest of the suite


def test_a_data_node_killed_mid_load_and_restarted_loses_nothing(scenario, tmp_path, cluster, monkeypatch):
    coordinator, victim = cluster[0], cluster[-1]
    es = search_client(coordinator.url)
    seed(scenario, 30_000)
    config = scenario.spec_file(tmp_path, batch_size="1000")
    # three primaries spread over the nodes, one replica each: the victim holds some of them
    config.write_text(
        config.read_text().replace(
            f"index: {scenario.index}", f"index: {scenario.index}\n      shards: 3\n      replicas: 1"
        )
    )
    monkeypatch.setenv("SYNC_ES_URL", coordinator.url)
    try:
        proc = cli_sync(config, env={"SYNC_ES_URL": coordinator.url})
        wait_until(lambda: doc_count(es, scenario.index) > 0, 180, "the load to start")
        kill_node(victim)
        # the load keeps the index's replica (drains write to the same index meanwhile): the
        # victim's shards are promoted or re-assigned elsewhere, the cluster yellow meanwhile
        status = wait_status(coordinator, ("red", "yellow"), 60)
        services.restart_cluster_node(victim)
        output = proc.communicate(timeout=900)[0]
        assert proc.returncode == 0, output[-3000:]
        wait_status(coordinator, ("green",), 180)  # the replica restored once the node is back
        settings = es.indices.get_settings(index=scenario.index, name="index.number_of_replicas").body
        assert {s["settings"]["index"]["number_of_replicas"] for s in settings.values()} == {"1"}
        record(f"cluster: data node killed mid-load ({status} meanwhile), restarted", 30_000, scenario.spec())
    finally:
        drop_target(es, scenario.index)
