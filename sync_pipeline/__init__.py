"""sync_pipeline: lossless PostgreSQL → Elasticsearch sync, orchestrated by Dagster."""

from sync_pipeline.memory import bound_native_memory

bound_native_memory()  # before anything allocates through Arrow or starts a thread

import dagster as dg  # noqa: E402

__version__ = "0.1.0"


@dg.definitions
def defs() -> dg.Definitions:
    # lazy: the spec file is read when Dagster loads the code location, not on
    # every import of the package (the CLI's `services` commands need no specs)
    from sync_pipeline.definitions import load_definitions

    return load_definitions()
