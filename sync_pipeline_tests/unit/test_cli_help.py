"""The CLI helps its reader (issue 31, item 5): help on every flag, examples under every command,
a progress bar with ETA on a terminal and plain lines elsewhere; validate's exit codes."""

from __future__ import annotations

import argparse
import io
import os
import pty
import re
import shlex

import pytest

from sync_pipeline.apps import cli
from sync_pipeline.apps.cli import validate as validate_module
from sync_pipeline.apps.cli.parser import build_parser
from sync_pipeline.apps.cli.progress import BarProgress, LineProgress, progress_for
from sync_pipeline.apps.cli.session import Session, UsageError
from sync_pipeline_tests.support.paths import ROOT

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # anything but printable text and newlines


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_argument_of_every_command_has_help():
    parser = build_parser()
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, command in {"(top)": parser, **_commands(parser)}.items()
        for action in command._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


def test_every_command_shows_an_example_of_itself_in_its_help():
    for name, command in _commands(build_parser()).items():
        text = command.format_help()
        examples = [line.strip() for line in text.partition("\nexamples:\n")[2].splitlines()]
        # an alias (install-capture) shares its command's parser, prog and examples
        assert any(line.startswith(f"{command.prog} ") for line in examples), f"{name}: no example\n{text}"


def test_examples_keep_their_lines_and_parse():
    help_text = _commands(build_parser())["sync"].format_help()
    assert "\n  sync-pipeline sync --spec products --full\n" in help_text
    for command in _commands(build_parser()).values():
        for line in command.epilog.splitlines()[1:]:
            if not line.strip().startswith("sync-pipeline "):
                continue  # a shell line (eval "$(…)")
            argv = shlex.split(line.split("|")[0])[1:]
            build_parser().parse_args(argv)  # no SystemExit: it parses


# --- progress ------------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_gets_the_bar_a_pipe_and_json_get_lines():
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as terminal:
            assert isinstance(progress_for(terminal), BarProgress)
            assert isinstance(progress_for(terminal, plain=True), LineProgress)  # --json
    finally:
        os.close(leader)
        os.close(follower)
    assert isinstance(progress_for(io.StringIO()), LineProgress)


def test_the_bar_on_a_terminal_shows_counts_rate_and_eta():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    with progress_for(stream) as listener:
        assert isinstance(listener, BarProgress)
        listener("extracted", {"rows": 1000})
        for _ in range(4):
            listener("batch", {"docs": 100, "failed": 1})
    text = stream.getvalue()
    assert "\r" in text and "400/1000" in text and "failed 4" in text
    assert re.search(r"<\d\d:\d\d", text), text  # tqdm's remaining time


def test_plain_lines_carry_the_counts_at_an_interval_and_no_control_characters():
    stream, clock = io.StringIO(), _Clock()
    with LineProgress(stream, clock=clock, interval=10) as listener:
        listener("extracted", {"rows": 1000})
        listener("batch", {"docs": 100, "failed": 0})  # at 0 s: too soon for a line
        clock.now = 10
        listener("batch", {"docs": 150, "failed": 2})
        clock.now = 15
        listener("batch", {"docs": 250, "failed": 0})  # 5 s after the last line: none
        clock.now = 20
    assert stream.getvalue().splitlines() == [
        "progress: 250/1,000 docs (25%), 25 docs/s, ETA 30s, failed 2",
        "progress: 500/1,000 docs (50%), 25 docs/s, ETA 20s, failed 2",  # the last one, at the end
    ]
    assert not CONTROL.search(stream.getvalue())


def test_a_short_run_writes_no_line_at_all():
    stream = io.StringIO()
    with progress_for(stream) as listener:
        listener("extracted", {"rows": 10})
        listener("batch", {"docs": 10, "failed": 0})
    assert stream.getvalue() == ""


# --- validate's exit codes without servers -------------------------------------------------------


@pytest.fixture()
def unset_servers(monkeypatch):
    monkeypatch.setenv("SYNC_PG_URL", "postgresql://u@127.0.0.1:1/db")
    monkeypatch.setenv("SYNC_ES_URL", "http://127.0.0.1:1")


def test_validate_names_both_unusable_servers_and_exits_2(unset_servers, monkeypatch, capsys):
    monkeypatch.setattr(Session, "search_problem", lambda self: "cannot connect to the search server at X")

    def no_database(self):
        raise UsageError("cannot connect to PostgreSQL at Y: refused")

    monkeypatch.setattr(Session, "connect", no_database)
    assert cli.main(["validate", "--config", str(ROOT / "sync.yaml")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "sync-pipeline: cannot connect to the search server at X",
        "sync-pipeline: cannot connect to PostgreSQL at Y: refused",
    ]


def test_validate_reports_every_spec_and_exits_1_on_any_problem(unset_servers, monkeypatch, capsys):
    monkeypatch.setattr(validate_module, "server_problems", lambda session: [])

    class Server:
        label = "Elasticsearch 9.9.9"

    monkeypatch.setattr(
        Session, "es", lambda self, request_timeout=None: type("ES", (), {"server": Server})()
    )

    def check(session, es, spec):
        return validate_module.SpecReport(spec.name, problems=["table x not found", "mapping refused"])

    monkeypatch.setattr(validate_module, "check_spec", check)
    assert cli.main(["validate", "--config", str(ROOT / "sync.yaml")]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[2:] == [
        "spec 'products': 2 problems",
        "  problem: table x not found",
        "  problem: mapping refused",
    ]
    assert err == "sync-pipeline: validate found 2 problems\n"
