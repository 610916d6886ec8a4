"""The command line's conventions (issue 31): --version, the global options anywhere, exit codes a
script can tell apart, one redacted line for an unexpected error, a closed pipe ending quietly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sync_pipeline.apps import cli
from sync_pipeline.apps.cli import search as search_module
from sync_pipeline.apps.cli.parser import build_parser
from sync_pipeline_tests.support.paths import ROOT

CONFIG = str(ROOT / "sync.yaml")


def test_version_prints_the_installed_version_and_exits_0(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as ended:
        cli.main(["--version"])
    assert ended.value.code == 0
    assert capsys.readouterr().out.strip() == f"sync-pipeline {version('sync-pipeline')}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", CONFIG, "--debug", "grants", "--spec", "products"],
        ["grants", "--spec", "products", "--config", CONFIG, "--debug"],
        ["--debug", "grants", "--config", CONFIG, "--spec", "products"],
    ],
    ids=["before", "after", "both sides"],
)
def test_global_options_are_taken_before_or_after_the_command(argv):
    args = build_parser().parse_args(argv)
    assert (args.config, args.debug, args.local, args.spec) == (CONFIG, True, False, "products")


def test_an_option_given_before_the_command_is_not_reset_by_the_commands_parser():
    args = build_parser().parse_args(["--config", CONFIG, "--local", "verify"])
    assert args.config == CONFIG and args.local is True
    plain = build_parser().parse_args(["verify"])
    assert plain.config is None and plain.local is False and plain.debug is False


def _failing(exc: BaseException):
    def command(args):
        raise exc

    return command


def test_an_unexpected_error_is_one_redacted_line_and_exit_3(monkeypatch, capsys):
    boom = RuntimeError("lost postgresql://sync:hunter2@db/shop with password=hunter2\nsecond line")
    monkeypatch.setattr(search_module, "cmd_grants", _failing(boom))

    code = cli.main(["grants", "--spec", "products", "--config", CONFIG])

    err = capsys.readouterr().err
    assert code == cli.EXIT_UNEXPECTED == 3
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("sync-pipeline: unexpected error: RuntimeError: lost postgresql://sync:***@db/shop")
    assert "hunter2" not in err and "second line" not in err and "--debug" in err


def test_with_debug_the_unexpected_error_keeps_its_traceback(monkeypatch):
    monkeypatch.setattr(search_module, "cmd_grants", _failing(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["--debug", "grants", "--spec", "products", "--config", CONFIG])


def test_a_reader_that_went_away_ends_the_command_quietly_with_141():
    # the pipe's reading end is closed before the command writes its first line
    child = subprocess.Popen(
        [sys.executable, "-m", "sync_pipeline.apps.cli", "--config", CONFIG, "grants", "--spec", "products"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    child.stdout.close()
    _, err = child.communicate(timeout=120)
    assert child.returncode == cli.EXIT_BROKEN_PIPE == 141, err.decode()
    assert err == b"", err.decode()  # no traceback, no "Exception ignored" at exit


def test_validate_offline_checks_the_spec_file_alone(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SYNC_PG_URL", raising=False)
    monkeypatch.delenv("SYNC_ES_URL", raising=False)
    assert cli.main(["validate", "--offline", "--config", CONFIG]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "specs: 1 valid (products)",
        "servers: not checked (--offline)",
    ]
    bad = tmp_path / "sync.yaml"
    bad.write_text((ROOT / "sync.yaml").read_text().replace("type: keyword", "type: keywrd", 1))
    assert cli.main(["validate", "--offline", "--config", str(bad)]) == 2
    assert "unknown field type 'keywrd' (did you mean 'keyword'?)" in capsys.readouterr().err
