"""Audit the locked dependency tree (constraints.txt) for known vulnerabilities.

For every pin, PyPI's JSON API: `/pypi/<name>/<version>/json` lists the advisories that affect
that exact release (what pip-audit's PyPI service reads). Where that per-release document is not
served (this build network's PyPI serves only the project document), the project document's
`vulnerabilities` still apply when the pin *is* the newest release; any other pin is reported as
not auditable here, by name, so a partial audit never reads as a clean one.

Exit 1 when any pinned release has a known vulnerability; 2 when nothing at all could be audited
(the service unreachable); 0 otherwise, with the count of pins that could not be checked. With
SYNC_AUDIT_STRICT=1 an unchecked pin fails the audit too (for networks that reach the service).
Standard library only: it runs before the project's own environment exists.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

INDEX = os.environ.get("SYNC_AUDIT_INDEX", "https://pypi.org/pypi")


def pins(path: Path) -> list[tuple[str, str]]:
    found = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found.append((name.strip(), version.split(";")[0].strip()))
    return found


def _get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def audit(name: str, version: str) -> tuple[str, list[str]]:
    """("vulnerable" | "clean" | "unchecked", advisories)."""
    try:
        release = _get(f"{INDEX}/{name}/{version}/json")
        if release is None:
            project = _get(f"{INDEX}/{name}/json")
            if project is None or project["info"]["version"] != version:
                return "unchecked", []
            release = project
    except (urllib.error.URLError, TimeoutError, ValueError):
        return "unchecked", []
    advisories = [
        f"{v.get('id')} (fixed in {', '.join(v.get('fixed_in') or []) or 'no release yet'})"
        for v in release.get("vulnerabilities") or []
        if not v.get("withdrawn")
    ]
    return ("vulnerable" if advisories else "clean"), advisories


def main() -> int:
    locked = pins(Path(sys.argv[1] if len(sys.argv) > 1 else "constraints.txt"))
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = dict(zip(locked, pool.map(lambda pin: audit(*pin), locked), strict=True))
    vulnerable = {pin: found for pin, (state, found) in results.items() if state == "vulnerable"}
    unchecked = sorted(f"{n}=={v}" for (n, v), (state, _) in results.items() if state == "unchecked")
    clean = sum(state == "clean" for state, _ in results.values())
    for (name, version), found in sorted(vulnerable.items()):
        print(f"VULNERABLE {name}=={version}: {'; '.join(found)}")
    print(
        f"dependency audit: {len(locked)} pins, {clean} without known vulnerabilities, "
        f"{len(vulnerable)} vulnerable, {len(unchecked)} not auditable from this network"
    )
    if unchecked:
        print("  not audited (no per-release advisory data reachable): " + ", ".join(unchecked))
    if vulnerable:
        return 1
    if not clean:
        print("dependency audit: nothing could be audited (advisory service unreachable)")
        return 2
    if unchecked and os.environ.get("SYNC_AUDIT_STRICT") == "1":
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
