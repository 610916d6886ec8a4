"""Every name bench/ imports from sync_pipeline exists, also the imports inside functions: a
section run only by the full `make bench` (the soak) once imported a name a refactor had moved,
and nothing but that run noticed."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def product_imports() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(BENCH.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sync_pipeline"):
                found += [(path.name, node.module, alias.name) for alias in node.names]
    return found


IMPORTS = product_imports()


def test_bench_imports_names_from_the_product():
    assert len(IMPORTS) > 20  # the scan found the harness's imports, inside functions too


@pytest.mark.parametrize(("file", "module", "name"), IMPORTS, ids=lambda v: str(v))
def test_every_name_bench_imports_from_the_product_exists(file, module, name):
    found = importlib.import_module(module)
    if not hasattr(found, name):
        importlib.import_module(f"{module}.{name}")  # a submodule; raises when it is neither
