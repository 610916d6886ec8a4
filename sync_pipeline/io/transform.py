"""A spec's pandas transform, imported from the user's code and wrapped as Arrow → Arrow.

pandas is imported here and only here, and only for a spec that names a transform: the Arrow
path (no transform) never imports it (io/pandas_probe.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from sync_pipeline.core.documents.transform import TableTransform
from sync_pipeline.core.spec.model import SyncSpec
from sync_pipeline.core.sql.statements import SourceError

_resolved: dict[str, Callable[[Any], Any]] = {}


def resolve(spec: SyncSpec) -> TableTransform | None:
    """The spec's transform as a callable over Arrow tables; None without one. A SourceError
    names spec, module and function when pandas or the callable cannot be imported."""
    if spec.transform is None:
        return None
    path = spec.transform.pandas
    where = f"spec '{spec.name}': transform {{pandas: {path}}}"
    try:
        import pandas as pd
    except ImportError:
        raise SourceError(f"{where} needs pandas: pip install 'sync-pipeline[pandas]'") from None
    function = _resolved.get(path) or _imported(path, where)
    _resolved[path] = function

    def apply(table: pa.Table) -> pa.Table:
        # Arrow-backed columns: no copy of strings in, none out, nulls stay nulls in integers
        frame = table.to_pandas(types_mapper=pd.ArrowDtype)
        out = function(frame)
        if not isinstance(out, pd.DataFrame):
            raise TypeError(f"{path} returned {type(out).__name__}, not a DataFrame")
        if not out.index.equals(frame.index):
            raise ValueError(f"{path} returned rows under another index (reordered, filtered or added)")
        return pa.Table.from_pandas(out, preserve_index=False)

    return apply


def _imported(path: str, where: str) -> Callable[[Any], Any]:
    module_name, _, name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SourceError(f"{where}: cannot import module '{module_name}': {exc}") from None
    function = getattr(module, name, None)
    if function is None:
        raise SourceError(f"{where}: module '{module_name}' has no function '{name}'")
    if not callable(function):
        raise SourceError(f"{where}: '{name}' in module '{module_name}' is not callable")
    return function
