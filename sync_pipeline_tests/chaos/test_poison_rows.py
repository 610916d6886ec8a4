"""Poison rows (issue 30, item 9): a row no document can carry becomes a dead letter with its
reason, and the window, the drain and the slot move on; `verify` counts it apart, not as drift.

Each case on the real servers: `infinity`, a year past 9999 and a BC date; a `json` value
holding `\\u0000`; a text key over Elasticsearch's 512-byte `_id` limit — under the full
(partitioned window) sync, the trigger drain and the logical drain; and a drain's fan-out of
large documents, cut into requests at `bulk_max_mb` as the full sync's are.
"""

from __future__ import annotations

import pytest

from sync_pipeline.apps.cli.runner import Servers, run_sync, run_verify
from sync_pipeline.core.cdc import logical
from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io import buffer, deadletters, replication
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.drain import drain
from sync_pipeline_tests.conftest import CHAOS_RESULTS, at, indexed
from sync_pipeline_tests.support.faults import seed
from sync_pipeline_tests.support.metrics_agreement import metrics_agree

# (column, value, how PostgreSQL writes the value back): each makes one seeded row a poison row
POISON = {
    1: ("due", "infinity"),
    2: ("due", "10000-01-01"),
    3: ("seen", "0044-03-15 00:00:00 BC"),
    4: ("doc", '{"note": "a\\u0000b"}'),
    5: ("seen", "-infinity"),
}


def _poisoned_table(scenario, rows: int) -> None:
    """The scenario's table with a date, a timestamp and a json column, `rows` rows, and the
    POISON values in the first rows."""
    table = scenario.table
    scenario.execute(
        f"ALTER TABLE {table} ADD COLUMN due date, ADD COLUMN seen timestamp, ADD COLUMN doc json"
    )
    seed(scenario, rows)
    scenario.execute(
        f"UPDATE {table} SET due = date '2026-03-01' + CAST(id AS int), seen = timestamp '2026-01-01 10:00', "
        """doc = CAST('{"n": ' || id || '}' AS json)"""
    )
    for key, (column, value) in POISON.items():
        scenario.execute(f"UPDATE {table} SET {column} = :value WHERE id = :id", {"value": value, "id": key})


def _dead_letters(scenario) -> dict[str, dict]:
    with scenario.engine.begin() as conn:
        return {d["doc_id"]: d["error"] for d in deadletters.list_dead_letters(conn, scenario.table, 500)}


def _verified(spec, live) -> tuple[int, int]:
    """(drift, rows counted as dead letters) by `verify`, which must not crash on poison rows."""
    (report,) = run_verify([spec], [spec], servers=Servers(live.pg_url, live.es_url))
    return report.drift, report.dead_letters


@pytest.mark.parametrize("capture", ["triggers", "logical"])
def test_poison_rows_become_dead_letters_and_the_sync_and_drains_flow_on(scenario, live, capture):
    spec = scenario.spec(extra=f"    capture: {capture}")
    servers = Servers(live.pg_url, live.es_url)
    _poisoned_table(scenario, 200)
    install_capture(scenario.engine, spec)
    try:
        summary = run_sync(spec, at("2026-02-01"), at("2026-03-01"), servers=servers)
        assert summary.success, summary.error
        assert summary.indexed == 200 - len(POISON) and summary.dead_lettered == len(POISON)
        dead = _dead_letters(scenario)
        assert sorted(dead) == sorted(str(k) for k in POISON)
        assert all(e["type"] == "unrepresentable_row" for e in dead.values())
        assert dead["1"]["columns"] == {"due": "infinity"} and "column 'due'" in dead["1"]["reason"]
        assert dead["3"]["columns"] == {"seen": "0044-03-15 00:00:00 BC"}
        assert "\\u0000" in dead["4"]["columns"]["doc"]

        # the reproduction: one row turns poison, and the change behind it must arrive
        scenario.execute(f"UPDATE {scenario.table} SET due = 'infinity' WHERE id = 10")
        scenario.execute(f"UPDATE {scenario.table} SET title = 'after' WHERE id = 11")
        totals = drain(scenario.engine, scenario.es, spec)
        assert totals.failed == 0 and totals.dead_lettered == 1
        docs = indexed(scenario.es, scenario.index)
        assert docs["11"]["title"] == "after" and "1" not in docs and "10" in docs
        assert "10" in _dead_letters(scenario)
        # nothing is left to claim: the buffer is empty, the slot confirmed past the poison row
        again = drain(scenario.engine, scenario.es, spec)
        assert again.dead_lettered == 0 and again.claimed == 0
        # changed again and still poison: its letter is replaced, not joined by a second one
        with scenario.engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE {scenario.table} SET title = 'still poison' WHERE id = 10")
            # after the change's record, before its commit's: a slot past the commit is past this
            written = logical.lsn_number(replication.insert_lsn(conn))
        assert drain(scenario.engine, scenario.es, spec).dead_lettered == 1
        with scenario.engine.begin() as conn:
            assert deadletters.count(conn, scenario.table) == len(POISON) + 1
            letters = deadletters.list_dead_letters(conn, scenario.table, 500)
        assert [d["doc_id"] for d in letters].count("10") == 1
        with scenario.engine.begin() as conn:
            if capture == "triggers":
                assert not buffer.has_pending(scenario.engine, spec)
            else:
                # confirmed past the poison row's change (not a distance to the WAL's end, which
                # any other writer of the cluster moves)
                assert logical.lsn_number(replication.slot_state(conn, spec.name).confirmed_lsn) >= written

        drift, unrepresentable = _verified(spec, live)
        assert (drift, unrepresentable) == (0, len(POISON) + 1)
        agree = metrics_agree(scenario.engine, scenario.es, spec, 202, drift, len(POISON) + 1)
    finally:
        scenario.engine.dispose()
        uninstall_capture(scenario.engine, spec)
    CHAOS_RESULTS.append(
        (f"poison rows (infinity, year 10000, BC, json \\u0000), {capture}", 202, drift, 6, agree)
    )


@pytest.mark.parametrize("capture", ["triggers", "logical"])
def test_a_key_no_document_date_holds_is_a_dead_letter_and_the_stream_flows(scenario, live, capture):
    """A timestamp primary key of ±infinity: its row is a dead letter under PostgreSQL's text of
    the key, and the window, both drains and verify go on (a NULL key used to stop them all)."""
    table = scenario.table
    scenario.execute(f"DROP TABLE {table}")
    scenario.execute(f"CREATE TABLE {table} (ts timestamptz PRIMARY KEY, title text, updated_at timestamptz)")
    scenario.execute(
        f"INSERT INTO {table} SELECT timestamptz '2026-02-01' + g * interval '1 hour', 'row ' || g, "
        "'2026-02-01' FROM generate_series(1, 10) g"
    )
    scenario.execute(
        f"INSERT INTO {table} VALUES ('infinity', 'last', '2026-02-01'), ('-infinity', 'first', '2026-02-01')"
    )
    text = scenario.spec_text(extra=f"    capture: {capture}").replace("primary_key: id", "primary_key: ts")
    (spec,) = parse_specs(text, origin="test")
    install_capture(scenario.engine, spec)
    try:
        summary = run_sync(spec, servers=Servers(live.pg_url, live.es_url))
        assert summary.success, summary.error
        assert (summary.indexed, summary.dead_lettered) == (10, 2)
        assert sorted(_dead_letters(scenario)) == ["-infinity", "infinity"]
        if capture == "logical":
            drain(scenario.engine, scenario.es, spec)  # the slot's changes from before the sync
        scenario.execute(
            f"UPDATE {table} SET title = 'changed', updated_at = now() "
            "WHERE ts IN ('infinity', '2026-02-01 03:00+00')"
        )
        scenario.execute(f"DELETE FROM {table} WHERE ts = '-infinity'")
        totals = drain(scenario.engine, scenario.es, spec)
        assert (totals.indexed, totals.dead_lettered, totals.failed) == (1, 1, 0), totals
        docs = indexed(scenario.es, scenario.index)
        assert len(docs) == 10 and docs["2026-02-01T03:00:00.000000Z"]["title"] == "changed"
        drift, dead = _verified(spec, live)
        assert (drift, dead) == (0, 1)
    finally:
        uninstall_capture(scenario.engine, spec)
    CHAOS_RESULTS.append((f"±infinity timestamp primary key, {capture}", 15, drift, dead))


def test_a_key_over_the_id_limit_is_a_dead_letter_not_a_stuck_drain(scenario, live):
    """A text key of 600 bytes: Elasticsearch refuses an `_id` over 512 bytes."""
    table = f"{scenario.table}_k"
    scenario.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, title text, updated_at timestamptz)")
    try:
        spec = scenario.spec(source=f"table: {table}", extra="    capture: triggers")
        long_key = "k" * 600
        rows = [{"id": f"r{i}", "t": f"row {i}"} for i in range(50)] + [{"id": long_key, "t": "long"}]
        scenario.execute(f"INSERT INTO {table} VALUES (:id, :t, timestamptz '2026-02-03 00:00+00')", rows)
        install_capture(scenario.engine, spec)
        summary = run_sync(
            spec, at("2026-02-01"), at("2026-03-01"), servers=Servers(live.pg_url, live.es_url)
        )
        assert summary.success and summary.indexed == 50 and summary.dead_lettered == 1, summary.error
        scenario.execute(f"UPDATE {table} SET title = 'changed' WHERE id IN (:a, 'r0')", {"a": long_key})
        totals = drain(scenario.engine, scenario.es, spec)
        assert totals.failed == 0 and totals.dead_lettered == 1
        assert indexed(scenario.es, scenario.index)["r0"]["title"] == "changed"
        assert not buffer.has_pending(scenario.engine, spec)
        assert "512" in _dead_letters(scenario)[long_key]["reason"]
        drift, unrepresentable = _verified(spec, live)
        assert (drift, unrepresentable) == (0, 1)
        agree = metrics_agree(scenario.engine, scenario.es, spec, 52, drift, 1)
    finally:
        scenario.engine.dispose()
        uninstall_capture(
            scenario.engine, scenario.spec(source=f"table: {table}", extra="    capture: triggers")
        )
        scenario.execute(f"DROP TABLE IF EXISTS {table}")
    CHAOS_RESULTS.append(("a text key over the 512-byte _id limit", 52, drift, 1, agree))


def test_a_drains_fan_out_of_large_documents_is_cut_at_bulk_max_mb(scenario, live, monkeypatch):
    """A drain's batch of 20 documents of ~150 KB (a related table's fan-out pages take the
    same send): one 3 MB request before, now requests of at most the spec's 1 MiB (plus the one
    document that crosses it)."""
    spec = scenario.spec(extra="    capture: triggers")
    spec = spec.model_copy(update={"target": spec.target.model_copy(update={"bulk_max_mb": 1.0})})
    seed(scenario, 20, pad=150_000)
    install_capture(scenario.engine, spec)
    try:
        assert run_sync(
            spec, at("2026-02-01"), at("2026-03-01"), servers=Servers(live.pg_url, live.es_url)
        ).success
        scenario.execute(f"UPDATE {scenario.table} SET title = title || 'y'")
        sizes: list[int] = []
        client = type(scenario.es)
        sent = client.bulk

        def recording(self, *args, **kwargs):
            sizes.append(len(kwargs.get("operations") or b""))
            return sent(self, *args, **kwargs)

        monkeypatch.setattr(client, "bulk", recording)
        totals = drain(scenario.engine, scenario.es, spec)
        monkeypatch.undo()
        assert totals.indexed == 20 and totals.failed == 0
        assert len(sizes) >= 3 and max(sizes) <= spec.target.bulk_max_bytes + 200_000
        assert sum(sizes) > 20 * 150_000
        drift, _ = _verified(spec, live)
        assert drift == 0
        agree = metrics_agree(scenario.engine, scenario.es, spec, 20, drift, 0)
    finally:
        scenario.engine.dispose()
        uninstall_capture(scenario.engine, spec)
    CHAOS_RESULTS.append(("a drain's fan-out of 150 KB documents, cut at bulk_max_mb", 20, drift, 0, agree))


@pytest.mark.parametrize("depth", [30, 1100])
def test_json_nested_deeper_than_the_index_or_the_parser_takes_is_a_dead_letter(scenario, live, depth):
    """30 levels: past the index's mapping depth limit (20), Elasticsearch refuses the document;
    1100: past every parser's limit (orjson's, Elasticsearch's). Either way a dead letter of the
    sync and the drain, and verify counts it as one, not as drift."""
    spec = scenario.spec(extra="    capture: triggers")
    deep = '{"a": ' * depth + "1" + "}" * depth
    seed(scenario, 20)
    scenario.execute(
        f"UPDATE {scenario.table} SET payload = CAST(:deep AS jsonb) WHERE id = 3", {"deep": deep}
    )
    install_capture(scenario.engine, spec)
    try:
        summary = run_sync(
            spec, at("2026-02-01"), at("2026-03-01"), servers=Servers(live.pg_url, live.es_url)
        )
        assert summary.success and summary.indexed == 19 and summary.dead_lettered == 1, summary.error
        scenario.execute(
            f"UPDATE {scenario.table} SET payload = CAST(:deep AS jsonb) WHERE id = 5", {"deep": deep}
        )
        scenario.execute(f"UPDATE {scenario.table} SET title = 'after' WHERE id = 6")
        totals = drain(scenario.engine, scenario.es, spec)
        assert totals.failed == 0 and totals.dead_lettered == 1
        assert indexed(scenario.es, scenario.index)["6"]["title"] == "after"
        assert not buffer.has_pending(scenario.engine, spec)
        assert sorted(_dead_letters(scenario)) == ["3", "5"]
        drift, dead = _verified(spec, live)
        assert (drift, dead) == (0, 2)
    finally:
        scenario.engine.dispose()
        uninstall_capture(scenario.engine, spec)
    CHAOS_RESULTS.append((f"JSON nested {depth} deep", 22, drift, 2))


def _http_limit_bytes(es) -> int:
    """The node's http.max_content_length (100mb when the node does not set it)."""
    found = es.perform("GET", "/_nodes/_local/settings", {"filter_path": "nodes.*.settings.http"})
    text = "100mb"
    for node in (found or {}).get("nodes", {}).values():
        text = node["settings"]["http"].get("max_content_length", text)
    units = {"gb": 1 << 30, "mb": 1 << 20, "kb": 1 << 10, "b": 1}
    unit = next(u for u in units if text.lower().endswith(u))
    return int(float(text[: -len(unit)]) * units[unit])


def test_a_document_over_the_servers_request_limit_is_a_dead_letter_and_the_rest_flows(scenario, live):
    """A real 413: one row whose document alone is larger than the node's http.max_content_length
    (32mb on the project's local nodes) — under the full sync, then under a trigger drain beside
    ordinary changes. It becomes a dead letter with the server's refusal; everything else lands."""
    limit = _http_limit_bytes(scenario.es)
    if limit > 64 << 20:
        pytest.skip(f"the search server takes requests up to {limit:,} bytes: too large a row to make")
    spec = scenario.spec()
    servers = Servers(live.pg_url, live.es_url)
    seed(scenario, 50)
    huge = "UPDATE {t} SET title = repeat('x', :size) WHERE id = :id"
    scenario.execute(huge.format(t=scenario.table), {"size": limit + (1 << 20), "id": 7})
    install_capture(scenario.engine, spec)
    try:
        summary = run_sync(spec, at("2026-02-01"), at("2026-03-01"), servers=servers)
        assert summary.indexed == 49 and summary.dead_lettered == 1
        dead = _dead_letters(scenario)
        assert list(dead) == ["7"] and dead["7"]["status"] == 413

        scenario.execute(huge.format(t=scenario.table), {"size": limit + (1 << 20), "id": 9})
        scenario.execute(f"UPDATE {scenario.table} SET title = 'changed' WHERE id IN (10, 11)")
        totals = drain(scenario.engine, scenario.es, spec)
        assert totals.dead_lettered == 1 and totals.indexed == 2
        assert sorted(_dead_letters(scenario), key=int) == ["7", "9"]
        with scenario.engine.connect() as conn:
            assert buffer.buffer_state(conn, spec).pending == 0  # the claim moved on
        scenario.es.indices.refresh(index=scenario.index)
        assert scenario.es.get(index=scenario.index, id="10")["_source"]["title"] == "changed"
        assert "7" not in indexed(scenario.es, scenario.index)
        drift, dead_rows = _verified(spec, live)
        assert (drift, dead_rows) == (0, 2)
    finally:
        uninstall_capture(scenario.engine, spec)
    CHAOS_RESULTS.append(("a document over the server's request limit (413)", 4, drift, 2))
