"""The dev harness out of the product (issue 31, item 4): `sync-pipeline` has no `services`, `demo`
nor dev services behind `--local`; the checkout's dev tool (`python -m sync_pipeline_devtools`) is
the product's CLI plus those, and starts local services only on explicit request. No server needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_pipeline.apps import cli
from sync_pipeline.apps.cli import session as session_module
from sync_pipeline.apps.cli.parser import build_parser
from sync_pipeline_devtools import cli as devtool
from sync_pipeline_devtools import services
from sync_pipeline_devtools import settings as dev_settings
from sync_pipeline_tests.support.paths import ROOT

CONFIG = str(ROOT / "sync.yaml")


def _never_started():
    raise AssertionError("local services were started without --local")


@pytest.fixture()
def no_server_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SYNC_PG_URL", "SYNC_ES_URL", "SYNC_ES_CLOUD_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(services, "ensure_services", _never_started)
    monkeypatch.setattr(services, "up", lambda **_: _never_started())


@pytest.mark.parametrize("command", ["services", "demo"])
def test_the_product_has_no_dev_commands(command, capsys):
    with pytest.raises(SystemExit) as ended:
        build_parser().parse_args([command])
    assert ended.value.code == 2 and f"invalid choice: '{command}'" in capsys.readouterr().err


def test_the_products_local_without_the_dev_tool_is_an_error_naming_it(no_server_urls, capsys):
    assert not session_module.LOCAL_SERVICES
    assert cli.main(["--config", CONFIG, "--local", "verify"]) == 2
    err = capsys.readouterr().err
    assert "python -m sync_pipeline_devtools --local" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", CONFIG, "--local", "demo", "--rows", "10"],
        ["demo", "--rows", "10", "--local", "--config", CONFIG],
    ],
    ids=["before", "after"],
)
def test_the_dev_tool_adds_services_and_demo_with_the_global_options(argv):
    args = devtool.build_parser().parse_args(argv)
    assert (args.config, args.local, args.rows, args.func) == (CONFIG, True, 10, devtool.cmd_demo)
    served = devtool.build_parser().parse_args(["services", "up", "--target", "opensearch"])
    assert (served.action, served.target, served.func) == ("up", "opensearch", devtool.cmd_services)
    # every product command is still there
    assert devtool.build_parser().parse_args(["--config", CONFIG, "verify"]).func.__name__ == "cmd_verify"


def test_the_dev_tool_without_local_starts_nothing(no_server_urls, capsys):
    assert devtool.main(["--config", CONFIG, "verify"]) == 2
    assert "SYNC_PG_URL is not set" in capsys.readouterr().err


def test_the_dev_tool_serves_local_while_it_runs(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(
        services, "ensure_services", lambda: services.ServiceUrls("postgresql://u@h/db", "http://h:1")
    )
    monkeypatch.setattr(services, "local_dagster_storage", lambda: "postgresql://u@h/db?dagster")
    seen = []

    def product_main(argv, *, parser, usage_errors):
        local = session_module.local_servers()
        seen.append((argv, local.ensure(), local.dagster_storage(), usage_errors))
        return 0

    monkeypatch.setattr(devtool, "product_main", product_main)
    assert devtool.main(["--local", "ui"]) == 0
    assert seen == [
        (
            ["--local", "ui"],
            ("postgresql://u@h/db", "http://h:1"),
            "postgresql://u@h/db?dagster",
            (services.ServiceError,),
        )
    ]
    assert not session_module.LOCAL_SERVICES  # only while the dev tool runs


def test_a_service_error_exits_2_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv("SYNC_LOCAL_PG_PORT", "not-a-port")
    assert devtool.main(["services", "status"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "sync-pipeline: SYNC_LOCAL_PG_PORT='not-a-port' is not an integer"


def test_the_local_settings_are_the_harness_own():
    import sync_pipeline.settings as product_settings

    assert not hasattr(product_settings.load({}), "local")
    assert not hasattr(product_settings, "LOCAL_PG_PORT")
    local = dev_settings.load({"SYNC_LOCAL_PG_PORT": "61432", "SYNC_SERVICES_DIR": "/tmp/svc"})
    assert (local.pg_port, local.redis_port, local.services_dir) == (61432, 62379, Path("/tmp/svc"))
    assert dev_settings.PROJECT_ROOT == ROOT  # the state dir's default stays the checkout's .services/
