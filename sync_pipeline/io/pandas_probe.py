"""Keep pyarrow from importing pandas for nothing.

pyarrow's first conversion of Python values (any `pa.array`, a string given to a compute
function) probes whether they are pandas objects, and that probe imports pandas when it is
installed (a development or bench environment, or a user's own): 0.3-0.8 CPU-s per process
for nothing, as no pandas object reaches pyarrow in a sync or a drain. An explicit pandas
conversion (`to_pandas`) still imports it: pyarrow retries the import for those.
"""

from __future__ import annotations

import sys
from typing import Any


def skip_pandas_probe() -> None:
    """Let pyarrow decide pandas is absent unless something already imported it."""
    if "pandas" in sys.modules:
        return
    sys.meta_path.insert(0, _NoPandas)
    try:
        import pyarrow as pa

        pa.array([0])
    finally:
        sys.meta_path.remove(_NoPandas)


class _NoPandas:
    """An import finder that fails `import pandas` (only while pyarrow probes, above)."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas":
            raise ImportError("pandas is not probed by the sync")
