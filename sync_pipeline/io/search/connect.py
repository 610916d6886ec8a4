"""Connecting to the search server as a deployment has it: credentials, TLS, AWS signing, and
what a failed connection means in one line (a wrong or expired key, an untrusted certificate,
HTTP against HTTPS), so a misconfigured server never surfaces as a traceback."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from elastic_transport import NodeConfig, Transport
from elastic_transport.client_utils import url_to_node_config

from sync_pipeline.core.report.redact import redact_url
from sync_pipeline.io.search.client import SearchClient, Signer
from sync_pipeline.io.search.errors import SearchApiError, SearchConnectionError, SearchTlsError
from sync_pipeline.settings import ElasticsearchOptions


def _auth_header(options: ElasticsearchOptions) -> dict[str, str]:
    if options.api_key:
        return {"authorization": f"ApiKey {_encoded_key(options.api_key)}"}
    if options.username and options.password:
        pair = base64.b64encode(f"{options.username}:{options.password}".encode()).decode()
        return {"authorization": f"Basic {pair}"}
    if options.bearer_token:
        return {"authorization": f"Bearer {options.bearer_token}"}
    return {}


def _encoded_key(key: str) -> str:
    """An API key as the header wants it: "id:key" is encoded, the encoded form sent as it is."""
    return base64.b64encode(key.encode()).decode() if ":" in key else key


def _node(url: str, options: ElasticsearchOptions, request_timeout: float) -> NodeConfig:
    config = url_to_node_config(url)
    tls: dict[str, Any] = {}
    if config.scheme == "https":
        if options.ssl_fingerprint:
            tls["ssl_assert_fingerprint"] = options.ssl_fingerprint
        elif options.ca_certs:
            tls["ca_certs"] = options.ca_certs
        tls["verify_certs"] = options.verify_certs
    return config.replace(
        request_timeout=request_timeout,
        http_compress=options.http_compress,
        headers={**dict(config.headers), **_auth_header(options)},
        **tls,
    )


def _aws_signer(options: ElasticsearchOptions, url: str) -> Signer:
    from sync_pipeline.io.search.sigv4 import aws_credentials, sign

    credentials = aws_credentials()
    base = url.rstrip("/")

    def signer(method: str, target: str, headers: Any, body: bytes | None) -> dict[str, str]:
        return sign(
            method,
            base + target,
            headers,
            body,
            region=str(options.aws_region),
            service=options.aws_service,
            credentials=credentials,
            now=datetime.now(UTC),
        )

    return signer


def search_client(
    url: str, request_timeout: float | None = None, options: ElasticsearchOptions | None = None
) -> SearchClient:
    """A client for `url` with the deployment's credentials and TLS settings (`options`, from
    settings.load(); none: an unsecured server). `request_timeout` overrides the options' one.
    Nothing is sent until the first call; the server is identified then (`client.server`)."""
    options = options or ElasticsearchOptions()
    transport = Transport(
        [_node(url, options, request_timeout or options.request_timeout)],
        max_retries=3,
        retry_on_timeout=True,
        # for every call but bulk, whose retries are io/bulk_load's alone, within the load's
        # budget (core/load/retry.py); 429 is the bulk accounting's to retry, per document
        retry_on_status=(502, 503, 504),
        meta_header=False,
    )
    signer = _aws_signer(options, url) if options.aws_region else None
    return SearchClient(transport, redact_url(url), wanted=options.backend, signer=signer)


def connection_problem(exc: BaseException, label: str, options: ElasticsearchOptions) -> str | None:
    """One line naming the server and the cause, for the failures a misconfigured connection
    meets (wrong or expired credentials, a certificate not trusted, HTTP against HTTPS and back);
    None for other errors. `label`: the server as it may be shown (core/report/redact.redact_url)."""
    text = str(exc)
    where = f"the search server at {label}"
    if isinstance(exc, SearchTlsError) or "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
            return f"{where} does not speak HTTPS: use http:// in SYNC_ES_URL"
        trust = (
            f"SYNC_ES_SSL_FINGERPRINT={options.ssl_fingerprint}"
            if options.ssl_fingerprint
            else f"SYNC_ES_CA_CERTS={options.ca_certs}"
            if options.ca_certs
            else "the system's CAs (set SYNC_ES_CA_CERTS to the cluster's CA file)"
        )
        return f"{where}: its TLS certificate is not trusted by {trust}"
    if (
        isinstance(exc, SearchConnectionError)
        and label.startswith("http://")
        and ("RemoteDisconnected" in text or "closed connection" in text or "reset by peer" in text)
    ):
        return f"{where} closed the connection: it probably wants HTTPS (use https:// in SYNC_ES_URL)"
    if isinstance(exc, SearchApiError) and exc.status_code in (401, 403):
        error = exc.body.get("error", {}) if isinstance(exc.body, dict) else {}
        reason = (error.get("reason") if isinstance(error, dict) else error) or exc.message
        used = (
            "SYNC_ES_API_KEY" if options.api_key
            else "SYNC_ES_USERNAME/SYNC_ES_PASSWORD" if options.username
            else "SYNC_SEARCH_AUTH=aws-sigv4" if options.aws_region
            else "SYNC_ES_BEARER_TOKEN" if options.bearer_token
            else None
        )  # fmt: skip
        if used is None:
            return (
                f"{where} wants credentials: set SYNC_ES_API_KEY (or "
                f"SYNC_ES_USERNAME and SYNC_ES_PASSWORD): {reason}"
            )
        what = (
            "refused the credentials" if exc.status_code == 401 else "denied a privilege to the credentials"
        )
        return f"{where} {what} of {used}: {reason}"
    return None
