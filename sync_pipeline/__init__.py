"""sync_pipeline: lossless PostgreSQL → Elasticsearch sync, orchestrated by Dagster.

The package is layered (docs/architecture.md): core → io → ops → defs → apps,
with dev/ for local services and demo data; `definitions.py` is the code location.
"""

from sync_pipeline.memory import bound_native_memory

bound_native_memory()  # before anything allocates through Arrow or starts a thread

__version__ = "0.1.0"
