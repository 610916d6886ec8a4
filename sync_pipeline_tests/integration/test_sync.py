"""End-to-end against the real PostgreSQL and Elasticsearch: assets run through Dagster."""

from datetime import timedelta

from dagster import DagsterEventType, DagsterInstance

from sync_pipeline.apps.cli.runner import run_sync, run_verify
from sync_pipeline.core import naming
from sync_pipeline_tests.conftest import at, indexed


def test_one_partition_syncs_exactly_its_window(scenario, insert_rows, es):
    insert_rows(range(1, 11), "2026-03-05 12:00:00+00")
    insert_rows(range(11, 16), "2026-03-06 00:00:00+00")  # next window's first instant
    insert_rows(range(16, 21), "2026-03-04 23:59:59.999999+00")
    default = scenario.spec(grain="day", start="2026-03-01")
    spec = default.model_copy(
        update={"partitions": default.partitions.model_copy(update={"lookback": timedelta(0)})}
    )

    summary = run_sync(spec, at("2026-03-05"), at("2026-03-06"))

    assert summary.success, summary.error
    assert summary.partitions == "2026-03-05"
    assert (summary.extracted, summary.indexed, summary.failed) == (10, 10, 0)
    assert sorted(indexed(es, scenario.index), key=int) == [str(i) for i in range(1, 11)]
    # the default lookback (ten minutes) also re-reads the end of the window before
    again = run_sync(default, at("2026-03-05"), at("2026-03-06"))
    assert (again.extracted, again.indexed) == (15, 15)


def test_full_sync_covers_every_row_and_rerun_is_idempotent(scenario, insert_rows, es):
    insert_rows(range(1, 51), "2026-02-10 08:00:00+00")
    insert_rows(range(51, 61), "2025-06-01 00:00:00+00")  # older than the first partition
    insert_rows(range(61, 66), None)  # no updated_at at all
    insert_rows(range(66, 71), "2099-01-01 00:00:00+00")  # stamped in the future
    insert_rows(range(71, 81), "2026-03-15 10:00:00+00", title="   ", price=None, payload=None, tags=None)
    scenario.execute(f"UPDATE {scenario.table} SET deleted = true WHERE id IN (3, 4)")
    spec = scenario.spec(extra="      soft_delete: deleted")

    first = run_sync(spec)
    assert first.success, first.error
    assert first.extracted == 80 and first.deleted == 2 and first.failed == 0
    docs = indexed(es, scenario.index)
    assert len(docs) == 78 and "3" not in docs and "4" not in docs
    assert docs["71"] == {
        "id": 71,
        "title": None,
        "price": None,
        "payload": None,
        "tags": None,
        "deleted": False,
        "updated_at": "2026-03-15T10:00:00.000000Z",
    }
    assert docs["1"]["title"] == "item 1 商品" and docs["1"]["payload"] == {"color": "红", "size": [1, 2]}
    assert docs["1"]["price"] == 19.9 and docs["1"]["tags"] == ["a", "b"]
    (report,) = run_verify([spec], [spec])
    assert report.ok, report.lines()

    second = run_sync(spec)
    assert second.success and second.failed == 0
    assert indexed(es, scenario.index) == docs
    (report,) = run_verify([spec], [spec])
    assert report.ok and report.pg_count == 78


def test_rows_sharing_one_updated_at_are_not_lost_across_page_boundaries(scenario, insert_rows, es):
    # page size = batch size = 7; 103 rows on one instant straddle 15 page boundaries
    insert_rows(range(1, 104), "2026-04-01 09:30:00+00")
    insert_rows(range(104, 109), "2026-04-01 09:30:01+00")
    spec = scenario.spec(batch_size="7")

    summary = run_sync(spec)

    assert summary.success and summary.extracted == 108
    assert summary.batches == 16  # ceil(108 / 7)
    assert sorted(map(int, indexed(es, scenario.index))) == list(range(1, 109))


def test_every_bulk_batch_is_counted_in_the_run_history(scenario, insert_rows):
    insert_rows(range(1, 121), "2026-02-01 00:00:00+00")
    spec = scenario.spec(batch_size="50")

    summary = run_sync(spec)

    instance = DagsterInstance.get()
    records = instance.all_logs(summary.run_id, of_type=DagsterEventType.ASSET_OBSERVATION)
    observed = [r.dagster_event.event_specific_data.asset_observation.metadata for r in records]
    *seen, every = observed
    # the first batch at once, then one observation per PROGRESS_SECONDS: here the other two
    assert [(b["first_batch"].value, b["batch"].value) for b in seen] == [(1, 1), (2, 3)]
    # and when the load ends, every batch in one table (defs/reporting.BatchProgress.finish)
    rows = [record.data for record in every[naming.BATCH_TABLE].records]
    assert sorted((r["batch"], r["indexed"]) for r in rows) == [(1, 50), (2, 50), (3, 20)]
    assert [b["indexed"].value for b in seen] == [50, 70]
    assert [b["docs_so_far"].value for b in seen] == [50, 120]
    assert all(b["failed"].value == 0 and b["docs_per_s"].value > 0 for b in seen)
    materializations = instance.all_logs(summary.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    index_meta = next(
        r.dagster_event.event_specific_data.materialization.metadata
        for r in materializations
        if r.dagster_event.asset_key.to_user_string().endswith("_index")
    )
    assert index_meta["dagster/row_count"].value == 120
    assert index_meta["indexed"].value == 120 and index_meta["failed"].value == 0
    assert index_meta["seconds"].value > 0


def test_verify_finds_a_missing_an_extra_and_a_changed_document(scenario, insert_rows, es):
    insert_rows(range(1, 31), "2026-02-01 00:00:00+00")
    spec = scenario.spec()
    assert run_sync(spec).success
    es.delete(index=scenario.index, id="7")
    es.index(index=scenario.index, id="999", document={"id": 999, "title": "ghost"})
    es.update(index=scenario.index, id="12", doc={"title": "tampered"})
    es.indices.refresh(index=scenario.index)

    (report,) = run_verify([spec], [spec])

    assert (report.missing, report.extra, report.mismatched) == (1, 1, 1)
    assert report.missing_ids == ["7"] and report.extra_ids == ["999"]
    assert report.mismatches[0].doc_id == "12" and report.mismatches[0].fields == ["title"]
    assert (report.pg_count, report.es_count) == (30, 30)


def test_query_spec_with_a_join_and_a_composite_key(scenario, es):
    scenario.execute(
        f"""CREATE TABLE {scenario.table}_lines (
              order_id int, line text, qty int, updated_at timestamptz, PRIMARY KEY (order_id, line));
            INSERT INTO {scenario.table}_lines
              SELECT g / 3, 'L' || (g % 3), g, '2026-02-02 00:00:00+00' FROM generate_series(3, 62) g;"""
    )
    query = (
        f"query: SELECT l.order_id, l.line, l.qty, l.updated_at, t.title FROM {scenario.table}_lines l "
        f"LEFT JOIN {scenario.table} t ON t.id = l.order_id"
    )
    text = scenario.spec_text(source=query, batch_size="9").replace(
        "primary_key: id", "primary_key: [order_id, line]"
    )
    text = text.replace("      title: {cleanse: [trim, empty_to_null]}", "      qty: {rename: quantity}")
    from sync_pipeline.core.spec.model import parse_specs

    spec = parse_specs(text)[0]
    try:
        assert run_sync(spec).success
        docs = indexed(es, scenario.index)
        assert len(docs) == 60
        assert docs['[1,"L0"]'] == {
            "order_id": 1,
            "line": "L0",
            "quantity": 3,
            "updated_at": "2026-02-02T00:00:00.000000Z",
            "title": None,
        }
        (report,) = run_verify([spec], [spec])
        assert report.ok, report.lines()
    finally:
        scenario.execute(f"DROP TABLE {scenario.table}_lines")


def test_stages_run_one_at_a_time_from_the_staged_files_give_the_streamed_result(
    scenario, insert_rows, es, tmp_path
):
    """A subset (just extract, just documents, just the load) reads the previous stage's staged
    file, so a failed load can be re-run alone; the result is what the streamed run produces."""
    from dagster import AssetKey, DagsterInstance

    from sync_pipeline.defs import build_definitions

    insert_rows(range(1, 21), "2026-02-10 08:00:00+00")
    scenario.execute(f"UPDATE {scenario.table} SET deleted = true WHERE id = 5")
    spec = scenario.spec(grain="day", start="2026-02-01", extra="      soft_delete: deleted")
    job = build_definitions([spec]).resolve_job_def(f"{spec.name}_sync")
    partition = "2026-02-10"

    def materialize(stage: str) -> None:
        result = job.execute_in_process(
            instance=DagsterInstance.get(),
            partition_key=partition,
            asset_selection=[AssetKey(f"{spec.name}_{stage}")],
            raise_on_error=False,
        )
        assert result.success, stage
        keys = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert keys == {f"{spec.name}_{stage}"}

    for stage in ("extract", "documents", "index"):
        materialize(stage)
    staged = indexed(es, scenario.index)
    assert sorted(staged, key=int) == [str(i) for i in range(1, 21) if i != 5]

    streamed = run_sync(spec, at("2026-02-10"), at("2026-02-11"))
    assert streamed.success and streamed.indexed == 19 and streamed.deleted == 1
    assert indexed(es, scenario.index) == staged


def test_the_load_alone_fails_clearly_when_nothing_was_staged(scenario, insert_rows):
    from dagster import AssetKey, DagsterInstance

    from sync_pipeline.defs import build_definitions

    insert_rows(range(1, 3), "2026-02-10 08:00:00+00")
    spec = scenario.spec(grain="day", start="2026-02-01")
    job = build_definitions([spec]).resolve_job_def(f"{spec.name}_sync")
    result = job.execute_in_process(
        instance=DagsterInstance.get(),
        partition_key="2026-02-09",
        asset_selection=[AssetKey(f"{spec.name}_index")],
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert f"materialize {spec.name}_documents first" in failure.step_failure_data.error.message


def test_a_streamed_run_stages_documents_not_rows(scenario, insert_rows, es):
    """The streamed path stages only the NDJSON the load can be re-sent from; an extract staged by
    an earlier run of the window goes, so the documents stage alone cannot rebuild from old rows."""
    from dagster import AssetKey, DagsterInstance

    from sync_pipeline import settings
    from sync_pipeline.defs import build_definitions
    from sync_pipeline.io.staging import StagingArea

    insert_rows(range(1, 11), "2026-02-10 08:00:00+00")
    spec = scenario.spec(grain="day", start="2026-02-01")
    job = build_definitions([spec]).resolve_job_def(f"{spec.name}_sync")

    def materialize(stage: str):
        return job.execute_in_process(
            instance=DagsterInstance.get(),
            partition_key="2026-02-10",
            asset_selection=[AssetKey(f"{spec.name}_{stage}")],
            raise_on_error=False,
        )

    assert materialize("extract").success
    folder = StagingArea(settings.load().staging_dir).path(spec.name, "window", "parquet").parent
    (parquet,) = folder.glob("*.parquet")

    streamed = run_sync(spec, at("2026-02-10"), at("2026-02-11"))
    assert streamed.success and streamed.indexed == 10
    assert not parquet.exists() and parquet.with_suffix(".ndjson").exists()

    documents = materialize("documents")
    assert not documents.success
    (failure,) = documents.get_step_failure_events()
    assert f"materialize {spec.name}_extract first" in failure.step_failure_data.error.message
    es.indices.delete(index=f"{scenario.index}_v1", ignore_unavailable=True)
    assert materialize("index").success  # re-sent from the staged NDJSON, PostgreSQL not read
    assert sorted(indexed(es, scenario.index), key=int) == [str(i) for i in range(1, 11)]


def test_a_batch_sent_in_parallel_parts_accounts_for_every_document(es):
    """A drain's batch goes out as several requests at once (one per write thread): the stale
    document, the refused one and every indexed one still come back counted, in one batch."""
    import uuid

    from sync_pipeline.core.load.bulk import BulkBody, entry_doc
    from sync_pipeline.io.bulk_load import MIN_PART_DOCS, send_split
    from sync_pipeline.io.search.indices import delete_index

    index = f"split_{uuid.uuid4().hex[:8]}"
    es.indices.create(
        index=index,
        mappings={"dynamic": "strict", "properties": {"n": {"type": "integer"}}},
        settings={"number_of_shards": 1, "number_of_replicas": 0},
    )
    try:
        es.index(index=index, id="7", document={"n": 7}, version=100, version_type="external")
        count = 3 * MIN_PART_DOCS
        docs = [{"_id": str(i), "_op": "index", "_version": 1, "_source": {"n": i}} for i in range(count)]
        docs[count - 2]["_source"] = {"unknown_field": 1}  # in the last part: refused by the mapping
        body = BulkBody.join(entry_doc(d) for d in docs)
        writes_before = _completed_writes(es)

        result = send_split(es, index, body, batch=3, concurrency=3)

        # one request is 2 write-pool tasks (coordination, the shard); three parts are more
        assert _completed_writes(es) - writes_before >= 3
        assert (result.batch, result.indexed, result.stale_skipped, result.failed) == (3, count - 2, 1, 0)
        assert result.stale_ids == ["7"] and result.stale_versions == {"7": 100}
        assert [r.doc_id for r in result.rejected] == [str(count - 2)]
        es.indices.refresh(index=index)
        assert es.count(index=index)["count"] == count - 1
    finally:
        delete_index(es, index)


def _completed_writes(es) -> int:
    stats = es.nodes.stats(metric="thread_pool")["nodes"]
    return sum(node["thread_pool"]["write"]["completed"] for node in stats.values())
