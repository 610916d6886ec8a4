"""Secrets out of everything we show: messages, logs, metadata, alerts.

One module for every kind of text that may carry a credential: a URL (its
password), free text (URLs inside it, `password=…`-style values), and the
part of a URL that may be shown at all when even its path is secret (a
Slack webhook's token is in the path).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# scheme://user:password@ → scheme://user:***@ (RFC 3986 userinfo holds no unencoded / ? # @)
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*):[^/?#@\s]*@")
# password=…, token=… in libpq keyword strings and query strings
_KEY_SECRET = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|api_key|apikey)\s*=\s*)(?P<value>'[^']*'|[^\s&;,]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with URL passwords masked (`scheme://user:***@host`), and `password=…`-style values."""
    text = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
    return _KEY_SECRET.sub(rf"\g<key>{MASK}", text)


# where Elasticsearch's item errors quote a document's own data: a field's value, a key, the
# start of an over-long term, a date it could not parse. Field names, types and positions stay.
_VALUES = re.compile(
    r"(?P<lead>Preview of field's value: |For input string: |in document with id |with id |"
    r"The prefix of the first immense term is: |Invalid format: |value \[?)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\[[^\]]*\]|[^\s,;)\]]+)"
)
_DATE_FIELD = re.compile(r"(?P<lead>failed to parse date field )\[[^\]]*\]")


def without_values(text: str) -> str:
    """`text` with the values Elasticsearch quotes from a document masked: what an alert or a
    run's metadata may carry of an item error (the dead-letter table keeps it whole)."""
    text = _VALUES.sub(rf"\g<lead>{MASK}", text)
    return _DATE_FIELD.sub(rf"\g<lead>[{MASK}]", text)


def _netloc(parts, keep_user: bool = True) -> str:
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    user = ""
    if keep_user and parts.username:
        user = f"{parts.username}:{MASK}@" if parts.password is not None else f"{parts.username}@"
    return f"{user}{host}{port}"


def redact_url(url: str, *, keep_query: bool = True) -> str:
    """The URL with its password masked (and secrets in its query string), for messages.

    `keep_query=False` also drops the query string and fragment (a webserver URL
    whose query may hold anything)."""
    try:
        parts = urlsplit(url)
        netloc = _netloc(parts)
    except ValueError:
        return "<unparseable url>"
    if not parts.scheme or not parts.netloc:
        return redact(url)
    query = _KEY_SECRET.sub(rf"\g<key>{MASK}", parts.query) if keep_query else ""
    fragment = parts.fragment if keep_query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def safe_target(url: str) -> str:
    """`scheme://host:port` of a URL: all that may be shown of a webhook whose path is its secret."""
    try:
        parts = urlsplit(url)
        netloc = _netloc(parts, keep_user=False)
    except ValueError:
        return "<unparseable url>"
    return f"{parts.scheme or '?'}://{netloc or '?'}"


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with each known secret value replaced, then `redact`ed."""
    for secret in secrets:
        if secret and len(secret) >= 4:  # shorter ones would mangle the text more than they hide
            text = text.replace(secret, MASK)
    return redact(text)


def shown_errors(errors: list[Any]) -> list[Any]:
    """Item errors as a run's metadata may show them: every text inside `without_values`."""

    def shown(value: Any) -> Any:
        if isinstance(value, str):
            return without_values(value)
        if isinstance(value, dict):
            return {k: shown(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shown(v) for v in value]
        return value

    return [shown(e) for e in errors]
