"""Connecting to Elasticsearch as a deployment has it: credentials, TLS, and what a failed
connection means in one line (a wrong or expired key, an untrusted certificate, HTTP against
HTTPS), so a misconfigured server never surfaces as a traceback."""

from __future__ import annotations

from typing import Any

from elastic_transport import ConnectionError as ESConnectionError
from elastic_transport import TlsError
from elasticsearch import ApiError, Elasticsearch

from sync_pipeline.settings import ElasticsearchOptions


def es_client(
    url: str, request_timeout: float | None = None, options: ElasticsearchOptions | None = None
) -> Elasticsearch:
    """A client for `url` with the deployment's credentials and TLS settings (`options`, from
    settings.load(); none: an unsecured server). `request_timeout` overrides the options' one."""
    options = options or ElasticsearchOptions()
    auth: dict[str, Any] = {}
    if options.api_key:
        auth["api_key"] = options.api_key
    elif options.username and options.password:
        auth["basic_auth"] = (options.username, options.password)
    elif options.bearer_token:
        auth["bearer_auth"] = options.bearer_token
    if url.startswith("https://"):
        if options.ssl_fingerprint:
            auth["ssl_assert_fingerprint"] = options.ssl_fingerprint
        elif options.ca_certs:
            auth["ca_certs"] = options.ca_certs
        auth["verify_certs"] = options.verify_certs
    return Elasticsearch(
        url,
        request_timeout=request_timeout or options.request_timeout,
        http_compress=options.http_compress,
        retry_on_timeout=True,
        max_retries=3,
        retry_on_status=(502, 503, 504),
        **auth,
    )


def connection_problem(exc: BaseException, label: str, options: ElasticsearchOptions) -> str | None:
    """One line naming the server and the cause, for the failures a misconfigured connection
    meets (wrong or expired credentials, a certificate not trusted, HTTP against HTTPS and back);
    None for other errors. `label`: the server as it may be shown (core/redact.redact_url)."""
    text = str(exc)
    if isinstance(exc, TlsError) or "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
            return f"Elasticsearch at {label} does not speak HTTPS: use http:// in SYNC_ES_URL"
        trust = (
            f"SYNC_ES_SSL_FINGERPRINT={options.ssl_fingerprint}"
            if options.ssl_fingerprint
            else f"SYNC_ES_CA_CERTS={options.ca_certs}"
            if options.ca_certs
            else "the system's CAs (set SYNC_ES_CA_CERTS to the cluster's CA file)"
        )
        return f"Elasticsearch at {label}: its TLS certificate is not trusted by {trust}"
    if (
        isinstance(exc, ESConnectionError)
        and label.startswith("http://")
        and ("RemoteDisconnected" in text or "closed connection" in text or "reset by peer" in text)
    ):
        return (
            f"Elasticsearch at {label} closed the connection: it probably wants HTTPS "
            "(use https:// in SYNC_ES_URL)"
        )
    if isinstance(exc, ApiError) and exc.status_code in (401, 403):
        error = exc.body.get("error", {}) if isinstance(exc.body, dict) else {}
        reason = (error.get("reason") if isinstance(error, dict) else error) or exc.message
        used = (
            "SYNC_ES_API_KEY" if options.api_key
            else "SYNC_ES_USERNAME/SYNC_ES_PASSWORD" if options.username
            else "SYNC_ES_BEARER_TOKEN" if options.bearer_token
            else None
        )  # fmt: skip
        if used is None:
            return (
                f"Elasticsearch at {label} wants credentials: set SYNC_ES_API_KEY (or "
                f"SYNC_ES_USERNAME and SYNC_ES_PASSWORD): {reason}"
            )
        what = (
            "refused the credentials" if exc.status_code == 401 else "denied a privilege to the credentials"
        )
        return f"Elasticsearch at {label} {what} of {used}: {reason}"
    return None
