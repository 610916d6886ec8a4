"""The other local search servers — Elasticsearch 8, OpenSearch 2 and 3 — as the project's own
code (`services.up_search(kind)`) would start them, checked without starting one (the real
nodes: integration/test_search_servers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_pipeline.settings import SettingsError
from sync_pipeline_devtools import services
from sync_pipeline_devtools.services import distribution, java, runtime
from sync_pipeline_devtools.settings import SEARCH_KINDS, load

# ---------------------------------------------------------------------------------------------
# no servers


def test_search_ports_default_after_the_es_port() -> None:
    local = load({})
    assert [local.search_port(kind) for kind in SEARCH_KINDS] == [59200, 59230, 59240, 59250]
    assert local.search == "elasticsearch"
    moved = load({"SYNC_LOCAL_ES_PORT": "60200", "SYNC_LOCAL_OPENSEARCH_PORT": "61000"})
    assert [moved.search_port(kind) for kind in SEARCH_KINDS] == [60200, 60230, 60240, 61000]


def test_local_search_chooses_a_kind() -> None:
    assert load({"SYNC_LOCAL_SEARCH": " OpenSearch "}).search == "opensearch"
    with pytest.raises(SettingsError) as raised:
        load({"SYNC_LOCAL_SEARCH": "solr"})
    assert str(raised.value) == (
        "SYNC_LOCAL_SEARCH must be one of elasticsearch, elasticsearch8, opensearch2, opensearch, not 'solr'"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SYNC_LOCAL_ES8_PORT": "x"}, "SYNC_LOCAL_ES8_PORT='x' is not an integer"),
        ({"SYNC_LOCAL_OPENSEARCH2_PORT": "65500"}, "SYNC_LOCAL_OPENSEARCH2_PORT must be a port number"),
        ({"SYNC_LOCAL_OPENSEARCH_PORT": "0"}, "SYNC_LOCAL_OPENSEARCH_PORT must be a port number"),
    ],
)
def test_bad_search_ports_are_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(env)


def test_the_chosen_node_is_the_search_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SYNC_LOCAL_OPENSEARCH_PORT", "61250")
    monkeypatch.setenv("SYNC_LOCAL_SEARCH", "opensearch")
    assert services.local_urls().es_url == "http://127.0.0.1:61250"
    monkeypatch.delenv("SYNC_LOCAL_SEARCH")
    assert services.main(["env", "--target", "opensearch"]) == 0
    assert "export SYNC_ES_URL=http://127.0.0.1:61250" in capsys.readouterr().out.splitlines()
    monkeypatch.setenv("SYNC_LOCAL_SEARCH", "elastic")
    assert services.main(["env"]) == 1
    assert "error: SYNC_LOCAL_SEARCH must be one of" in capsys.readouterr().err
    monkeypatch.delenv("SYNC_LOCAL_SEARCH")
    with pytest.raises(services.ServiceError, match="unknown search server 'solr'"):
        services.up_search("solr")


def test_distributions_describe_each_server() -> None:
    described = {kind: distribution.search_distribution(kind) for kind in SEARCH_KINDS}
    assert described["elasticsearch8"].coordinates == (
        "org.elasticsearch.distribution.integ-test-zip:elasticsearch:8.19.8:zip"
    )
    assert (
        described["opensearch2"].coordinates
        == "org.opensearch.distribution.integ-test-zip:opensearch:2.19.6:zip"
    )
    assert (
        described["opensearch"].coordinates
        == "org.opensearch.distribution.integ-test-zip:opensearch:3.3.2:zip"
    )
    assert described["opensearch"].java_env == ("OPENSEARCH_JAVA_HOME", "JAVA_HOME")
    assert described["opensearch"].config_file == "opensearch.yml"
    assert described["elasticsearch"].dir_name == "es"  # the default node keeps its dirs
    assert len({d.dir_name for d in described.values()}) == len({d.port for d in described.values()}) == 4
    env = distribution.process_env(described["opensearch"], Path("/j"), Path("/t"), Path("/c"), Path("/h"))
    assert (env["OPENSEARCH_JAVA_HOME"], env["OPENSEARCH_PATH_CONF"], env["OPENSEARCH_TMPDIR"]) == (
        "/j",
        "/c",
        "/t",
    )


def test_java_is_chosen_within_the_distributions_range(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, version in (("java-17", "17.0.15"), ("temurin-25", "25.0.3")):
        (tmp_path / name / "bin").mkdir(parents=True)
        (tmp_path / name / "bin" / "java").touch()
        (tmp_path / name / "release").write_text(f'JAVA_VERSION="{version}"\n')
    monkeypatch.setattr(java, "JVM_DIR", tmp_path)
    monkeypatch.setattr(runtime, "_is_root", lambda: False)
    for var in ("OPENSEARCH_JAVA_HOME", "ES_JAVA_HOME", "JAVA_HOME"):
        monkeypatch.delenv(var, raising=False)
    choose = {
        kind: java.find_java_home(d.min_java, d.max_java, d.java_env, d.name).name
        for kind in SEARCH_KINDS
        if (d := distribution.search_distribution(kind))
    }
    assert choose == {
        "elasticsearch": "temurin-25",
        "elasticsearch8": "temurin-25",
        "opensearch2": "java-17",  # it enables a SecurityManager: Java 24+ refuses to start it
        "opensearch": "temurin-25",
    }
    monkeypatch.setenv("OPENSEARCH_JAVA_HOME", str(tmp_path / "temurin-25"))  # outside 2's range: ignored
    assert java.find_java_home(11, 23, ("OPENSEARCH_JAVA_HOME", "JAVA_HOME")).name == "java-17"
    (tmp_path / "java-17" / "release").unlink()
    with pytest.raises(services.ServiceError, match="OpenSearch needs Java 11 to 23"):
        java.find_java_home(11, 23, ("OPENSEARCH_JAVA_HOME", "JAVA_HOME"), "OpenSearch")
