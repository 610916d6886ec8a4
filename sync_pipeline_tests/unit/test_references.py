"""Every module a doc or a comment names exists: moving a module leaves no path behind.

docs/*.md, README.md and the package's own text (comments, docstrings) name modules as paths
(`core/cdc/logical.entries_for`, `ops/drain/`) or, for core, dotted (`core.sql.keys`). The
CHANGELOG is history and keeps the names of its day.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sync_pipeline_tests.support.paths import ROOT

PACKAGE = ROOT / "sync_pipeline"
ROOMS = "core|ops|io|defs|apps"
# a path: room/child[/child…][.py][.attribute]; dotted only for core (io., ops. and defs. are
# also the names of ordinary variables and of the standard library's io)
AS_PATH = re.compile(rf"(?<![\w/.-])(?:sync_pipeline/)?((?:{ROOMS})(?:/[A-Za-z_]\w*)+)")
AS_DOTTED = re.compile(r"(?<![\w/.-])(?:sync_pipeline\.)?(core(?:\.[A-Za-z_]\w*)+)")


def named_modules(text: str) -> list[str]:
    return [m.group(1) for pattern in (AS_PATH, AS_DOTTED) for m in pattern.finditer(text)]


def resolves(reference: str) -> bool:
    """Some leading part names a module or package (what follows may be an attribute)."""
    parts = re.split(r"[/.]", reference.removesuffix(".py"))
    for end in range(len(parts), 1, -1):
        base = PACKAGE.joinpath(*parts[:end])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    return False


TEXTS = sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md", *PACKAGE.rglob("*.py")])


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_a_text_names_exists(path: Path):
    missing = [ref for ref in named_modules(path.read_text(encoding="utf-8")) if not resolves(ref)]
    assert not missing, f"{path.relative_to(ROOT)} names modules that do not exist: {missing}"


def test_the_reference_checker_sees_a_moved_module():
    text = "built by `core/capture.trigger_ddl`, read by core.logical.entries_for, in ops/drain/loop.py"
    assert named_modules(text) == ["core/capture", "ops/drain/loop", "core.logical.entries_for"]
    assert [resolves(r) for r in named_modules(text)] == [False, True, False]
