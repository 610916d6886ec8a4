"""docker-compose.yml: the services a Docker user gets, checked without a Docker engine."""

import re
import shutil
import subprocess

import pytest
import yaml

from sync_pipeline_tests.support.paths import ROOT


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_official_images_and_the_code_location():
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["elasticsearch"]["image"].startswith("docker.elastic.co/elasticsearch/elasticsearch:9.")
    webserver, daemon = services["dagster-webserver"], services["dagster-daemon"]
    assert "workspace.yaml" in " ".join(map(str, webserver["command"]))
    assert "dagster-daemon" in " ".join(map(str, daemon["command"]))
    for service in (webserver, daemon):
        environment = service["environment"]
        assert environment["SYNC_PG_URL"].endswith("@postgres:5432/sync_pipeline")
        assert environment["SYNC_ES_URL"] == "http://elasticsearch:9200"


def test_docker_compose_config_accepts_the_file():
    docker = shutil.which("docker")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True) if docker else None
    if probe is None or probe.returncode != 0:
        pytest.skip("no `docker compose` plugin on this machine (the Docker client alone cannot validate)")
    for files in ([], ["-f", "docker-compose.yml", "-f", "docker-compose.opensearch.yml"]):
        result = subprocess.run(
            [docker, "compose", *files, "config", "-q"], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr


def test_the_plugin_override_builds_the_same_elasticsearch_version_with_the_cjk_plugins():
    plain = compose()["services"]["elasticsearch"]["image"].rsplit(":", 1)[1]
    override = yaml.safe_load((ROOT / "docker-compose.plugins.yml").read_text())["services"]["elasticsearch"]
    assert override["build"]["args"]["ES_VERSION"] == plain  # a plugin must match its server exactly
    dockerfile = (ROOT / override["build"]["context"] / "Dockerfile").read_text()
    assert f"ARG ES_VERSION={plain}" in dockerfile
    assert "elasticsearch-plugin install --batch analysis-smartcn analysis-icu" in dockerfile


def test_the_secure_override_turns_security_on_with_the_same_settings_names():
    secure = yaml.safe_load((ROOT / "docker-compose.secure.yml").read_text())["services"]
    es = secure["elasticsearch"]["environment"]
    assert es["xpack.security.enabled"] == "true" and es["xpack.security.http.ssl.enabled"] == "true"
    for service in ("dagster-webserver", "dagster-daemon"):
        environment = secure[service]["environment"]
        assert environment["SYNC_ES_URL"] == "https://elasticsearch:9200"
        assert environment["SYNC_ES_CA_CERTS"] == "/certs/ca/ca.crt"
        assert environment["SYNC_ES_PASSWORD"] == "${SYNC_ES_PASSWORD}"  # from .env, never inline
        assert environment["SYNC_PG_PASSWORD"] == "${SYNC_PG_PASSWORD}"
    example = (ROOT / ".env.example").read_text()
    assert {"SYNC_PG_PASSWORD", "SYNC_ES_PASSWORD"} <= {
        line.split("=")[0] for line in example.splitlines() if "=" in line
    }
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_nothing_runs_as_a_superuser_or_root_and_no_secret_enters_the_image():
    """The role sync_pipeline connects as is made by the init script without SUPERUSER (the
    official image makes POSTGRES_USER one); the image runs as a user, from a pinned base, and
    .env (the passwords) is never copied into it."""
    for name in ("docker-compose.yml", "docker-compose.secure.yml"):
        postgres = yaml.safe_load((ROOT / name).read_text())["services"]["postgres"]["environment"]
        assert "POSTGRES_USER" not in postgres  # the superuser stays `postgres`, used by the init only
    init = compose()["configs"]["init_roles"]["content"]
    assert "CREATE ROLE sync LOGIN NOSUPERUSER" in init and "OWNER sync" in init
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    base = next(line for line in dockerfile if line.startswith("FROM "))
    assert base.count(".") >= 2 and "-slim-" in base  # python:3.11.P-slim-<release>
    users = [line.split()[1] for line in dockerfile if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".env.*" in ignored


class _ComposeLoader(yaml.SafeLoader):
    """Compose's merge tags (`!override`, `!reset`) read as the plain values they carry."""


for _tag in ("!override", "!reset"):
    _ComposeLoader.add_constructor(
        _tag,
        lambda loader, node: (
            loader.construct_mapping(node)
            if isinstance(node, yaml.MappingNode)
            else loader.construct_sequence(node)
            if isinstance(node, yaml.SequenceNode)
            else loader.construct_scalar(node)
        ),
    )


def test_the_opensearch_override_replaces_the_search_server_and_none_of_its_elasticsearch_settings():
    override = yaml.load((ROOT / "docker-compose.opensearch.yml").read_text(), Loader=_ComposeLoader)
    search = override["services"]["elasticsearch"]
    assert search["image"].startswith("opensearchproject/opensearch:3.")
    assert not any(key.startswith(("xpack.", "ES_")) for key in search["environment"])
    assert search["environment"]["DISABLE_SECURITY_PLUGIN"] == "true"
    text = (ROOT / "docker-compose.opensearch.yml").read_text()
    assert "environment: !override" in text and "volumes: !override" in text
    for service in ("dagster-webserver", "dagster-daemon"):
        assert override["services"][service]["environment"]["SYNC_SEARCH_BACKEND"] == "opensearch"
    # the base file's URL still names the search service the override replaces
    assert (
        compose()["services"]["dagster-webserver"]["environment"]["SYNC_ES_URL"]
        == "http://elasticsearch:9200"
    )


def _dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's stages, each its instructions (continuation lines joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("FROM "):
            stages.append([line])
        elif line and not line.startswith("#") and stages:
            stages[-1].append(line)
    return stages


def test_the_image_installs_the_wheel_with_the_lock_and_runs_nothing_from_source():
    *builds, image = _dockerfile_stages()
    assert builds, "a stage of its own builds the wheel"
    assert any("pip wheel" in line for stage in builds for line in stage)
    copies = [line.split()[1:] for line in image if line.startswith("COPY ")]
    sources = [word for words in copies for word in words[:-1] if not word.startswith("--")]
    assert "." not in sources and not any(s.startswith("sync_pipeline") for s in sources), copies
    assert any(words[0].startswith("--from=") for words in copies)  # the wheel, from the build stage
    (install,) = [line for line in image if line.startswith("RUN ") and "pip install" in line]
    assert "-c /tmp/constraints.txt" in install and ".whl" in install and " -e " not in install


def test_the_image_uses_the_packaged_instance_config_and_the_settings_names():
    """The image's DAGSTER_HOME/dagster.yaml is the package's own (deploy/dagster.yaml in the
    checkout): run queue limits, run monitoring and threaded sensors hold in Docker too, and the
    variables it reads are the ones docker-compose.yml sets, under the names the settings know."""
    from sync_pipeline import settings
    from sync_pipeline.settings import search, values

    image = " ".join(_dockerfile_stages()[-1])
    assert re.search(r'ln -s "\$resources/dagster.yaml" "\$DAGSTER_HOME/dagster.yaml"', image)
    assert not re.search(r"(>|tee)\s*\S*dagster\.yaml", image), "the image writes a dagster.yaml of its own"
    instance = (ROOT / "deploy" / "dagster.yaml").read_text()
    wanted = set(re.findall(r"env: (\w+)", instance))
    assert wanted == {"SYNC_DAGSTER_PG_URL"}
    known = {
        value
        for module in (settings, search, values)
        for value in vars(module).values()
        if isinstance(value, str) and value.startswith("SYNC_")
    }
    for name in ("docker-compose.yml", "docker-compose.secure.yml", "docker-compose.opensearch.yml"):
        services = yaml.load((ROOT / name).read_text(), Loader=_ComposeLoader)["services"]
        for service in ("dagster-webserver", "dagster-daemon"):
            environment = services[service].get("environment") or {}
            assert set(environment) <= known, (name, service, set(environment) - known)
            if name != "docker-compose.opensearch.yml":
                assert wanted <= set(environment), (name, service)
