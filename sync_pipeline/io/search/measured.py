"""The search target, measured: a decorator around the port that times each bulk request and
counts its bytes and its 429 and 5xx answers, whichever load sends it (bulk_load's windows and
drains, verify's repairs). Every other call passes through untouched.

A 429 or 5xx is counted where the server says it, once per answer: a whole request refused
(with_backoff sends it again) or a document of a bulk response (send_body sends those again);
what still fails after the retries is also counted as failed documents by the load itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from sync_pipeline.core.mapping.dialect import Server
from sync_pipeline.io.search.errors import SearchApiError
from sync_pipeline.io.search.port import Body, SearchTarget


class BulkRecorder(Protocol):
    def record_bulk(self, seconds: float, size: int, throttled: int, server_errors: int) -> None: ...


def _answers(status: int) -> tuple[int, int]:
    return int(status == 429), int(status >= 500)


def _item_answers(response: Any) -> tuple[int, int]:
    """Documents of a bulk response answered 429 or 5xx (only read when the response has errors)."""
    if not isinstance(response, Mapping) or not response.get("errors"):
        return 0, 0
    throttled = server_errors = 0
    for item in response.get("items") or ():
        status = next(iter(item.values()), {}).get("status", 0)
        throttled += status == 429
        server_errors += status >= 500
    return throttled, server_errors


class MeasuredTarget:
    """`target`, with every bulk request reported to `recorder` (thread-safe if it is: bulk
    requests are sent from several threads at once)."""

    def __init__(self, target: SearchTarget, recorder: BulkRecorder) -> None:
        self._target = target
        self._recorder = recorder
        self.indices = target.indices
        self.nodes = target.nodes
        self.cluster = target.cluster

    @property
    def server(self) -> Server:
        return self._target.server

    @property
    def where(self) -> str:
        return self._target.where

    def bulk(
        self, *, operations: bytes | Iterable[Mapping[str, Any]], index: str | None = None, **kw: Any
    ) -> Any:
        size = len(operations) if isinstance(operations, bytes) else 0
        started = time.perf_counter()
        try:
            response = self._target.bulk(operations=operations, index=index, **kw)
        except SearchApiError as exc:
            self._recorder.record_bulk(time.perf_counter() - started, size, *_answers(exc.status_code))
            raise
        except Exception:
            self._recorder.record_bulk(time.perf_counter() - started, size, 0, 0)
            raise
        body = getattr(response, "body", response)
        self._recorder.record_bulk(time.perf_counter() - started, size, *_item_answers(body))
        return response

    def count(self, *, index: str, **kw: Any) -> Body:
        return self._target.count(index=index, **kw)

    def search(self, *, index: str, **kw: Any) -> Body:
        return self._target.search(index=index, **kw)

    def get(self, *, index: str, id: str, **kw: Any) -> Body:
        return self._target.get(index=index, id=id, **kw)

    def check(self) -> Server:
        return self._target.check()

    def close(self) -> None:
        self._target.close()

    def __getattr__(self, name: str) -> Any:
        # the client's calls beyond the port (index, delete, perform…), for code that uses them
        return getattr(self._target, name)
