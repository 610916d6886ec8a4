"""Servers and files: PostgreSQL, the search server, staged Parquet.

Importing this layer caps glibc's arenas and fixes its mmap threshold (sync_pipeline.memory):
it is where bulk threads start and Arrow allocates, and it is never imported by the Flask
extension, whose web worker keeps its own allocator settings.
"""

from sync_pipeline.memory import bound_native_memory

bound_native_memory()
