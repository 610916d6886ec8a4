"""The `sync-pipeline` command as users run it, where no server is needed: real processes and
exit codes (the commands against the servers are in integration/test_cli.py)."""

from sync_pipeline_tests.support.cli import cli
from sync_pipeline_tests.support.paths import ROOT


def test_usage_error_without_a_range_exits_2(tmp_path):
    result = cli("--config", str(ROOT / "sync.yaml"), "sync", "--spec", "products")
    assert result.returncode == 2
    assert "give --full, or --start" in result.stderr


def test_invalid_spec_file_exits_2_naming_file_spec_and_field(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(
        "specs:\n  - name: orders\n    source: {table: orders, updated_at: u}\n"
        "    target: {index: orders}\n    partitions: {start: '2026-01-01'}\n"
    )
    result = cli("--config", str(config), "verify")
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert f"{config}:3: specs[0].source.primary_key: required key missing (spec 'orders')" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_spec_name_exits_2():
    result = cli("--config", str(ROOT / "sync.yaml"), "verify", "--spec", "nope")
    assert result.returncode == 2 and "no spec named 'nope'" in result.stderr
