"""What a search server's failures look like to the rest of sync_pipeline, whatever the backend.

A response with an error status becomes a `SearchApiError` (404: `SearchNotFound`) carrying the
status and the parsed body; a server that cannot be reached raises the transport's own connection
errors, named here so that no module outside `io/search/` imports a client library.
"""

from __future__ import annotations

from typing import Any

from elastic_transport import ConnectionError as SearchConnectionError
from elastic_transport import ConnectionTimeout as SearchConnectionTimeout
from elastic_transport import TlsError as SearchTlsError

__all__ = [
    "SearchApiError",
    "SearchConnectionError",
    "SearchConnectionTimeout",
    "SearchNotFound",
    "SearchTlsError",
    "UnsupportedServer",
]


class SearchApiError(Exception):
    """The server answered with an error status."""

    def __init__(self, status_code: int, body: Any, message: str) -> None:
        super().__init__(f"{status_code} {message}")
        self.status_code = status_code
        self.body = body
        self.message = message

    @property
    def error_type(self) -> str | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error.get("type") if isinstance(error, dict) else None


class SearchNotFound(SearchApiError):
    """404: the index, alias or document does not exist."""


class UnsupportedServer(RuntimeError):
    """The server is not one of the distributions and versions sync_pipeline supports, or not the
    one the settings ask for."""


def api_error(status: int, body: Any) -> SearchApiError:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = f"{error.get('type', 'error')}: {error.get('reason', '')}".strip()
    else:
        message = str(error or body)[:500]
    kind = SearchNotFound if status == 404 else SearchApiError
    return kind(status, body, message)
