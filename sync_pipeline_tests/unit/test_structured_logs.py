"""SYNC_LOG_FORMAT=json: one JSON object per line on the log stream (stderr), secrets redacted."""

from __future__ import annotations

import io

from sync_pipeline.io.logs import JsonLines
from sync_pipeline_tests.support.cli import cli
from sync_pipeline_tests.support.paths import ROOT
from sync_pipeline_tests.support.structured_logs import objects


def test_plain_lines_become_objects_and_objects_pass_as_they_are():
    out = io.StringIO()
    stream = JsonLines(out, {"command": "sync", "spec": "orders"})
    stream.write('{"level": "info", "message": "already one"}\nwarning: postgresql://app:hunter22@db/x ')
    stream.write("is slow\n\nGo on? [y/N] ")
    stream.flush()  # a prompt waits for its answer: it leaves without its newline
    first, second, prompt = objects(out.getvalue())
    assert first == {"level": "info", "message": "already one"}
    assert second["message"] == "warning: postgresql://app:***@db/x is slow"
    assert (second["level"], second["command"], second["spec"]) == ("warning", "sync", "orders")
    assert prompt["message"] == "Go on? [y/N] " and "hunter22" not in out.getvalue()


def test_an_unknown_log_format_is_an_error_naming_the_variable_and_the_choices():
    result = cli("--config", str(ROOT / "sync.yaml"), "validate", "--offline", env={"SYNC_LOG_FORMAT": "xml"})
    assert result.returncode == 2
    assert "SYNC_LOG_FORMAT must be one of text, json, not 'xml'" in result.stderr
