"""Importing sync_pipeline tunes the allocators, unless the process opts out."""

import os
import subprocess
import sys

import pytest

_PROBE = "import sync_pipeline, pyarrow; print(pyarrow.default_memory_pool().backend_name)"


def _pool_backend(**env: str) -> str:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"ARROW_DEFAULT_MEMORY_POOL", "SYNC_PIPELINE_TUNE_MEMORY"}
    }
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_import_puts_arrow_on_the_system_allocator() -> None:
    assert _pool_backend() == "system"


def test_opt_out_leaves_arrows_default_pool() -> None:
    if not _has_jemalloc():
        pytest.skip("this pyarrow build has no jemalloc pool")
    assert _pool_backend(SYNC_PIPELINE_TUNE_MEMORY="0") != "system"


def test_an_explicit_pool_setting_wins() -> None:
    assert _pool_backend(ARROW_DEFAULT_MEMORY_POOL="mimalloc") == "mimalloc"


def _has_jemalloc() -> bool:
    import pyarrow

    try:
        pyarrow.jemalloc_memory_pool()
    except NotImplementedError:
        return False
    return True
