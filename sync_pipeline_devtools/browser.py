"""The headless Chromium the browser test drives through Playwright (no browser download).

Debian's `chromium` package is used, installed with apt-get on first use when we run as root
(like PostgreSQL in sync_pipeline_devtools.services); $CHROME_BIN names another Chromium or Chrome.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sync_pipeline_devtools.services import ServiceError, runtime

CHROME_BIN = "CHROME_BIN"  # the variable Karma and many CI images use for "this browser"
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
DEBIAN_PACKAGE = "chromium"


class BrowserUnavailable(ServiceError):
    """No Chromium here, and none could be installed."""


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_chromium() -> Path | None:
    """$CHROME_BIN (which must then exist), else `chromium` on PATH, else /usr/bin/chromium."""
    override = os.environ.get(CHROME_BIN, "").strip()
    if override:
        path = Path(override).expanduser()
        if not _executable(path):
            raise BrowserUnavailable(f"{CHROME_BIN}={override!r} is not an executable file")
        return path
    on_path = shutil.which("chromium")
    if on_path:
        return Path(on_path)
    return DEBIAN_CHROMIUM if _executable(DEBIAN_CHROMIUM) else None


def find_or_install_chromium() -> Path:
    """The Chromium to drive; installs Debian's `chromium` with apt-get when none is found and
    we are root. BrowserUnavailable (a ServiceError) says how to get one otherwise."""
    found = find_chromium()
    if found is not None:
        return found
    how = (
        f"install Debian's package as root (`apt-get install {DEBIAN_PACKAGE}`), "
        f"or set {CHROME_BIN} to an existing Chromium or Chrome"
    )
    if not runtime._is_root() or not shutil.which("apt-get"):
        raise BrowserUnavailable(
            f"no Chromium found (checked ${CHROME_BIN}, `chromium` on PATH, {DEBIAN_CHROMIUM}): {how}"
        )
    try:
        runtime.apt_install(DEBIAN_PACKAGE, what="Chromium")
    except (ServiceError, OSError) as exc:
        raise BrowserUnavailable(f"could not install Chromium: {exc}\nAlternatively, {how}") from None
    found = find_chromium()
    if found is None:
        raise BrowserUnavailable(
            f"apt-get installed `{DEBIAN_PACKAGE}` but no chromium is on PATH or at {DEBIAN_CHROMIUM}: {how}"
        )
    return found
