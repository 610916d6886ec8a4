"""`--json` through the real CLI: one document on stdout, the same exit codes (docs/cli.md)."""

from __future__ import annotations

import json
import subprocess

from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io import deadletters
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline_tests.support.cli import cli


def document(result: subprocess.CompletedProcess, schema: str, code: int) -> dict:
    assert result.returncode == code, result.stderr[-3000:]
    doc = json.loads(result.stdout)  # the whole of stdout is the one document
    assert doc["schema"] == schema and doc["ok"] is (code == 0)
    return doc


def test_sync_verify_history_and_search_as_json(scenario, insert_rows, tmp_path, es):
    insert_rows([1, 2], "2026-02-01 00:00:00+00", title="blue teacup")
    insert_rows([3], "2026-02-01 00:00:00+00", title="garden hose")
    config = str(scenario.spec_file(tmp_path))
    name = scenario.table

    synced = document(
        cli("--config", config, "sync", "--spec", name, "--full", "--json"), "sync_pipeline.sync/1", 0
    )
    (run,) = synced["runs"]
    assert (run["spec"], run["success"], run["error"]) == (name, True, None)
    assert (run["extracted"], run["indexed"], run["failed"], run["dead_lettered"]) == (3, 3, 0, 0)
    assert run["run_id"] and run["wall_seconds"] > 0

    clean = document(cli("--config", config, "verify", "--json"), "sync_pipeline.verify/1", 0)
    assert [(r["spec"], r["ok"], r["postgres_count"], r["index_count"]) for r in clean["reports"]] == [
        (name, True, 3, 3)
    ]
    assert clean["after_fix"] is None

    es.delete(index=scenario.index, id="2", refresh=True)
    drift = document(cli("--config", config, "verify", "--spec", name, "--json"), "sync_pipeline.verify/1", 1)
    (report,) = drift["reports"]
    assert (report["ok"], report["missing"], report["missing_ids"], report["drift"]) == (False, 1, ["2"], 1)

    history = document(cli("--config", config, "history", "--json"), "sync_pipeline.history/1", 0)
    (past,) = history["runs"]
    assert (past["run_id"], past["kind"], past["spec"], past["status"], past["indexed"]) == (
        run["run_id"],
        "sync",
        name,
        "success",
        3,
    )
    assert past["start"].endswith("+00:00") and past["duration_seconds"] > 0

    found = document(
        cli("--config", config, "search", "--spec", name, "--json", "teacup"), "sync_pipeline.search/1", 0
    )
    assert (found["total"], [h["id"] for h in found["hits"]], found["query"]) == (1, ["1"], "teacup")
    assert found["hits"][0]["highlight"]["title"] == ["blue <em>teacup</em>"]
    missing = document(
        cli("--config", config, "search", "--spec", name, "--json", "piano"), "sync_pipeline.search/1", 1
    )
    assert (missing["total"], missing["hits"]) == (0, [])


def test_flush_dead_letters_and_doctor_as_json(scenario, insert_rows, tmp_path):
    insert_rows([1, 2], "2026-02-01 00:00:00+00", payload="5")
    insert_rows([3], "2026-02-01 00:00:00+00")  # an object where the index wants an integer: refused
    config = scenario.spec_file(tmp_path)
    config.write_text(config.read_text() + "      payload: {type: integer}\n")
    spec = parse_specs(config.read_text())[0]
    name = scenario.table
    try:
        synced = document(
            cli("--config", str(config), "sync", "--spec", name, "--full", "--json"),
            "sync_pipeline.sync/1",
            1,
        )
        assert (synced["runs"][0]["indexed"], synced["runs"][0]["dead_lettered"]) == (2, 1)

        install_capture(scenario.engine, spec)
        scenario.execute(f"UPDATE {name} SET title = 'changed', updated_at = now() WHERE id = 1")
        flushed = document(cli("--config", str(config), "flush", "--json"), "sync_pipeline.flush/1", 0)
        (run,) = flushed["runs"]
        assert (run["spec"], run["partitions"], run["indexed"], run["success"]) == (name, "buffer", 1, True)

        letters = document(
            cli("--config", str(config), "dead-letters", "list", "--spec", name, "--json"),
            "sync_pipeline.dead-letters/1",
            0,
        )
        (letter,) = letters["dead_letters"]
        assert (letter["spec"], letter["doc_id"], letters["limit"]) == (name, "3", 50)
        assert letter["error"]["type"] in ("document_parsing_exception", "mapper_parsing_exception")
        assert letter["created_at"].endswith("+00:00") and "document" not in letter

        doctor = document(
            cli("--config", str(config), "doctor", "--spec", name, "--json"), "sync_pipeline.doctor/1", 1
        )
        assert doctor["findings"] == 1
        assert [(d["spec"], d["count"], d["needs_action"]) for d in doctor["dead_letters"]] == [
            (name, 1, True)
        ]
        assert [(x["alias"], x["missing"]) for x in doctor["indexes"]] == [(name, False)]
        rows = doctor["capture"] + doctor["backlog"]
        assert rows and all(not row["needs_action"] for row in rows)
    finally:
        uninstall_capture(scenario.engine, spec)
        with scenario.engine.begin() as conn:
            deadletters.purge(conn, name)
