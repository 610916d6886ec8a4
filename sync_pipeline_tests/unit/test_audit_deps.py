"""The dependency audit CI runs (.ci/audit_deps.py): a vulnerable pin fails it, a pin it could
not check is named rather than counted clean."""

from __future__ import annotations

import importlib.util

import pytest

from sync_pipeline_tests.support.paths import ROOT


@pytest.fixture()
def audit_module():
    spec = importlib.util.spec_from_file_location("audit_deps", ROOT / ".ci" / "audit_deps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_pinned_release_with_an_advisory_fails_the_audit(audit_module, monkeypatch, tmp_path, capsys):
    documents = {
        "https://pypi.org/pypi/good/1.0/json": {"info": {"version": "1.0"}, "vulnerabilities": []},
        "https://pypi.org/pypi/bad/2.0/json": {
            "info": {"version": "2.0"},
            "vulnerabilities": [{"id": "PYSEC-1", "fixed_in": ["2.1"], "withdrawn": None}],
        },
        # no per-release document, and the pin is not the newest release: not auditable
        "https://pypi.org/pypi/old/json": {"info": {"version": "9.0"}, "vulnerabilities": []},
    }
    monkeypatch.setattr(audit_module, "_get", documents.get)
    lock = tmp_path / "constraints.txt"
    lock.write_text("good==1.0\nbad==2.0\nold==1.0\n")
    monkeypatch.setattr("sys.argv", ["audit", str(lock)])
    assert audit_module.main() == 1
    out = capsys.readouterr().out
    assert "VULNERABLE bad==2.0: PYSEC-1 (fixed in 2.1)" in out
    assert "1 without known vulnerabilities, 1 vulnerable, 1 not auditable" in out and "old==1.0" in out
    lock.write_text("good==1.0\nold==1.0\n")
    assert audit_module.main() == 0
    monkeypatch.setenv("SYNC_AUDIT_STRICT", "1")
    assert audit_module.main() == 1  # strict: an unchecked pin is a failure
