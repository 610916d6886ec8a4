"""sync_pipeline: lossless PostgreSQL → Elasticsearch sync, orchestrated by Dagster.

The package is layered (docs/architecture.md): core → io → ops → defs → apps,
with dev/ for local services and demo data; `definitions.py` is the code location.
"""

from sync_pipeline.memory import bound_native_memory

bound_native_memory()  # before anything allocates through Arrow or starts a thread

__version__ = "0.1.0"


def __getattr__(name: str):
    # `dagster … -m sync_pipeline` keeps working: Dagster finds the code location among the
    # package's members, built only when asked for (importing the package loads no specs)
    if name == "code_location":
        from sync_pipeline.definitions import defs

        return defs
    raise AttributeError(f"module 'sync_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*globals(), "code_location"]
