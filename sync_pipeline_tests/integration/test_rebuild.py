"""Zero-downtime rebuild against the real servers: alias swap, writes during the rebuild, rollback."""

import contextlib
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipeline.apps.cli import commands, main
from sync_pipeline.apps.cli.runner import run_drain, run_sync, run_verify
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io import deadletters
from sync_pipeline.io.buffer import BUFFER
from sync_pipeline.io.search.indices import backing_indices, drop_target
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.rebuild import RebuildError, rebuild, rollback

# the rebuilds leave backing indices behind (kept for rollback): dropped after each test
pytestmark = pytest.mark.usefixtures("no_index_left_behind")


def test_rebuild_swaps_the_alias_and_loses_no_write_made_meanwhile(scenario, insert_rows, es):
    insert_rows(range(1, 3001), "2026-02-01 00:00:00+00")
    spec = scenario.spec(batch_size="200")
    assert run_sync(spec).success
    assert backing_indices(es, scenario.index) == [f"{scenario.index}_v1"]

    stop = threading.Event()

    def write_meanwhile() -> None:
        with scenario.engine.connect() as conn:
            n = 0
            while not stop.is_set() and n < 300:
                n += 1
                conn.execute(
                    sa.text(
                        f"UPDATE {scenario.table} SET title = 'during rebuild', "
                        "updated_at = now() WHERE id = :id"
                    ),
                    {"id": n},
                )
                conn.execute(sa.text(f"DELETE FROM {scenario.table} WHERE id = :id"), {"id": 3000 - n})
                conn.execute(
                    sa.text(
                        f"INSERT INTO {scenario.table} (id, title, updated_at) VALUES (:id, 'new', now())"
                    ),
                    {"id": 10_000 + n},
                )
                conn.commit()

    install_capture(scenario.engine, spec)
    writer = threading.Thread(target=write_meanwhile)
    writer.start()
    try:
        report = rebuild(scenario.engine, es, spec)
        stop.set()
        writer.join()
        # what changed after the rebuild's last repair pass arrives the ordinary way
        assert run_drain(spec).success
    finally:
        stop.set()
        uninstall_capture(scenario.engine, spec)
        with scenario.engine.begin() as conn:
            conn.execute(BUFFER.delete().where(BUFFER.c.spec == spec.name))

    assert report.old_indices == [f"{scenario.index}_v1"] and report.new_index == f"{scenario.index}_v2"
    assert backing_indices(es, scenario.index) == [f"{scenario.index}_v2"]
    assert es.indices.exists(index=f"{scenario.index}_v1")  # kept for rollback
    assert report.before_swap.ok
    (after,) = run_verify([spec], [spec])
    assert after.ok, after.lines()

    back_from, back_to = rollback(es, spec)
    assert (back_from, back_to) == (f"{scenario.index}_v2", f"{scenario.index}_v1")
    assert backing_indices(es, scenario.index) == [f"{scenario.index}_v1"]
    (caught_up,) = run_verify([spec], [spec], fix=True)
    (final,) = run_verify([spec], [spec])
    assert final.ok and caught_up.drift > 0  # v1 had missed the writes made during the rebuild


def test_rebuild_replaces_a_plain_index_named_like_the_alias(scenario, insert_rows, es):
    insert_rows(range(1, 51), "2026-02-01 00:00:00+00")
    spec = scenario.spec()
    es.indices.create(index=scenario.index)  # what a pre-alias version of the target looks like
    es.index(index=scenario.index, id="1", document={"id": 1, "title": "old"}, refresh=True)

    report = rebuild(scenario.engine, es, spec)

    assert report.old_indices == [scenario.index] and report.new_index == f"{scenario.index}_v1"
    assert es.indices.exists_alias(name=scenario.index)
    (after,) = run_verify([spec], [spec])
    assert after.ok and after.pg_count == 50


# --- issue 13.4: swap only a verified index, roll back by the alias's own history ----------------

INTEGER_TITLE = ("title: {cleanse: [trim, empty_to_null]}", "title: {type: integer}")


def integer_title_config(scenario, directory) -> tuple[Path, object]:
    """A spec whose new mapping refuses every non-numeric title, as a file for the CLI and parsed."""
    config = directory / "integer.yaml"
    config.write_text(scenario.spec_text().replace(*INTEGER_TITLE))
    return config, parse_specs(config.read_text(), origin="test")[0]


def dead_letters_of(scenario) -> list[dict]:
    with scenario.engine.begin() as conn:
        return deadletters.list_dead_letters(conn, scenario.table, limit=1000)


def purge_dead_letters(scenario) -> None:
    with scenario.engine.begin() as conn:
        deadletters.purge(conn, scenario.table)


def seed_titles(scenario, insert_rows, numeric: int, refused: int) -> None:
    """`numeric` rows whose title an integer field accepts, then `refused` rows it refuses."""
    insert_rows(range(1, numeric + 1), "2026-02-01 00:00:00+00", title=" 42 ")
    if refused:
        insert_rows(range(numeric + 1, numeric + refused + 1), "2026-02-01 00:00:00+00", title="not a number")


def test_a_mapping_that_refuses_rows_dead_letters_them_and_keeps_the_old_index(
    scenario, insert_rows, es, tmp_path, capsys
):
    seed_titles(scenario, insert_rows, numeric=200, refused=3)
    assert run_sync(scenario.spec()).success
    config, _ = integer_title_config(scenario, tmp_path)
    v1, v2 = f"{scenario.index}_v1", f"{scenario.index}_v2"
    try:
        code = main(["--config", str(config), "rebuild", "--yes", "--spec", scenario.table])
        out, err = capsys.readouterr()

        assert code == 1, out + err
        assert "not swapped" in err and "3 documents refused" in err, err
        assert backing_indices(es, scenario.index) == [v1]  # readers still see every document
        assert not es.indices.exists(index=v2)  # the half-verified index is gone, never picked later
        letters = dead_letters_of(scenario)
        assert sorted(int(d["doc_id"]) for d in letters) == [201, 202, 203]
        assert {d["partition"] for d in letters} == {f"rebuild {v2}"}
        assert {d["error"]["index"] for d in letters} == {v2}
        assert {d["error"]["type"] for d in letters} == {"document_parsing_exception"}
    finally:
        purge_dead_letters(scenario)


def test_the_rebuild_job_fails_when_it_does_not_swap(scenario, insert_rows, es, tmp_path):
    from dagster import DagsterInstance

    from sync_pipeline.defs import build_definitions

    seed_titles(scenario, insert_rows, numeric=100, refused=2)
    assert run_sync(scenario.spec()).success
    _, spec = integer_title_config(scenario, tmp_path)
    job = build_definitions([spec]).resolve_job_def(f"{spec.name}_rebuild")
    try:
        result = job.execute_in_process(instance=DagsterInstance.get(), raise_on_error=False)

        assert not result.success
        (failure,) = result.get_step_failure_events()
        assert "2 documents refused" in failure.step_failure_data.error.message
        assert backing_indices(es, scenario.index) == [f"{scenario.index}_v1"]
        scenario.execute(f"UPDATE {scenario.table} SET title = ' 7 ' WHERE id > 100")  # data fixed
        assert job.execute_in_process(instance=DagsterInstance.get()).success
        assert backing_indices(es, scenario.index) == [f"{scenario.index}_v2"]
    finally:
        purge_dead_letters(scenario)


def test_drift_the_repairs_cannot_remove_stops_the_swap(
    scenario, insert_rows, es, tmp_path, capsys, monkeypatch
):
    insert_rows(range(1, 201), "2026-02-01 00:00:00+00")
    assert run_sync(scenario.spec()).success
    config = scenario.spec_file(tmp_path)
    v1, v2 = f"{scenario.index}_v1", f"{scenario.index}_v2"
    edited: list[str] = []

    def edit_behind_our_back(event: str, data: dict) -> None:
        # a version from the future: no repair may overwrite it, so one document stays wrong
        if not edited:
            es.index(
                index=v2,
                id="5",
                document={"id": 5, "title": "edited"},
                version=2**62,
                version_type="external",
            )
            edited.append("5")

    monkeypatch.setattr(
        commands, "progress_for", lambda *a, **k: contextlib.nullcontext(edit_behind_our_back)
    )
    code = main(["--config", str(config), "rebuild", "--yes", "--spec", scenario.table])
    out, err = capsys.readouterr()

    assert edited and code == 1, out + err
    assert "not swapped" in err and "mismatched=1" in err, err
    assert backing_indices(es, scenario.index) == [v1]
    assert not es.indices.exists(index=v2)


def two_specs_sharing_a_prefix(scenario) -> tuple[object, object]:
    """`<x>` and `<x>_variants`: the second's indices match the glob `<x>_v*` of the first."""
    first = scenario.spec()
    text = scenario.spec_text().replace(f"name: {scenario.table}", f"name: {scenario.table}_variants")
    variants = parse_specs(text.replace(f"index: {scenario.index}", f"index: {scenario.index}_variants"))[0]
    return first, variants


def test_rollback_follows_the_alias_history_not_names_sharing_its_prefix(
    scenario, insert_rows, es, tmp_path, capsys
):
    insert_rows(range(1, 101), "2026-02-01 00:00:00+00")
    products, variants = two_specs_sharing_a_prefix(scenario)
    config = scenario.spec_file(tmp_path)
    x = scenario.index
    try:
        assert run_sync(products).success and run_sync(variants).success
        assert backing_indices(es, f"{x}_variants") == [f"{x}_variants_v1"]
        rebuild(scenario.engine, es, products)

        # `<x>_variants_v1` matches `<x>_v*` and sorts between v1 and v2; the history names v1
        assert (
            main(["--config", str(config), "rebuild", "--rollback", "--yes", "--spec", scenario.table]) == 0
        )
        assert f"from {x}_v2 to {x}_v1" in capsys.readouterr().out
        assert backing_indices(es, x) == [f"{x}_v1"]
        assert backing_indices(es, f"{x}_variants") == [f"{x}_variants_v1"]

        # v1 came from the first sync: there is nothing before it (a usage error, exit 2)
        with pytest.raises(RebuildError, match="no rebuild history"):
            rollback(es, products)
        assert (
            main(["--config", str(config), "rebuild", "--rollback", "--yes", "--spec", scenario.table]) == 2
        )
        assert "no rebuild history" in capsys.readouterr().err

        rebuild(scenario.engine, es, products)  # v3 replaces v1, which is serving again
        assert rollback(es, products) == (f"{x}_v3", f"{x}_v1")
        assert backing_indices(es, f"{x}_variants") == [f"{x}_variants_v1"]
        (untouched,) = run_verify([variants], [variants])
        assert untouched.ok and untouched.pg_count == 100
    finally:
        drop_target(es, f"{x}_variants")


def test_rollback_never_picks_an_aborted_rebuild(scenario, insert_rows, es, tmp_path):
    # enough refused rows that the rebuild stops even under the old 1 % tolerance
    seed_titles(scenario, insert_rows, numeric=200, refused=30)
    assert run_sync(scenario.spec()).success
    _, integer = integer_title_config(scenario, tmp_path)
    v1 = f"{scenario.index}_v1"
    try:
        with pytest.raises(RebuildError):
            rebuild(scenario.engine, es, integer)
        assert backing_indices(es, scenario.index) == [v1]
        scenario.execute(f"UPDATE {scenario.table} SET title = ' 7 ' WHERE id > 200")  # data fixed

        report = rebuild(scenario.engine, es, integer)

        assert report.old_indices == [v1]
        assert rollback(es, integer) == (report.new_index, v1)
        assert backing_indices(es, scenario.index) == [v1]
    finally:
        purge_dead_letters(scenario)


def test_a_clean_rebuild_then_a_rollback_through_the_cli_catches_up(
    scenario, insert_rows, es, tmp_path, capsys
):
    insert_rows(range(1, 301), "2026-02-01 00:00:00+00")
    spec = scenario.spec()
    assert run_sync(spec).success
    config = scenario.spec_file(tmp_path)
    v1, v2 = f"{scenario.index}_v1", f"{scenario.index}_v2"

    assert main(["--config", str(config), "rebuild", "--yes", "--spec", scenario.table]) == 0
    out = capsys.readouterr().out
    assert f"{v1} → {v2}" in out and "DRIFT" not in out, out
    assert backing_indices(es, scenario.index) == [v2]
    meta = es.indices.get_mapping(index=v2)[v2]["mappings"]["_meta"]["sync_pipeline"]
    assert meta["previous"] == v1 and meta["spec"] == spec.name and meta["swapped_at"]

    # what v1 misses once it stopped serving: an update, a delete, an insert
    scenario.execute(f"UPDATE {scenario.table} SET title = 'changed', updated_at = now() WHERE id = 1")
    scenario.execute(f"DELETE FROM {scenario.table} WHERE id = 2")
    scenario.execute(f"INSERT INTO {scenario.table} (id, title, updated_at) VALUES (1000, 'new', now())")
    (live,) = run_verify([spec], [spec], fix=True)  # the new index is kept in step meanwhile
    assert live.drift == 3

    assert main(["--config", str(config), "rebuild", "--rollback", "--yes", "--spec", scenario.table]) == 0
    out = capsys.readouterr().out
    assert f"from {v2} to {v1}" in out and "3 repaired" in out, out
    assert backing_indices(es, scenario.index) == [v1]
    (final,) = run_verify([spec], [spec])
    assert final.ok and final.pg_count == 300, final.lines()


def test_a_row_changed_during_the_rebuild_into_what_the_new_mapping_refuses(
    scenario, insert_rows, es, tmp_path
):
    seed_titles(scenario, insert_rows, numeric=200, refused=0)
    _, integer = integer_title_config(scenario, tmp_path)
    assert run_sync(integer).success
    v1, v2 = f"{scenario.index}_v1", f"{scenario.index}_v2"
    changed: list[int] = []

    def change_a_row_once_filled(batch) -> None:
        if not changed:  # after the fill's snapshot: only a repair pass can see it
            scenario.execute(f"UPDATE {scenario.table} SET title = 'oops', updated_at = now() WHERE id = 5")
            changed.append(5)

    try:
        with pytest.raises(RebuildError, match="1 documents refused") as aborted:
            rebuild(scenario.engine, es, integer, on_batch=change_a_row_once_filled)

        assert "drift besides them in pass 1: 0" in str(aborted.value)
        assert backing_indices(es, scenario.index) == [v1] and not es.indices.exists(index=v2)
        (letter,) = dead_letters_of(scenario)
        assert letter["doc_id"] == "5" and letter["partition"] == f"rebuild {v2}"
    finally:
        purge_dead_letters(scenario)
