"""The staging area: each window's extract (Parquet) and documents (bulk NDJSON) on disk.

Files are written under a temporary name and renamed once complete, so a crash
(or a consumer that stops early) never leaves a partial file that a later step
could mistake for a complete stage.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sync_pipeline.core.load.bulk import BulkBody
from sync_pipeline.core.sql.columns import ColumnInfo, columns_of


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner can enter (0700): staged files are the user's rows."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    status = path.stat()
    if status.st_mode & 0o077 and status.st_uid == os.getuid():
        path.chmod(0o700)  # made earlier or by mkdir's parents: ours, so narrowed
    return path


class StagingArea:
    """`<base>/<spec>/<window key>.<suffix>`, every directory private."""

    def __init__(self, base_dir: str | Path) -> None:
        self.base_dir = Path(base_dir)

    def path(self, spec_name: str, window_key: str, suffix: str) -> Path:
        private_dir(self.base_dir)
        return private_dir(self.base_dir / spec_name) / f"{window_key}.{suffix}"

    def purge(self, older_than: float, spec_name: str | None = None) -> int:
        """Delete staged files (and leftovers of interrupted writes) last written more than
        `older_than` seconds ago, of one spec or all; the number deleted. A run in progress
        writes its files now, so they are never that old."""
        cutoff = time.time() - older_than
        folders = (
            [self.base_dir / spec_name] if spec_name else [p for p in self.base_dir.glob("*") if p.is_dir()]
        )
        deleted = 0
        for folder in folders:
            for path in folder.glob("*") if folder.is_dir() else ():
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
                    deleted += 1
        return deleted


def staged_pages(pages: Iterator[pa.RecordBatch], schema: pa.Schema, path: Path) -> Iterator[pa.RecordBatch]:
    """Pages passed through, each also written to a Parquet file (renamed into place at the end)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    # no column statistics: nothing reads them, and the writer keeps every row group's in memory
    with pq.ParquetWriter(tmp, schema, compression="zstd", write_statistics=False) as writer:
        for batch in pages:
            writer.write_batch(batch)
            yield batch
    tmp.replace(path)


def staged_bodies(bodies: Iterator[BulkBody], path: Path) -> Iterator[BulkBody]:
    """Bodies passed through, each also appended to an NDJSON file (renamed into place at the end)."""
    tmp = path.with_suffix(".ndjson.tmp")
    with tmp.open("wb") as out:
        for body in bodies:
            out.write(body.data)
            yield body
    tmp.replace(path)


@contextmanager
def staging_to(path: Path) -> Iterator[Callable[[Iterable[BulkBody]], Iterator[BulkBody]]]:
    """`staged_bodies` for several streams of bodies in turn (a window read by key ranges): each
    passed through and appended to one NDJSON file, renamed into place once all went through."""
    tmp = path.with_suffix(".ndjson.tmp")
    with tmp.open("wb") as out:

        def through(bodies: Iterable[BulkBody]) -> Iterator[BulkBody]:
            for body in bodies:
                out.write(body.data)
                yield body

        yield through
    tmp.replace(path)


def staged_columns(path: Path) -> list[ColumnInfo]:
    return columns_of(pq.read_schema(path))


def read_batches(path: Path, batch_size: int) -> Iterator[pa.RecordBatch]:
    """Stream a staged Parquet file as record batches of at most `batch_size` rows."""
    yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size)


def staged_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from handle
