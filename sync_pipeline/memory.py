"""Keep the sync process's resident memory bounded by its batches, not by its history.

Allocators otherwise hold on to memory a sync has already freed:
pyarrow's default jemalloc pool keeps freed pages for reuse, glibc gives
every thread that allocates (the bulk senders) an arena of its own that it
rarely returns, and glibc's adaptive mmap threshold moves multi-MB bulk
bodies into the heap, where they fragment it. All must be set before the
first allocation they govern: the pool setting is made when the package is
imported, the glibc settings when sync_pipeline.io or sync_pipeline.defs is
(a web process that only imports the Flask extension keeps its allocator).
Measured: peak RSS of a 20k-row sync 403 MB as is, 308 MB with the pool and
arena settings; of a 300k-row sync 304-313 MB → 277-278 MB with the fixed
mmap threshold and no Parquet statistics (docs/benchmarks.md).
"""

import ctypes
import ctypes.util
import os

from sync_pipeline.settings import memory_tuning_enabled

# glibc's mallopt parameter numbers
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# allocations from this size up get pages of their own, returned to the system when freed
_MMAP_THRESHOLD_BYTES = 1024 * 1024


def prefer_system_pool() -> None:
    """Arrow on the system allocator (unless ARROW_DEFAULT_MEMORY_POOL says otherwise): an
    environment variable pyarrow reads on first use, so cheap enough for any import."""
    if memory_tuning_enabled():
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


def bound_native_memory(arenas: int = 2) -> None:
    """Arrow on the system allocator, at most `arenas` glibc arenas, a fixed mmap threshold.

    Explicit ARROW_DEFAULT_MEMORY_POOL / MALLOC_ARENA_MAX / MALLOC_MMAP_THRESHOLD_ settings win, and
    SYNC_PIPELINE_TUNE_MEMORY=0 leaves the process alone (for an application
    that imports sync_pipeline and tunes its own allocators).
    """
    if not memory_tuning_enabled():
        return
    prefer_system_pool()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return
    if libc is not None and hasattr(libc, "mallopt"):  # glibc; musl and macOS have nothing to tune
        if "MALLOC_ARENA_MAX" not in os.environ:
            libc.mallopt(_M_ARENA_MAX, arenas)
        if "MALLOC_MMAP_THRESHOLD_" in os.environ:
            return
        # a fixed threshold: glibc otherwise raises it to the size of the largest block freed
        # (a 5 MB bulk body), after which every body lands in the heap and fragments it
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
