"""`sync-pipeline init` (issue 31, item 2) and what the wheel must carry for it (item 1): the starter
project's three files, the refusal to overwrite, the spec read from a database's catalog, and every
import of the runtime declared as a dependency."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from datetime import UTC, datetime
from importlib.metadata import packages_distributions

import pytest
import yaml

from sync_pipeline.apps import cli
from sync_pipeline.apps.cli.starter import FILES, render
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io.catalog import Column, ForeignKey, TableInfo
from sync_pipeline_tests.support.paths import ROOT

PACKAGE = ROOT / "sync_pipeline"
PACKAGED = PACKAGE / "resources"


def test_init_writes_the_starter_project_that_validates_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNC_CONFIG", raising=False)
    assert cli.main(["init"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    assert "sync-pipeline validate --offline" in out and "sync-pipeline sync --spec" in out
    assert "dagster dev" in out
    # the one commented spec, as packaged
    text = (tmp_path / "sync.yaml").read_text()
    assert text == (PACKAGED / "sync.yaml").read_text() and "# " in text
    assert [spec.name for spec in parse_specs(text)] == ["orders"]
    # the checkout's instance config (deploy/dagster.yaml) without its PostgreSQL storage
    local = yaml.safe_load((tmp_path / "dagster.yaml").read_text())
    deployed = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    assert "storage" not in local and local == {k: v for k, v in deployed.items() if k != "storage"}
    assert local["run_monitoring"]["enabled"] and local["sensors"]["use_threads"]
    workspace = yaml.safe_load((tmp_path / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["module_name"] == "sync_pipeline.definitions"
    assert cli.main(["validate", "--offline"]) == 0


def test_dagster_takes_the_starter_instance_config_as_dagster_dev_does(tmp_path, monkeypatch):
    """`dagster dev` without DAGSTER_HOME: storage in a temporary folder, the configuration from the
    dagster.yaml of the folder it runs in (dagster._cli.utils._get_temporary_instance)."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.run_coordinator import QueuedRunCoordinator

    project, storage = tmp_path / "project", tmp_path / "storage"
    project.mkdir()
    monkeypatch.chdir(project)
    assert cli.main(["init"]) == 0
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(storage), config_dir=str(project))) as instance:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert instance.run_monitoring_enabled
        assert instance.get_settings("sensors")["use_threads"]


@pytest.mark.parametrize("existing", FILES)
def test_init_never_overwrites_a_file_and_then_writes_nothing(tmp_path, monkeypatch, capsys, existing):
    monkeypatch.chdir(tmp_path)
    (tmp_path / existing).write_text("mine\n")
    assert cli.main(["init"]) == 2
    err = capsys.readouterr().err
    assert existing in err and str(tmp_path) in err and "nothing was written" in err
    assert [p.name for p in tmp_path.iterdir()] == [existing]
    assert (tmp_path / existing).read_text() == "mine\n"


def test_init_from_database_needs_the_database_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNC_PG_URL", raising=False)
    assert cli.main(["init", "--from-database", "public.orders"]) == 2
    assert "SYNC_PG_URL is not set" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def _column(name: str, kind: str = "bigint") -> Column:
    return Column(name, kind, not_null=True)


STAMP = "timestamp with time zone"
CUSTOMERS = TableInfo(
    "shop", "customers", (_column("id"), _column("name", "text"), _column("changed_at", STAMP)), ("id",)
)
ORDERS = TableInfo(
    "shop",
    "orders",
    (
        _column("region", "text"),
        _column("no"),
        _column("customer_id"),
        _column("customer", "text"),  # a column already named like the relation would be
        _column("updated_at", STAMP),
        _column("deleted_at", STAMP),
    ),
    ("region", "no"),
    (ForeignKey("orders_customer_fk", ("customer_id",), "shop.customers", ("id",)),),
)
LINES = TableInfo(
    "shop",
    "lines",
    (_column("id"), _column("region", "text"), _column("order_no"), _column("sku", "text")),
    (),
    (ForeignKey("lines_order_fk", ("region", "order_no"), "shop.orders", ("region", "no")),),
)


def test_a_spec_from_the_catalog_has_keys_timestamps_and_relations_from_foreign_keys():
    text, notes = render(
        [ORDERS, LINES], {"shop.customers": CUSTOMERS, "shop.orders": ORDERS}, "PostgreSQL at db",
        today=datetime(2026, 12, 7, tzinfo=UTC),
    )  # fmt: skip
    orders, lines = parse_specs(text)  # what init writes passes `validate --offline`
    assert orders.source.primary_key == ["region", "no"] and orders.source.updated_at == "updated_at"
    assert orders.source.soft_delete == "deleted_at"
    customer, items = orders.source.relations
    assert (customer.name, customer.kind, customer.on) == ("customer_2", "many_to_one", {"id": "customer_id"})
    assert customer.columns == ["name", "changed_at"]
    assert (items.name, items.kind, items.table) == ("lines", "one_to_many", "shop.lines")
    assert items.on == {"region": "region", "order_no": "no"} and items.columns == ["id", "sku"]
    assert orders.partitions.start == datetime(2026, 1, 1, tzinfo=UTC)
    # what the catalog could not say is a TODO in the file and a note on the terminal
    assert lines.source.primary_key == ["id"] and lines.source.updated_at == "updated_at"
    assert any("shop.lines has no primary key" in n for n in notes)
    assert any("shop.lines has no updated_at-like" in n for n in notes)
    assert all(f"# TODO: {note}" in text for note in notes)


# imported only where an optional feature is used, and guarded there: not dependencies
OPTIONAL_IMPORTS = {
    "botocore": "io/search/sigv4.py (AWS SigV4)",
    "dagster_celery": "the `celery` extra",
    # defs/alert_destinations.py: the `alerts` extra (Slack, PagerDuty, Teams through Dagster's integrations)
    "dagster_slack": "the `alerts` extra",
    "slack_sdk": "the `alerts` extra (dagster-slack's client)",
    "dagster_pagerduty": "the `alerts` extra",
    "pypd": "the `alerts` extra (dagster-pagerduty's client)",
    "dagster_msteams": "the `alerts` extra",
    "pandas": "io/transform.py (the `pandas` extra, for a spec's transform)",
}


def _third_party_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "dev":  # the dev harness: issue 31, item 4
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "sync_pipeline":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").split("[")[0]


def test_every_import_of_the_runtime_is_a_declared_dependency_pinned_in_the_lock():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_normal(re.split(r"[<>=!~ ;]", d)[0]) for d in project["dependencies"]}
    distributions = packages_distributions()
    undeclared = {
        module: sorted(where)
        for module, where in _third_party_imports().items()
        if module not in OPTIONAL_IMPORTS
        and not {_normal(d) for d in distributions.get(module, [])} & declared
    }
    assert not undeclared, f"imported but not in pyproject's dependencies: {undeclared}"
    locked = {
        _normal(line.split("==")[0])
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert declared <= locked, f"dependencies missing from constraints.txt: {declared - locked}"


def test_the_runtime_reads_no_file_of_the_checkout():
    """The instance config, the workspace and the starter spec are package data; the checkout's
    deploy/dagster.yaml and workspace.yaml are links to them, so both read the same file."""
    packaging = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "*.yaml" in packaging["package-data"]["sync_pipeline.resources"]
    assert {p.name for p in PACKAGED.iterdir()} >= {"dagster.yaml", "workspace.yaml", "sync.yaml"}
    assert (ROOT / "deploy" / "dagster.yaml").resolve() == PACKAGED / "dagster.yaml"
    assert (ROOT / "workspace.yaml").resolve() == PACKAGED / "workspace.yaml"
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] not in ("dev", "settings"):
            assert "PROJECT_ROOT" not in path.read_text(), f"{path} reads the checkout"
