"""The search servers the project runs locally, each described once: which integ-test zip
Maven Central has for it, which Java it runs on, its launcher, environment and config file.
Fetching (with `mvn`, into `<state>/cache/`) and unpacking go through one code path for all.

| kind             | server               | Java     | why                                                   |
| ---------------- | -------------------- | -------- | ----------------------------------------------------- |
| `elasticsearch`  | Elasticsearch 9.x    | 21+      | ES 9's minimum; runs without the SecurityManager      |
| `elasticsearch8` | Elasticsearch 8.19.8 | 17+      | ES 8's minimum; 8.18+ uses entitlements on Java 24+   |
| `opensearch2`    | OpenSearch 2.19.6    | 11 to 23 | it installs a SecurityManager, which Java 24 removed  |
| `opensearch`     | OpenSearch 3.3.2     | 21+      | OpenSearch 3's minimum (no SecurityManager any more)  |

Within its range the highest Java found is used (on this project's machines: Temurin 25 for
all but OpenSearch 2, which gets OpenJDK 17).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sync_pipeline_devtools.services.runtime import (
    ServiceError,
    _chown_tree,
    _owned_dir,
    _run,
    local_settings,
)
from sync_pipeline_devtools.settings import (
    LOCAL_ES8_PORT,
    LOCAL_ES_PORT,
    LOCAL_OPENSEARCH2_PORT,
    LOCAL_OPENSEARCH_PORT,
    SEARCH_KINDS,
    TRANSPORT_OFFSET,
)

log = logging.getLogger(__name__)

# Versions of the Elasticsearch integ-test-zip seen on Maven Central (9.3.x is not published there).
KNOWN_ES_VERSIONS = ("9.0.0", "9.1.0", "9.1.5", "9.2.0", "9.2.4", "9.5.0", "9.5.2", "9.5.3")
ES8_VERSION = "8.19.8"
OPENSEARCH2_VERSION = "2.19.6"
OPENSEARCH3_VERSION = "3.3.2"
INSTALLED_MARKER = ".sync-pipeline-installed"


@dataclass(frozen=True)
class Distribution:
    kind: str  # one of SEARCH_KINDS
    product: str  # "elasticsearch" or "opensearch": artifact, launcher, config file, env prefix
    version: str
    port: int  # HTTP; transport is port + 100
    port_setting: str  # the variable choosing `port` (named in errors)
    dir_name: str  # under the runtime dir
    min_java: int
    max_java: int | None = None

    @property
    def name(self) -> str:
        return "Elasticsearch" if self.product == "elasticsearch" else "OpenSearch"

    @property
    def title(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def coordinates(self) -> str:
        return f"org.{self.product}.distribution.integ-test-zip:{self.product}:{self.version}:zip"

    @property
    def archive(self) -> str:
        return f"{self.product}-{self.version}.zip"  # also the name of its top-level dir, less .zip

    @property
    def env_prefix(self) -> str:
        return "ES" if self.product == "elasticsearch" else "OPENSEARCH"

    @property
    def java_env(self) -> tuple[str, ...]:
        return (f"{self.env_prefix}_JAVA_HOME", "JAVA_HOME")

    @property
    def config_file(self) -> str:
        return f"{self.product}.yml"

    @property
    def transport_port(self) -> int:
        return self.port + TRANSPORT_OFFSET

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def search_distribution(kind: str) -> Distribution:
    """The local search node of `kind` (one of SEARCH_KINDS), with its port from the settings."""
    local = local_settings()
    if kind not in SEARCH_KINDS:
        raise ServiceError(f"unknown search server {kind!r}: one of {', '.join(SEARCH_KINDS)}")
    port = local.search_port(kind)
    if kind == "elasticsearch":
        # the default node keeps the dirs it always had (runtime/es/elasticsearch-<version>)
        return Distribution(kind, "elasticsearch", local.es_version, port, LOCAL_ES_PORT, "es", 21)
    if kind == "elasticsearch8":
        return Distribution(kind, "elasticsearch", ES8_VERSION, port, LOCAL_ES8_PORT, "es8", 17)
    if kind == "opensearch2":
        return Distribution(
            kind, "opensearch", OPENSEARCH2_VERSION, port, LOCAL_OPENSEARCH2_PORT, kind, 11, 23
        )
    return Distribution(kind, "opensearch", OPENSEARCH3_VERSION, port, LOCAL_OPENSEARCH_PORT, kind, 21)


def process_env(
    dist: Distribution, java_home: Path, tmp: Path, config: Path, home_dir: Path
) -> dict[str, str]:
    """The environment a node (or one of its bin/ tools) runs in: our JDK, our config dir,
    scratch in `tmp`; the caller's *_PATH_CONF, JAVA_HOME, JAVA_TOOL_OPTIONS left out."""
    drop = {"JAVA_TOOL_OPTIONS", "JAVA_HOME", "ES_PATH_CONF", "OPENSEARCH_PATH_CONF"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    prefix = dist.env_prefix
    env[f"{prefix}_JAVA_HOME"] = str(java_home)
    env[f"{prefix}_TMPDIR"] = str(tmp)
    env[f"{prefix}_PATH_CONF"] = str(config)
    env["HOME"] = str(home_dir)
    if dist.product == "elasticsearch":
        # the launcher's own JVM (ergonomics probe) would leave a final-flags*/ dir in /tmp per start
        env["CLI_JAVA_OPTS"] = f"-Djava.io.tmpdir={tmp} {os.environ.get('CLI_JAVA_OPTS', '')}".strip()
    return env


def copy_distribution_config(dist: Distribution, home: Path, config: Path) -> None:
    """The distribution's own config files (log4j2, jvm.options, the realm files) into another
    node's config dir, once; the node's .yml and JVM options are its own."""
    if (config / "jvm.options").exists():
        return
    skip = shutil.ignore_patterns(dist.config_file, f"{dist.product}.keystore", "jvm.options.d")
    shutil.copytree(home / "config", config, dirs_exist_ok=True, ignore=skip)


def fetch_zip(dist: Distribution, cache: Path) -> Path:
    """The integ-test zip (no bundled JDK, minimal modules) in the cache, fetched with Maven,
    which resolves it through whatever mirror/proxy the machine is set up for."""
    target = cache / dist.archive
    if target.exists() and zipfile.is_zipfile(target):
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError(
            f"{target} is missing and `mvn` (Maven) is not installed to fetch it; install Maven "
            f"(apt-get install maven) or place the integ-test-zip {dist.coordinates} there"
        )
    staging = cache / f".fetch-{dist.kind}-{dist.version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    cmd = [mvn, "-q", "-B", "-U", "-Dstyle.color=never"]
    cmd += ["org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy"]
    cmd += [f"-Dartifact={dist.coordinates}", f"-DoutputDirectory={staging}"]
    log.info("fetching %s with Maven (%s)", dist.title, dist.coordinates)
    started = time.monotonic()
    try:
        _run(cmd, what=f"fetching {dist.title} with Maven", timeout=1200, cwd=cache)
    except ServiceError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        hint = ""
        if dist.kind == "elasticsearch":
            hint = (
                "\nNote: only some versions of the integ-test-zip are on Maven Central "
                f"(seen: {', '.join(KNOWN_ES_VERSIONS)}); set SYNC_ES_VERSION to one of them."
            )
        raise ServiceError(f"{exc}{hint}") from None
    fetched = staging / dist.archive
    if not zipfile.is_zipfile(fetched):
        raise ServiceError(f"Maven did not produce a valid {fetched.name} in {staging}")
    os.replace(fetched, target)
    shutil.rmtree(staging, ignore_errors=True)
    log.info("fetched %s in %.1fs", target.name, time.monotonic() - started)
    return target


def install(dist: Distribution, root: Path, home: Path, cache: Path) -> None:
    """Unpack the distribution as `home` (under `root`, the service user's), once."""
    marker = home / INSTALLED_MARKER
    if marker.exists():
        return
    archive = fetch_zip(dist, cache)
    _owned_dir(root)
    staging = root / f".unzip-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    log.info("unpacking %s into %s", archive.name, root)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            extracted = zf.extract(info, staging)
            # zipfile drops unix permissions: restore them (bin/ scripts must be executable)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(extracted, mode)
    top = staging / archive.name.removesuffix(".zip")
    if not (top / "bin" / dist.product).exists():
        raise ServiceError(f"{archive} does not contain {top.name}/bin/{dist.product}")
    for script in (top / "bin").iterdir():
        script.chmod(script.stat().st_mode | 0o755)
    shutil.rmtree(home, ignore_errors=True)
    os.replace(top, home)
    shutil.rmtree(staging, ignore_errors=True)
    marker.write_text(f"{archive.name}\n")
    _chown_tree(home)
