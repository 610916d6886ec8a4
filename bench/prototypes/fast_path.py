"""Prototype of the proposed changes to sync_pipeline's documents and index steps.

Not used by the pipeline; bench.scenarios `proto-fast` times it, and
`check_equivalent` proves it produces the same documents as
sync_pipeline.transform. Two changes, each measured separately:

1. **Documents straight from Arrow to bulk-ready NDJSON.** Cleansing runs as
   Arrow compute kernels on the record batch (as today), but rows are built
   with `RecordBatch.to_pylist()` instead of `DataFrame.to_dict("records")`
   over Arrow-backed columns, and JSON/array columns are embedded as
   `orjson.Fragment` (the text PostgreSQL produced, already valid JSON) instead
   of being parsed and re-serialised. Each document is written as its two bulk
   lines (action + source), so the load step needs no JSON work at all.
2. **Parallel raw bulk load.** The load slices the staged bulk NDJSON into
   bodies of `batch_size` documents and keeps `threads` requests in flight
   (`es.bulk(operations=bytes)`), reading back only the per-item errors
   (`filter_path=errors,items.*.error`), mapped to documents by position:
   409s are stale, everything else is a failure/refusal as in load.py.
   Memory stays at about (threads + 1) bodies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sync_pipeline.specs import SyncSpec
from sync_pipeline.transform import DocumentPlan, FieldPlan

_TEXTUAL = {"text", "varchar", "bpchar", "name", "citext"}


def _cleanse(array: pa.Array, field: FieldPlan, naive_timezone: str) -> list[Any]:
    """One column → Python values, the same values sync_pipeline.transform.cleanse_column yields."""
    info = field.column_info
    if info.staging == "json":
        return [None if v is None else orjson.Fragment(v) for v in array.to_pylist()]
    if info.pg_type == "numeric":
        array = pc.cast(array, pa.float64())
    if info.pg_type in ("float4", "float8", "numeric"):
        finite = pc.is_finite(array)
        return pc.if_else(finite, array, pa.scalar(None, pa.float64())).to_pylist()
    if info.pg_type in ("timestamptz", "timestamp"):
        if info.pg_type == "timestamp":
            array = pc.assume_timezone(array, naive_timezone, ambiguous="earliest", nonexistent="latest")
            array = array.cast(pa.timestamp("us", tz="UTC"))
        return pc.binary_join_element_wise(
            pc.strftime(array, format="%Y-%m-%dT%H:%M:%S"), pa.scalar("Z"), pa.scalar("")
        ).to_pylist()
    if info.pg_type == "date":
        return pc.strftime(array, format="%Y-%m-%d").to_pylist()
    if pa.types.is_string(array.type) or info.pg_type in _TEXTUAL or info.staging == "text":
        for step in field.cleanse:
            if step == "trim":
                array = pc.utf8_trim_whitespace(array)
            elif step == "lowercase":
                array = pc.utf8_lower(array)
            elif step == "empty_to_null":
                array = pc.if_else(pc.equal(array, ""), pa.scalar(None, array.type), array)
    return array.to_pylist()


def _ids(batch: pa.RecordBatch, spec: SyncSpec) -> list[str]:
    from sync_pipeline.transform import document_id

    keys = spec.source.primary_key
    if len(keys) == 1:
        return [str(v) for v in batch.column(keys[0]).to_pylist()]
    columns = [batch.column(k).to_pylist() for k in keys]
    return [document_id(k) for k in zip(*columns, strict=True)]


def _versions(batch: pa.RecordBatch, spec: SyncSpec) -> list[int]:
    column = batch.column(spec.source.version or spec.source.updated_at)
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("us", tz="UTC") if column.type.tz else pa.timestamp("us")).cast(
            pa.int64()
        )
    values = pc.fill_null(column.cast(pa.int64()), 0)
    return pc.max_element_wise(values, pa.scalar(0, pa.int64())).to_pylist()


def _deleted(batch: pa.RecordBatch, spec: SyncSpec) -> list[bool]:
    column = spec.source.soft_delete
    if column is None:
        return [False] * batch.num_rows
    values = batch.column(column)
    if pa.types.is_boolean(values.type):
        return pc.fill_null(values, False).to_pylist()
    return pc.is_valid(values).to_pylist()


def batch_to_bulk_ndjson(batch: pa.RecordBatch, plan: DocumentPlan) -> tuple[bytes, int, int]:
    """A staged record batch → bulk NDJSON (action + source per document); (bytes, docs, deletes)."""
    spec = plan.spec
    names = [f.name for f in plan.fields]
    values = [_cleanse(batch.column(f.column), f, spec.naive_timezone) for f in plan.fields]
    ids, versions, deleted = _ids(batch, spec), _versions(batch, spec), _deleted(batch, spec)
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    out: list[bytes] = []
    deletes = 0
    for i, row in enumerate(zip(*values, strict=True)):
        head = b'{"_id":' + dumps(ids[i]) + b',"version":%d,"version_type":"external_gte"}}\n' % versions[i]
        if deleted[i]:
            out.append(b'{"delete":' + head)
            deletes += 1
        else:
            out.append(b'{"index":' + head)
            out.append(dumps(dict(zip(names, row, strict=True)), option=newline))
    return b"".join(out), batch.num_rows, deletes


def parquet_to_bulk_ndjson(
    source: Path, target: Path, plan: DocumentPlan, batch_size: int
) -> tuple[int, int]:
    docs = deletes = 0
    with target.open("wb") as out:
        for batch in pq.ParquetFile(source).iter_batches(batch_size=batch_size):
            data, n, d = batch_to_bulk_ndjson(batch, plan)
            out.write(data)
            docs += n
            deletes += d
    return docs, deletes


# --- load ---------------------------------------------------------------------------------------


def iter_bodies(path: Path, docs_per_body: int) -> Iterator[tuple[bytes, list[str]]]:
    """Bulk bodies of at most `docs_per_body` documents, with each operation's kind, streamed."""
    ops: list[str] = []
    lines: list[bytes] = []
    with path.open("rb") as handle:
        for line in handle:
            if line.startswith(b'{"delete":'):
                ops.append("delete")
                lines.append(line)
            elif line.startswith(b'{"index":'):
                ops.append("index")
                lines.append(line)
                lines.append(next(handle))
            if len(ops) >= docs_per_body:
                yield b"".join(lines), ops
                ops, lines = [], []
    if ops:
        yield b"".join(lines), ops


@dataclass
class LoadTotals:
    indexed: int = 0
    deleted: int = 0
    stale_skipped: int = 0
    failed: int = 0
    rejected: int = 0
    bodies: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _send(es, index: str, body: bytes, ops: list[str], totals: LoadTotals) -> None:
    response = es.bulk(operations=body, index=index, filter_path="errors,items.*.error,items.*.status")
    counts = {"indexed": 0, "deleted": 0, "stale": 0, "failed": 0, "rejected": 0}
    errors: list[dict[str, Any]] = []
    if not response.get("errors"):
        counts["deleted"] = sum(1 for op in ops if op == "delete")
        counts["indexed"] = len(ops) - counts["deleted"]
    else:
        for op, item in zip(ops, response["items"], strict=True):
            info = next(iter(item.values()))
            status = info.get("status", 200)
            if "error" not in info or (op == "delete" and status == 404):
                counts["deleted" if op == "delete" else "indexed"] += 1
            elif status == 409:
                counts["stale"] += 1
            else:
                counts["failed" if status in (429, 502, 503, 504) or status >= 500 else "rejected"] += 1
                errors.append(info["error"])
    with totals.lock:
        totals.indexed += counts["indexed"]
        totals.deleted += counts["deleted"]
        totals.stale_skipped += counts["stale"]
        totals.failed += counts["failed"]
        totals.rejected += counts["rejected"]
        totals.bodies += 1
        totals.errors.extend(errors[: max(0, 5 - len(totals.errors))])


def parallel_load(es, index: str, path: Path, docs_per_body: int, threads: int) -> LoadTotals:
    """At most `threads` bulk requests in flight; bodies are read from disk as slots free up.

    (The production version would keep load.py's retry policy and dead-letter
    accounting per body; the prototype only counts.)
    """
    totals = LoadTotals()
    pending: set[Future] = set()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for body, ops in iter_bodies(path, docs_per_body):
            if len(pending) >= threads:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
            pending.add(pool.submit(_send, es, index, body, ops, totals))
        for future in pending:
            future.result()
    return totals


# --- equivalence with sync_pipeline.transform ---------------------------------------------------


def check_equivalent(
    source: Path, plan: DocumentPlan, batch_size: int, limit_batches: int = 3
) -> dict[str, Any]:
    """Parse both outputs and compare: same ids, ops, versions and _source documents."""
    from sync_pipeline.transform import frame_to_documents, record_batch_to_frame

    compared = differing = 0
    example = None
    for number, batch in enumerate(pq.ParquetFile(source).iter_batches(batch_size=batch_size)):
        if number >= limit_batches:
            break
        expected = frame_to_documents(record_batch_to_frame(batch), plan)
        data, _, _ = batch_to_bulk_ndjson(batch, plan)
        lines = iter(data.splitlines())
        for doc_id, doc, is_deleted, version in zip(
            expected.ids, expected.documents, expected.deleted, expected.versions, strict=True
        ):
            action = orjson.loads(next(lines))
            op, meta = next(iter(action.items()))
            got_doc = None if op == "delete" else orjson.loads(next(lines))
            want_doc = None if is_deleted else orjson.loads(orjson.dumps(doc))
            same = (
                meta["_id"] == doc_id
                and meta["version"] == version
                and (op == "delete") == is_deleted
                and got_doc == want_doc
            )
            compared += 1
            if not same:
                differing += 1
                example = example or {"id": doc_id, "expected": want_doc, "got": got_doc}
    return {"compared": compared, "differing": differing, "example": example}


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - started


# --- streaming: extract, documents and load overlapped ------------------------------------------


def stream_sync(
    conn, es, plan: DocumentPlan, index: str, threads: int, page_size: int
) -> tuple[LoadTotals, dict]:
    """Pages straight from PostgreSQL (sync_pipeline.extract.iter_pages: the same keyset pages in
    one REPEATABLE READ snapshot) → bulk NDJSON → up to `threads` bulk requests in flight, so
    reading and transforming page k+1 overlaps with Elasticsearch indexing page k.
    (No Parquet/NDJSON staging: a production version would keep writing the staged files as a
    side output so a failed load can resume from them.)"""
    from sync_pipeline.extract import describe_source, iter_pages

    totals = LoadTotals()
    spent = {"extract": 0.0, "documents": 0.0}
    columns = describe_source(conn, plan.spec)
    pages = iter_pages(conn, plan.spec, columns, None, page_size, modes=["null_updated_at", "window"])
    pending: set[Future] = set()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        while True:
            started = time.perf_counter()
            batch = next(pages, None)
            spent["extract"] += time.perf_counter() - started
            if batch is None:
                break
            started = time.perf_counter()
            body, _, _ = batch_to_bulk_ndjson(batch, plan)
            actions = (line for line in body.splitlines() if line.startswith((b'{"index":', b'{"delete":')))
            ops = ["delete" if line.startswith(b'{"delete":') else "index" for line in actions]
            spent["documents"] += time.perf_counter() - started
            if len(pending) >= threads:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
            pending.add(pool.submit(_send, es, index, body, ops, totals))
        for future in pending:
            future.result()
    return totals, spent
