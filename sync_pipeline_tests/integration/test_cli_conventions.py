"""The command line's conventions (issue 31): --version, the global options anywhere, exit codes a
script can tell apart, one redacted line for an unexpected error, a closed pipe ending quietly."""

from __future__ import annotations

from sync_pipeline.apps import cli


def test_validate_with_servers_reports_every_spec_problem_at_once_exit_1_writing_nothing(
    scenario, tmp_path, capsys, es
):
    config = scenario.spec_file(tmp_path)
    assert cli.main(["validate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"{es.server.label} at " in out and f"spec '{scenario.table}': ok" in out
    assert "every source matches its spec" in out

    # two specs, two problems: a field type this server lacks, a table that does not exist
    lacking = "version" if es.server.is_opensearch else "knn_vector"  # no parameters needed
    ghost = scenario.spec_text().replace(f"name: {scenario.table}", "name: ghost")
    ghost = ghost.replace(f"table: {scenario.table}", f"table: {scenario.table}_gone")
    ghost = ghost.replace(f"index: {scenario.index}", f"index: {scenario.index}_gone")
    ghost = ghost.replace("specs:\n", "")
    config.write_text(scenario.spec_text() + f"      payload: {{type: {lacking}}}\n" + ghost)
    assert cli.main(["validate", "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert f"spec '{scenario.table}': 1 problem\n  problem: " in out and f"'payload' of type {lacking}" in out
    assert "spec 'ghost': 1 problem\n  problem: " in out and f"{scenario.table}_gone" in out
    assert err == "sync-pipeline: validate found 2 problems\n"
    assert not es.indices.exists(index=scenario.index)


def test_validate_notes_a_relation_lookup_no_index_serves_and_stops_once_one_does(scenario, tmp_path, capsys):
    reviews = f"{scenario.table}_reviews"
    scenario.execute(f"CREATE TABLE {reviews} (id bigint PRIMARY KEY, item_id bigint, stars int)")
    try:
        relation = (
            "      relations:\n"
            f"        - {{name: reviews, table: {reviews}, kind: one_to_many, on: {{item_id: id}}}}"
        )
        config = scenario.spec_file(tmp_path, extra=relation)
        assert cli.main(["validate", "--config", str(config)]) == 0  # a note, not a problem
        out = capsys.readouterr().out
        assert f"note: relation 'reviews': documents read it by (item_id) with no index on {reviews}" in out
        assert f"CREATE INDEX ON {reviews} (item_id)" in out

        scenario.execute(f"CREATE INDEX ON {reviews} (item_id, stars)")
        assert cli.main(["validate", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert f"spec '{scenario.table}': ok" in out and "no index on" not in out
    finally:
        scenario.execute(f"DROP TABLE IF EXISTS {reviews}")
