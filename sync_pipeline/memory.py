"""Keep the sync process's resident memory bounded by its batches, not by its history.

Two allocators otherwise hold on to memory a sync has already freed:
pyarrow's default jemalloc pool keeps freed pages for reuse, and glibc gives
every thread that allocates (the bulk senders) an arena of its own that it
rarely returns. Both must be set before the first allocation they govern,
so this runs when the package is imported. Measured on a 20k-row sync: peak
RSS 403 MB as is, 308 MB with both (docs/benchmarks.md).
"""

import ctypes
import ctypes.util
import os

_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def bound_native_memory(arenas: int = 2) -> None:
    """Arrow on the system allocator, at most `arenas` glibc arenas.

    Explicit ARROW_DEFAULT_MEMORY_POOL / MALLOC_ARENA_MAX settings win, and
    SYNC_PIPELINE_TUNE_MEMORY=0 leaves the process alone (for an application
    that imports sync_pipeline and tunes its own allocators).
    """
    if os.environ.get("SYNC_PIPELINE_TUNE_MEMORY", "1") == "0":
        return
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # read by pyarrow on first use
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return
    if libc is not None and hasattr(libc, "mallopt"):  # glibc; musl and macOS have nothing to tune
        libc.mallopt(_M_ARENA_MAX, arenas)
