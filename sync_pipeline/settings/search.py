"""The search target's settings: where it is, which server it must be, how to reach it.

The connection settings keep their SYNC_ES_ names on every backend (Elasticsearch and
OpenSearch alike); SYNC_SEARCH_BACKEND pins the distribution, SYNC_SEARCH_AUTH=aws-sigv4 signs
requests for Amazon OpenSearch Service.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sync_pipeline.settings.values import SettingsError, _number, _text, parse_bool

ES_URL = "SYNC_ES_URL"
ES_CLOUD_ID = "SYNC_ES_CLOUD_ID"
ES_API_KEY = "SYNC_ES_API_KEY"
ES_USERNAME = "SYNC_ES_USERNAME"
ES_PASSWORD = "SYNC_ES_PASSWORD"
ES_BEARER_TOKEN = "SYNC_ES_BEARER_TOKEN"
ES_CA_CERTS = "SYNC_ES_CA_CERTS"
ES_SSL_FINGERPRINT = "SYNC_ES_SSL_FINGERPRINT"
ES_VERIFY_CERTS = "SYNC_ES_VERIFY_CERTS"
ES_REQUEST_TIMEOUT = "SYNC_ES_REQUEST_TIMEOUT"
ES_HTTP_COMPRESS = "SYNC_ES_HTTP_COMPRESS"
SEARCH_BACKEND = "SYNC_SEARCH_BACKEND"
SEARCH_AUTH = "SYNC_SEARCH_AUTH"
AWS_REGION = "SYNC_AWS_REGION"
AWS_SERVICE = "SYNC_AWS_SERVICE"
SEARCH_BACKENDS = ("auto", "elasticsearch", "opensearch")
AWS_SIGV4 = "aws-sigv4"
AWS_SERVICES = ("es", "aoss")  # Amazon OpenSearch Service; its Serverless collections


@dataclass(frozen=True)
class ElasticsearchOptions:
    """How to talk to Elasticsearch beyond its URL: credentials (one kind), TLS, transport."""

    api_key: str | None = field(default=None, repr=False)  # "id:key" or the encoded form
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    ca_certs: str | None = None  # a PEM file with the CA that signed the server's certificate
    ssl_fingerprint: str | None = None  # SHA-256 of the server's certificate, instead of a CA
    verify_certs: bool = True
    request_timeout: float = 120.0
    http_compress: bool = False
    backend: str = "auto"  # SEARCH_BACKENDS: the distribution expected at the URL ("auto": detected)
    aws_region: str | None = None  # set: requests are signed with SigV4 for this region
    aws_service: str = "es"  # AWS_SERVICES

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.api_key, self.password, self.bearer_token) if s)


def cloud_id_url(cloud_id: str) -> str:
    """The HTTPS URL an Elastic Cloud id stands for: `name:base64(host[:port]$es_uuid$kibana_uuid)`."""
    _, _, encoded = cloud_id.strip().rpartition(":")
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True).decode()
        host, es_uuid = decoded.split("$")[:2]
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise SettingsError(
            f"{ES_CLOUD_ID} is not an Elastic Cloud id (name:base64 of host$es_uuid$kibana_uuid); "
            "copy it from the deployment's page"
        ) from None
    host, _, port = host.partition(":")
    if not host or not es_uuid:
        raise SettingsError(f"{ES_CLOUD_ID} names no host or Elasticsearch id")
    return f"https://{es_uuid}.{host}:{port or 443}"


def _es_options(env: Mapping[str, str]) -> ElasticsearchOptions:
    username, password = _text(env, ES_USERNAME), _text(env, ES_PASSWORD)
    if bool(username) != bool(password):
        raise SettingsError(f"{ES_USERNAME} and {ES_PASSWORD} go together: set both, or neither")
    kinds = [
        n
        for n, v in (
            (ES_API_KEY, env.get(ES_API_KEY)),
            (ES_USERNAME, username),
            (ES_BEARER_TOKEN, env.get(ES_BEARER_TOKEN)),
        )
        if (v or "").strip()
    ]
    if len(kinds) > 1:
        raise SettingsError(f"set one kind of Elasticsearch credentials, not {' and '.join(kinds)}")
    ca_certs = _text(env, ES_CA_CERTS)
    if ca_certs and not Path(ca_certs).expanduser().is_file():
        raise SettingsError(f"{ES_CA_CERTS}={ca_certs}: no such file (a PEM file with the cluster's CA)")
    timeout = _number(env, ES_REQUEST_TIMEOUT, 120.0, 0, 86_400, "seconds")
    fingerprint = _text(env, ES_SSL_FINGERPRINT)
    if fingerprint and len(fingerprint.replace(":", "")) != 64:
        raise SettingsError(f"{ES_SSL_FINGERPRINT} must be the certificate's SHA-256 (64 hex digits)")
    backend = (_text(env, SEARCH_BACKEND) or "auto").lower()
    if backend not in SEARCH_BACKENDS:
        raise SettingsError(f"{SEARCH_BACKEND} must be one of {', '.join(SEARCH_BACKENDS)}, not {backend!r}")
    aws_region, aws_service = _aws(env, kinds)
    return ElasticsearchOptions(
        backend=backend,
        aws_region=aws_region,
        aws_service=aws_service,
        api_key=_text(env, ES_API_KEY),
        username=username,
        password=password,
        bearer_token=_text(env, ES_BEARER_TOKEN),
        ca_certs=str(Path(ca_certs).expanduser().absolute()) if ca_certs else None,
        ssl_fingerprint=fingerprint,
        verify_certs=parse_bool(ES_VERIFY_CERTS, env.get(ES_VERIFY_CERTS, "true")),
        request_timeout=timeout,
        http_compress=parse_bool(ES_HTTP_COMPRESS, env.get(ES_HTTP_COMPRESS, "")),
    )


def _aws(env: Mapping[str, str], credentials: list[str]) -> tuple[str | None, str]:
    """SYNC_SEARCH_AUTH=aws-sigv4: the region and service requests are signed for."""
    auth = (_text(env, SEARCH_AUTH) or "").lower()
    service = (_text(env, AWS_SERVICE) or "es").lower()
    if service not in AWS_SERVICES:
        raise SettingsError(
            f"{AWS_SERVICE} must be es (OpenSearch Service) or aoss (Serverless), not {service!r}"
        )
    if service == "aoss":
        raise SettingsError(
            f"{AWS_SERVICE}=aoss: Amazon OpenSearch Serverless is not supported as a target: every write "
            "carries version_type=external_gte (an older row never overwrites a newer one), which "
            "Serverless is not documented to accept, and it has no _refresh; use an OpenSearch Service "
            f"domain ({AWS_SERVICE}=es)"
        )
    if auth in ("", "none"):
        return None, service
    if auth != AWS_SIGV4:
        raise SettingsError(f"{SEARCH_AUTH} must be {AWS_SIGV4} or unset, not {auth!r}")
    if credentials:
        raise SettingsError(
            f"{SEARCH_AUTH}={AWS_SIGV4} signs with AWS credentials: unset {' and '.join(credentials)}"
        )
    if parse_bool(ES_HTTP_COMPRESS, env.get(ES_HTTP_COMPRESS, "")):
        raise SettingsError(
            f"{ES_HTTP_COMPRESS} cannot be used with {SEARCH_AUTH}={AWS_SIGV4} "
            "(the signature covers the body as sent)"
        )
    region = _text(env, AWS_REGION) or _text(env, "AWS_REGION") or _text(env, "AWS_DEFAULT_REGION")
    if not region:
        raise SettingsError(f"{SEARCH_AUTH}={AWS_SIGV4} needs the region: set {AWS_REGION} (or AWS_REGION)")
    return region, service


def _es_url(env: Mapping[str, str]) -> str | None:
    url, cloud_id = _text(env, ES_URL), _text(env, ES_CLOUD_ID)
    if url and cloud_id:
        raise SettingsError(f"set {ES_URL} or {ES_CLOUD_ID}, not both")
    return cloud_id_url(cloud_id) if cloud_id else url
