"""In-process progress listeners, so the CLI can draw a bar while assets run.

Only meaningful with the in-process executor the CLI uses; runs launched from
the UI have no listener and this is a no-op there. The listeners are the
process's state, so they live here with the use cases that report to them,
not in core/ (which holds no state).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

_listeners: list[Callable[[str, dict[str, Any]], None]] = []


def notify(event: str, **data: Any) -> None:
    for listener in list(_listeners):
        listener(event, data)


@contextmanager
def listening(listener: Callable[[str, dict[str, Any]], None]):
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
