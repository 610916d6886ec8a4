"""AWS Signature Version 4 for Amazon OpenSearch Service (service "es") and OpenSearch Serverless
(service "aoss"), with the standard library only, plus where the credentials and the region come from.

Signing is a pure function of the request, the credentials and the time, so it is tested against
AWS's published SigV4 test-suite vectors without any network. The algorithm follows AWS's
"Create a signed AWS API request" (IAM User Guide): canonical request → string to sign → HMAC
chain over date/region/service → Authorization header.
"""

from __future__ import annotations

import configparser
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Hop-by-hop headers (RFC 9110 §7.6.1) and `expect` are rewritten or dropped by HTTP clients and
# proxies on the way, so a signature over them cannot be reproduced by the server; botocore leaves
# the same ones out. Every other header given is signed.
_UNSIGNABLE = frozenset(
    {
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
REGION_VARIABLES = ("SYNC_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")


@dataclass(frozen=True)
class AwsCredentials:
    """An access key pair, and the session token that temporary (STS, SSO, role) credentials carry."""

    access_key: str
    secret_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        # the way `aws configure list` shows a key: enough to tell two keys apart in a log, and
        # never the secret or the token (a repr ends up in tracebacks and log lines)
        token = "'****'" if self.session_token else "None"
        shown = f"'****{self.access_key[-4:]}'"
        return f"AwsCredentials(access_key={shown}, secret_key='****', session_token={token})"

    __str__ = __repr__


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    region: str,
    service: str,
    credentials: AwsCredentials,
    now: datetime,
    content_sha256_header: bool = True,
) -> dict[str, str]:
    """The headers to add to a request so AWS accepts it: `x-amz-date`, `x-amz-content-sha256`,
    `x-amz-security-token` (temporary credentials only) and `authorization`, lowercase names.

    Sign the request exactly as it goes on the wire: `url` with its path and query as sent, `body`
    as the bytes sent (after any gzip compression: the server hashes what it receives), and the
    headers that the client sends unchanged. Every header given is signed, except hop-by-hop ones
    (connection, transfer-encoding, ...) that clients and proxies rewrite; `host` is signed from
    the URL (with the port when it is not the scheme's default) unless a Host header is given.
    The returned headers replace any of the same name in `headers`.

    `content_sha256_header`: OpenSearch Serverless ("aoss") requires `x-amz-content-sha256`, and
    Amazon OpenSearch Service accepts it, so it is on by default; AWS's test-suite vectors that do
    not sign the body leave it out (False), which is the only reason to switch it off.

    Canonical URI: the path as sent, URI-encoded once more (every service but S3 wants that, so a
    document id sent as `a%2Fb` is signed as `a%252Fb`); no dot-segment removal, which OpenSearch
    request paths never need. Canonical query: each name and value percent-decoded, then encoded
    per RFC 3986 (only A-Z a-z 0-9 - _ . ~ left as they are), sorted by name then value; a `+` is
    taken as a literal plus, as AWS does.
    """
    if now.tzinfo is None:
        # a naive time would be read as local time by astimezone: a signature hours off, a 403
        raise ValueError("sign(now=...) needs a timezone-aware datetime (e.g. datetime.now(UTC))")
    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    payload_hash = hashlib.sha256(body or b"").hexdigest()
    added = {"x-amz-date": amz_date}
    if content_sha256_header:
        added["x-amz-content-sha256"] = payload_hash
    if credentials.session_token:
        added["x-amz-security-token"] = credentials.session_token

    parts = urlsplit(url)
    canonical_headers = _canonical_headers(headers, added, _host(parts))
    signed_headers = ";".join(canonical_headers)
    canonical_request = "\n".join(
        [
            method.upper(),
            _canonical_uri(parts.path),
            _canonical_query(parts.query),
            "".join(f"{name}:{value}\n" for name, value in canonical_headers.items()),
            signed_headers,
            payload_hash,
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _signing_key(credentials.secret_key, amz_date[:8], region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    added["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return added


def _signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret_key}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _host(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets in the Host header
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _canonical_headers(headers: Mapping[str, str], added: Mapping[str, str], host: str) -> dict[str, str]:
    """Lowercase name → trimmed value with inner runs of whitespace collapsed (folded lines too);
    names that differ only in case are one header whose values are joined with commas, in order."""
    values: dict[str, list[str]] = {}
    for name, value in headers.items():
        lname = name.strip().lower()
        if lname in _UNSIGNABLE or lname in added:
            continue
        values.setdefault(lname, []).append(" ".join(str(value).split()))
    values.setdefault("host", [host])
    values.update({name: [value] for name, value in added.items()})
    return {name: ",".join(values[name]) for name in sorted(values)}


def _canonical_uri(path: str) -> str:
    # quote()'s always-safe set is RFC 3986's unreserved one; "/" separates the segments
    return quote(path or "/", safe="/")


def _canonical_query(query: str) -> str:
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((quote(unquote(name), safe=""), quote(unquote(value), safe="")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


# botocore's resolved credentials object, kept for the process: it refreshes temporary
# credentials (SSO, assumed roles, IMDS) itself, and resolving the chain again per request
# would ask the instance metadata service or the SSO cache every time
_botocore_credentials: Any = None


def aws_credentials(env: Mapping[str, str] = os.environ, home: Path | None = None) -> AwsCredentials:
    """The credentials the standard AWS chain yields, as far as it needs no network of its own.

    Order, the first source that has credentials wins:
      1. botocore's own chain, when botocore is installed and the process's own environment and
         home are meant (`env` is os.environ, `home` is None): environment variables, the shared
         credentials and config files (profiles, SSO, credential_process, assume-role), web
         identity, container and EC2 instance metadata. Those providers may reach AWS endpoints:
         that is the user's configured chain, not a call this module makes. botocore refreshes
         temporary credentials, so call this again for each batch rather than keeping the result.
      2. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) in `env`.
      3. The shared credentials file, AWS_SHARED_CREDENTIALS_FILE or `home`/.aws/credentials
         (home: the user's), profile AWS_PROFILE or "default".
    Without botocore, ~/.aws/config, SSO, roles and instance metadata are not read.

    Raises ValueError, one line naming the sources tried and how to provide credentials, when none
    has them, and when one is half-configured (a key id without its secret, a named profile that
    is not there): a silent fall-through would sign as someone else. No message holds a secret.
    """
    tried: list[str] = []
    if env is os.environ and home is None:
        found = _from_botocore()
        if found is not None:
            return found
        if _botocore_importable():
            tried.append("botocore's credential chain")

    key_id, secret = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
    if key_id and secret:
        return AwsCredentials(key_id, secret, env.get("AWS_SESSION_TOKEN") or None)
    if key_id or secret:
        missing = "AWS_SECRET_ACCESS_KEY" if key_id else "AWS_ACCESS_KEY_ID"
        raise ValueError(f"AWS credentials half-set in the environment: {missing} is missing")
    tried.append("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")

    path = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or (home or Path.home()) / ".aws" / "credentials")
    profile = env.get("AWS_PROFILE") or "default"
    found = _from_shared_file(path.expanduser(), profile, explicit=bool(env.get("AWS_PROFILE")))
    if found is not None:
        return found
    tried.append(f"profile [{profile}] of {path}")
    raise ValueError(
        f"no AWS credentials found (tried {', '.join(tried)}): set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE naming a profile of the shared credentials file, "
        "or configure the AWS CLI (`aws configure`, `aws sso login`)"
    )


def _botocore_importable() -> bool:
    try:
        import botocore.session  # noqa: F401
    except ImportError:
        return False
    return True


def _from_botocore() -> AwsCredentials | None:
    global _botocore_credentials
    try:
        import botocore.session
    except ImportError:
        return None
    try:
        if _botocore_credentials is None:
            _botocore_credentials = botocore.session.Session().get_credentials()
            if _botocore_credentials is None:
                return None
        frozen = _botocore_credentials.get_frozen_credentials()  # refreshed when about to expire
    except Exception as error:
        # only the exception's name: some providers (credential_process) put a command's output
        # into the message, and that may hold a key
        raise ValueError(
            f"botocore's AWS credential chain failed ({type(error).__name__}); "
            "`aws sts get-caller-identity` shows its full message"
        ) from None
    return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token or None)


def _from_shared_file(path: Path, profile: str, *, explicit: bool) -> AwsCredentials | None:
    if not path.is_file():
        if explicit:
            raise ValueError(f"AWS_PROFILE={profile} is set but {path} does not exist")
        return None
    # no interpolation: a secret key may contain "%"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error:
        # configparser quotes the offending line, which may be a key: say only where it is
        raise ValueError(
            f"{path} is not a valid AWS credentials file (INI with [profile] sections)"
        ) from None
    if not parser.has_section(profile):
        if explicit:
            raise ValueError(f"AWS_PROFILE={profile}: no [{profile}] section in {path}")
        return None
    section = parser[profile]
    key_id = section.get("aws_access_key_id", "").strip()
    secret = section.get("aws_secret_access_key", "").strip()
    if not (key_id and secret):
        if key_id or secret or explicit:
            raise ValueError(
                f"profile [{profile}] of {path} lacks aws_access_key_id or aws_secret_access_key"
            )
        return None  # e.g. a [default] that only sets a region: not credentials, try on
    return AwsCredentials(key_id, secret, section.get("aws_session_token", "").strip() or None)


def aws_region(env: Mapping[str, str] = os.environ) -> str:
    """The region to sign for: SYNC_AWS_REGION, else AWS_REGION, else AWS_DEFAULT_REGION.
    It must be the region of the domain or collection, or AWS answers 403 for every request."""
    for name in REGION_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return value
    raise ValueError(
        f"no AWS region: set {REGION_VARIABLES[0]} (or {' / '.join(REGION_VARIABLES[1:])}) "
        "to the region of the domain or collection, e.g. us-east-1"
    )
