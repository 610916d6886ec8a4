"""sync_pipeline: lossless PostgreSQL → Elasticsearch sync, orchestrated by Dagster.

The package is layered (docs/architecture.md): core → io → ops → defs → apps,
with dev/ for local services and demo data; `definitions.py` is the code location.
"""

from sync_pipeline.memory import prefer_system_pool

# only the environment here: importing the package (a Flask worker importing the extension)
# tunes no allocator; sync_pipeline.io and sync_pipeline.defs, the layers that start bulk
# threads and allocate through Arrow, call bound_native_memory() when they are imported
prefer_system_pool()


def _version() -> str:
    # spelled once, in pyproject.toml; a checkout that was never installed has no metadata
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sync-pipeline")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _version()


def __getattr__(name: str):
    # `dagster … -m sync_pipeline` keeps working: Dagster finds the code location among the
    # package's members, built only when asked for (importing the package loads no specs)
    if name == "code_location":
        from sync_pipeline.definitions import defs

        return defs
    raise AttributeError(f"module 'sync_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*globals(), "code_location"]
