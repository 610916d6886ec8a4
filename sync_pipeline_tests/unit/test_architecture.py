"""The house rules, enforced: layers import one way, core stays pure, no cycles, small modules.

The rules are read from the code's own imports (every `import` statement, at
module level or inside a function: a lazy import is still a dependency).
docs/architecture.md draws the same picture.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from setuptools import find_namespace_packages

from sync_pipeline_tests.support.paths import ROOT

PACKAGE = ROOT / "sync_pipeline"
MAX_LINES = 400  # "modules under ~400 lines"

# what each room may import from the package (itself included); anything else is an upward arrow
ALLOWED = {
    "settings": {"settings"},
    "memory": {"settings"},
    "core": {"core"},
    "io": {"core", "io", "settings", "memory"},
    "ops": {"core", "io", "ops", "settings", "memory"},
    "defs": {"core", "io", "ops", "defs", "settings", "memory"},
    "apps": {"core", "io", "ops", "defs", "apps", "settings", "memory"},
    "definitions": {"core", "defs", "settings"},
    "__init__": {"memory", "definitions"},
}
# core is pure: none of these, not even lazily
IO_LIBRARIES = {
    "dagster",
    "dagster_graphql",
    "sqlalchemy",
    "psycopg",
    "adbc_driver_manager",
    "adbc_driver_postgresql",
    "elasticsearch",
    "elastic_transport",
    "flask",
    "requests",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> set[str]:
    """Every module the file imports: package modules resolved to the module (not the name
    taken from it), third-party ones by their top-level name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
    return found


GRAPH = {
    module: {i for i in imports(path) if i in MODULES and i != module} for module, path in MODULES.items()
}


def test_the_package_has_the_rooms_of_the_design():
    assert {room(m) for m in MODULES} == set(ALLOWED)


@pytest.mark.parametrize("module", [m for m in MODULES if room(m) == "core"])
def test_core_imports_no_io_or_dagster_library(module):
    third_party = {i.split(".")[0] for i in imports(MODULES[module])}
    assert not third_party & IO_LIBRARIES, f"{module} imports {sorted(third_party & IO_LIBRARIES)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module):
    upward = {i for i in GRAPH[module] if room(i) not in ALLOWED[room(module)]}
    assert not upward, f"{module} ({room(module)}) imports {sorted(upward)}"


def test_no_import_cycles():
    # Tarjan's strongly connected components: any component of more than one module is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES})"


def test_the_rule_checker_sees_an_upward_arrow(tmp_path):
    # the checker itself must be able to fail: a core module importing io is caught
    probe = tmp_path / "probe.py"
    probe.write_text("from sync_pipeline.io.postgres import engine_for\nimport sqlalchemy\n")
    found = imports(probe)
    assert "sync_pipeline.io.postgres" in found and "sqlalchemy" in found
    assert room("sync_pipeline.io.postgres") not in ALLOWED["core"]


# the search target's client libraries: only the port's own package speaks them
SEARCH_LIBRARIES = {"elasticsearch", "elastic_transport", "opensearchpy", "opensearch"}
SEARCH_PORT = "sync_pipeline.io.search"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_search_port_imports_a_search_client_library(module):
    third_party = {i.split(".")[0] for i in imports(MODULES[module])}
    # the product speaks plain REST over elastic_transport; no vendor client, not even there
    assert "elasticsearch" not in third_party and "opensearchpy" not in third_party, module
    if module == SEARCH_PORT or module.startswith(SEARCH_PORT + "."):
        return
    assert not third_party & SEARCH_LIBRARIES, (
        f"{module} imports {sorted(third_party & SEARCH_LIBRARIES)}: type against "
        f"{SEARCH_PORT}.SearchTarget and its errors instead"
    )


def test_the_search_library_rule_sees_a_client_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from elasticsearch import Elasticsearch\nimport elastic_transport\n")
    assert {"elasticsearch", "elastic_transport"} <= {i.split(".")[0] for i in imports(probe)}


# the dev harness (local services, the demo, the browser helper): the checkout's, never the product's
DEV_HARNESS = "sync_pipeline_devtools"
IMPORTERS = {"import_module", "__import__"}


def harness_imports(path: Path) -> set[str]:
    """The dev harness modules the file imports: import statements, and importlib.import_module /
    __import__ of a literal name."""
    found = {i for i in imports(path) if i == DEV_HARNESS or i.startswith(DEV_HARNESS + ".")}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            target = node.args[0].value
            if name in IMPORTERS and isinstance(target, str) and target.split(".")[0] == DEV_HARNESS:
                found.add(target)
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_runtime_never_imports_the_dev_harness(module):
    found = harness_imports(MODULES[module])
    assert not found, f"{module} imports the dev harness {sorted(found)}: the installed product has none"


def test_the_harness_checker_sees_an_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import importlib\n"
        "from sync_pipeline_devtools import services\n"
        "def f():\n    return importlib.import_module('sync_pipeline_devtools.demo')\n"
    )
    assert harness_imports(probe) == {"sync_pipeline_devtools", "sync_pipeline_devtools.demo"}


def wheel_packages() -> list[str]:
    """The packages the wheel gets: setuptools' discovery (namespace packages, as for a pyproject
    `[tool.setuptools.packages.find]`) with pyproject's include/exclude, over the checkout."""
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert set(found) <= {"include", "exclude"}, found  # what this reading knows of
    return find_namespace_packages(
        where=str(ROOT), include=found.get("include", ("*",)), exclude=found.get("exclude", ())
    )


def test_the_wheel_holds_the_runtime_and_no_dev_harness_nor_tests():
    packages = wheel_packages()
    assert {"sync_pipeline", "sync_pipeline.apps.cli", "sync_pipeline.resources"} <= set(packages)
    leaked = [
        p
        for p in packages
        if p.split(".")[0] != "sync_pipeline"
        or p == "sync_pipeline.dev"
        or p.startswith("sync_pipeline.dev.")
    ]
    assert not leaked, f"the wheel would ship {leaked}"
    assert (ROOT / DEV_HARNESS / "services" / "__init__.py").exists()  # it is there, and left out


# core/ is grouped by concept: a package per concept, and only the names every concept shares
# (naming, windows) beside them
CORE_CONCEPTS = {"spec", "mapping", "load", "sql", "documents", "cdc", "report"}
CORE_SHARED = {"naming", "windows"}


def core_concept(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "core" else None


def test_core_is_grouped_by_concept():
    children = {core_concept(m) for m in MODULES if room(m) == "core"} - {None}
    assert children == CORE_CONCEPTS | CORE_SHARED


def test_core_concepts_import_each_other_one_way():
    # a concept may use another's values, never the other way round too: no package-level cycle
    packages = {c for c in CORE_CONCEPTS}
    edges = {
        (core_concept(module), core_concept(target))
        for module, targets in GRAPH.items()
        for target in targets
        if core_concept(module) in packages
        and core_concept(target) in packages
        and core_concept(module) != core_concept(target)
    }
    reach = {c: {b for a, b in edges if a == c} for c in CORE_CONCEPTS}
    for _ in CORE_CONCEPTS:  # transitive closure of a graph of seven nodes
        reach = {c: targets.union(*(reach[t] for t in targets)) for c, targets in reach.items()}
    circular = sorted(c for c in CORE_CONCEPTS if c in reach[c])
    assert not circular, f"core concepts on an import cycle: {circular}"
    assert edges, "the concept graph is empty: the checker sees nothing"


def module_level_containers(path: Path) -> list[str]:
    """Lower-case module-level names bound to a list, dict or set: state that lives between calls.
    Constant-case tables (NAME = {...}) are read-only by convention and allowed."""
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        value = getattr(node, "value", None)
        container = isinstance(value, (ast.List, ast.Dict, ast.Set)) or (
            isinstance(value, ast.Call)
            and getattr(value.func, "id", None) in {"list", "dict", "set", "defaultdict"}
        )
        for target in targets:
            if container and isinstance(target, ast.Name) and not target.id.lstrip("_").isupper():
                found.append(target.id)
    return found


@pytest.mark.parametrize("module", [m for m in MODULES if room(m) == "core"])
def test_core_holds_no_mutable_module_state(module):
    assert not module_level_containers(MODULES[module]), f"{module} keeps state between calls"


def test_the_state_checker_sees_a_module_level_list(tmp_path):
    source = tmp_path / "listeners.py"
    source.write_text("_listeners: list = []\nTABLE = {'a': 1}\n")
    assert module_level_containers(source) == ["_listeners"]


def sql_run_in(path: Path) -> list[str]:
    """Calls that run SQL text written in the module itself: `exec_driver_sql`, SQLAlchemy's
    `text`, a `Statement` built on the spot. Use cases call io/ (or core/'s statements) for it."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name in {"exec_driver_sql", "text", "Statement"}:
                found.append(f"{name}() at line {node.lineno}")
    return found


@pytest.mark.parametrize("module", [m for m in MODULES if room(m) == "ops"])
def test_use_cases_run_no_sql_text_of_their_own(module):
    assert not sql_run_in(MODULES[module]), f"{module}: {sql_run_in(MODULES[module])} — move the SQL to io/"


def test_the_sql_checker_sees_sql_run_in_place(tmp_path):
    source = tmp_path / "use_case.py"
    source.write_text("def f(conn):\n    return conn.exec_driver_sql('SELECT 1').scalar()\n")
    assert sql_run_in(source) == ["exec_driver_sql() at line 2"]
