"""SigV4 signing for Amazon OpenSearch Service / Serverless, the credentials chain and the region:
pure functions, no network and no server.

Expected signatures come from outside this code:
- AWS's SigV4 test suite (docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html), read
  from awslabs/aws-c-auth, tests/aws-signing-test-suite/v4/<case>/header-signature.txt at commit
  495329c2433034bd8fd53fc6ba9e0202d3fac876 (the same vectors as botocore's
  tests/unit/auth/aws4_testsuite); credentials AKIDEXAMPLE, region us-east-1, service "service",
  2015-08-30T12:36:00Z. Cases with "sign_body": false there do not sign x-amz-content-sha256,
  hence content_sha256_header=False for them.
- The bulk requests: botocore 1.44.18's SigV4Auth, run in a scratch venv outside the repository
  (`pip install botocore`; an AWSRequest with the same method, URL, body and headers, the
  x-amz-content-sha256 header set before signing as opensearch-py's AWSV4SignerAuth does,
  botocore.auth.get_current_datetime patched to the fixed time).
"""

from __future__ import annotations

import hashlib
import sys
import traceback
import types
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from sync_pipeline.io.search import sigv4
from sync_pipeline.io.search.sigv4 import AwsCredentials, aws_credentials, aws_region, sign

SUITE_KEY = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_TIME = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
SUITE_SCOPE = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
HOST = "https://example.amazonaws.com"


def suite_sign(method, url, headers=None, body=None, *, credentials=SUITE_KEY, **options):
    return sign(
        method,
        url,
        headers or {},
        body,
        region="us-east-1",
        service="service",
        credentials=credentials,
        now=SUITE_TIME,
        **options,
    )


# (case, method, url, headers, expected signed headers, expected signature)
UNSIGNED_BODY_CASES = [
    (
        "get-vanilla",
        "GET",
        f"{HOST}/",
        {},
        "host;x-amz-date",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    (
        "get-vanilla-query-order-key-case",
        "GET",
        f"{HOST}/?Param2=value2&Param1=value1",
        {},
        "host;x-amz-date",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    (
        "get-vanilla-query-order-encoded",
        "GET",
        f"{HOST}/?Param-3=Value3&Param=Value2&%E1%88%B4=Value1",
        {},
        "host;x-amz-date",
        "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac",
    ),
    (
        "get-vanilla-utf8-query",
        "GET",
        f"{HOST}/?\u1234=bar",
        {},
        "host;x-amz-date",
        "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    ),
    (
        "get-utf8",
        "GET",
        f"{HOST}/\u1234",
        {},
        "host;x-amz-date",
        "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    ),
    (
        "get-space-unnormalized",
        "GET",
        f"{HOST}/example space/",
        {},
        "host;x-amz-date",
        "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
    ),
    (
        "get-header-value-trim",
        "GET",
        f"{HOST}/",
        {"My-Header1": " value1", "My-Header2": ' "a   b   c"'},
        "host;my-header1;my-header2;x-amz-date",
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    ),
    (
        "get-header-value-multiline",
        "GET",
        f"{HOST}/",
        {"My-Header1": "value1\n  value2\n     value3"},
        "host;my-header1;x-amz-date",
        "cfd34249e4b1c8d6b91ef74165d41a32e5fab3306300901bb65a51a73575eefd",
    ),
    (
        "get-header-key-duplicate",  # one header sent three times: names differing only in case
        "GET",
        f"{HOST}/",
        {"My-Header1": "value2", "my-header1": "value2", "MY-HEADER1": "value1"},
        "host;my-header1;x-amz-date",
        "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
    ),
    (
        "post-vanilla",
        "POST",
        f"{HOST}/",
        {},
        "host;x-amz-date",
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ),
]


@pytest.mark.parametrize(
    ("method", "url", "headers", "signed", "signature"),
    [case[1:] for case in UNSIGNED_BODY_CASES],
    ids=[case[0] for case in UNSIGNED_BODY_CASES],
)
def test_aws_suite_vectors(method, url, headers, signed, signature):
    added = suite_sign(method, url, headers, content_sha256_header=False)
    assert added == {
        "x-amz-date": "20150830T123600Z",
        "authorization": f"AWS4-HMAC-SHA256 {SUITE_SCOPE}, SignedHeaders={signed}, Signature={signature}",
    }


def test_aws_suite_post_x_www_form_urlencoded_signs_the_body_hash():
    # the suite's "sign_body": true case: x-amz-content-sha256 is added and signed, as by default here
    added = suite_sign(
        "POST",
        f"{HOST}/",
        {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "13"},
        b"Param1=value1",
    )
    assert added["x-amz-content-sha256"] == "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
    assert added["authorization"] == (
        f"AWS4-HMAC-SHA256 {SUITE_SCOPE}, "
        "SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, "
        "Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"
    )


@pytest.mark.parametrize(
    ("method", "token", "signature"),
    [
        (  # get-vanilla-with-session-token
            "GET",
            "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
            "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
        ),
        (  # post-sts-header-before: an STS-shaped token with "/", "+" and "="
            "POST",
            "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfI"
            "eoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0"
            "wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDr"
            "ypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==",
            "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
        ),
    ],
    ids=["get-vanilla-with-session-token", "post-sts-header-before"],
)
def test_a_session_token_is_sent_and_signed(method, token, signature):
    credentials = AwsCredentials(SUITE_KEY.access_key, SUITE_KEY.secret_key, token)
    added = suite_sign(method, f"{HOST}/", credentials=credentials, content_sha256_header=False)
    assert added["x-amz-security-token"] == token
    assert added["authorization"] == (
        f"AWS4-HMAC-SHA256 {SUITE_SCOPE}, SignedHeaders=host;x-amz-date;x-amz-security-token, "
        f"Signature={signature}"
    )


BULK = (
    b'{"index":{"_index":"orders","_id":"1"}}\n{"id":1,"total":"9.50"}\n'
    b'{"delete":{"_index":"orders","_id":"2"}}\n'
)
BULK_TIME = datetime(2026, 1, 15, 8, 30, tzinfo=UTC)


def test_the_body_hash_header_is_the_sha256_of_the_body():
    for body in (BULK, b"", None):
        added = sign(
            "POST",
            "https://search-x.us-east-1.es.amazonaws.com/_bulk",
            {},
            body,
            region="us-east-1",
            service="es",
            credentials=SUITE_KEY,
            now=BULK_TIME,
        )
        assert added["x-amz-content-sha256"] == hashlib.sha256(body or b"").hexdigest()
    assert (
        hashlib.sha256(BULK).hexdigest() == "31092e3ba317014e9b01bd112d64becd0dd543c0e7c7d04a0089b3e5f7cbc461"
    )


@pytest.mark.parametrize(
    ("service", "url", "token", "signed", "signature"),
    [
        (
            "es",
            "https://search-x.us-east-1.es.amazonaws.com/_bulk?refresh=false&timeout=1m",
            None,
            "content-type;host;x-amz-content-sha256;x-amz-date",
            "c3c7db6e038c350ea6c67e2ef35b5b62c8ad9628ef568a4449e6c52cab157682",
        ),
        (
            "aoss",
            "https://abc123.us-east-1.aoss.amazonaws.com/_bulk",
            "FQoGZXIvYXdzEXAMPLETOKEN",
            "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token",
            "b1aed92f49cfb585eec8989d7b6f8a0adb3b477cfbe63fd56119428f922a0c21",
        ),
    ],
)
def test_a_bulk_ndjson_post_signs_as_botocore_does(service, url, token, signed, signature):
    credentials = AwsCredentials(SUITE_KEY.access_key, SUITE_KEY.secret_key, token)

    def signed_now():
        return sign(
            "POST",
            url,
            {"Content-Type": "application/x-ndjson"},
            BULK,
            region="us-east-1",
            service=service,
            credentials=credentials,
            now=BULK_TIME,
        )

    added = signed_now()
    assert added["authorization"] == (
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260115/us-east-1/{service}/aws4_request, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    assert added["x-amz-date"] == "20260115T083000Z"
    assert signed_now() == added  # deterministic for a fixed time


def test_a_non_default_port_is_signed_and_a_sent_path_is_encoded_once_more():
    # botocore's value for the same request: host "localhost:9200", the id a/b sent as a%2Fb
    added = sign(
        "GET",
        "https://localhost:9200/orders/_doc/a%2Fb",
        {},
        None,
        region="eu-west-1",
        service="es",
        credentials=SUITE_KEY,
        now=BULK_TIME,
    )
    assert added["authorization"].endswith(
        "Signature=d922e3640b306ca40a4eef46d0056a0403d38b35c076241964267852e3ae3f6a"
    )


def test_the_signature_follows_the_instant_not_the_timezone_it_is_written_in():
    vanilla = suite_sign("GET", f"{HOST}/", content_sha256_header=False)
    elsewhere = SUITE_TIME.astimezone(timezone(timedelta(hours=-7)))
    assert (
        sign(
            "GET",
            f"{HOST}/",
            {},
            None,
            region="us-east-1",
            service="service",
            credentials=SUITE_KEY,
            now=elsewhere,
            content_sha256_header=False,
        )
        == vanilla
    )
    later = sign(
        "GET",
        f"{HOST}/",
        {},
        None,
        region="us-east-1",
        service="service",
        credentials=SUITE_KEY,
        now=SUITE_TIME + timedelta(seconds=1),
        content_sha256_header=False,
    )
    assert later["x-amz-date"] == "20150830T123601Z"
    assert later["authorization"] != vanilla["authorization"]
    with pytest.raises(ValueError, match="timezone-aware"):
        sign(
            "GET",
            f"{HOST}/",
            {},
            None,
            region="r",
            service="s",
            credentials=SUITE_KEY,
            now=datetime(2015, 8, 30),
        )


def test_host_comes_from_the_url_without_a_default_port_unless_a_host_header_is_given():
    vanilla = suite_sign("GET", f"{HOST}/", content_sha256_header=False)
    assert suite_sign("GET", f"{HOST}:443/", content_sha256_header=False) == vanilla
    via_address = suite_sign(
        "GET", "https://127.0.0.1/", {"Host": "example.amazonaws.com"}, content_sha256_header=False
    )
    assert via_address == vanilla
    assert suite_sign("GET", f"{HOST}:8443/", content_sha256_header=False) != vanilla


def test_hop_by_hop_headers_are_not_signed_and_ours_replace_the_callers():
    vanilla = suite_sign("GET", f"{HOST}/", content_sha256_header=False)
    noisy = {
        "Connection": "keep-alive",
        "Transfer-Encoding": "chunked",
        "Expect": "100-continue",
        "X-Amz-Date": "19700101T000000Z",  # a stale one of the caller's: ours is signed and sent
    }
    assert suite_sign("GET", f"{HOST}/", noisy, content_sha256_header=False) == vanilla
    # an end-to-end header is signed
    with_agent = suite_sign("GET", f"{HOST}/", {"User-Agent": "sync-pipeline"}, content_sha256_header=False)
    assert "SignedHeaders=host;user-agent;x-amz-date" in with_agent["authorization"]


# --- credentials ---------------------------------------------------------------------------------

ENV_KEY = ("AKIAENVENVENVENV1111", "env-secret-Zm9vYmFyEXAMPLE")
FILE_KEY = ("AKIAFILEFILEFILE2222", "file-secret-YmF6cXV4EXAMPLE")
PROFILE_KEY = ("AKIAPROFPROFPROF3333", "profile-secret-cXV1eEXAMPLE", "profile-token-dG9rZW4")


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    """A home whose ~/.aws/credentials has a default profile and a "ci" one with a token."""
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text(
        f"[default]\naws_access_key_id = {FILE_KEY[0]}\naws_secret_access_key = {FILE_KEY[1]}\n\n"
        f"[ci]\naws_access_key_id = {PROFILE_KEY[0]}\naws_secret_access_key = {PROFILE_KEY[1]}\n"
        f"aws_session_token = {PROFILE_KEY[2]}\n",
        encoding="utf-8",
    )
    return tmp_path


def test_environment_variables_come_before_the_shared_file(home: Path):
    env = {"AWS_ACCESS_KEY_ID": ENV_KEY[0], "AWS_SECRET_ACCESS_KEY": ENV_KEY[1], "AWS_SESSION_TOKEN": "t"}
    assert aws_credentials(env, home=home) == AwsCredentials(ENV_KEY[0], ENV_KEY[1], "t")
    assert aws_credentials({}, home=home) == AwsCredentials(*FILE_KEY)


def test_aws_profile_selects_a_profile_of_the_shared_file(home: Path):
    assert aws_credentials({"AWS_PROFILE": "ci"}, home=home) == AwsCredentials(*PROFILE_KEY)
    with pytest.raises(ValueError, match=r"AWS_PROFILE=nightly: no \[nightly\] section") as missing:
        aws_credentials({"AWS_PROFILE": "nightly"}, home=home)
    assert FILE_KEY[1] not in str(missing.value) and PROFILE_KEY[1] not in str(missing.value)


def test_aws_shared_credentials_file_points_elsewhere(home: Path, tmp_path_factory: pytest.TempPathFactory):
    other = tmp_path_factory.mktemp("elsewhere") / "creds"
    other.write_text(f"[default]\naws_access_key_id = {ENV_KEY[0]}\naws_secret_access_key = {ENV_KEY[1]}\n")
    assert aws_credentials({"AWS_SHARED_CREDENTIALS_FILE": str(other)}, home=home) == AwsCredentials(*ENV_KEY)


def test_no_credentials_names_the_sources_tried_and_no_secret(tmp_path: Path):
    # a token alone is no credentials, and must not show up in the message either
    env = {"AWS_SESSION_TOKEN": "lonely-token-c2VjcmV0"}
    with pytest.raises(ValueError) as missing:
        aws_credentials(env, home=tmp_path)
    message = str(missing.value)
    assert "\n" not in message
    assert "AWS_ACCESS_KEY_ID" in message and "AWS_SECRET_ACCESS_KEY" in message
    assert str(tmp_path / ".aws" / "credentials") in message and "[default]" in message
    assert "AWS_PROFILE" in message  # how to provide them
    assert "lonely-token" not in message


def test_half_set_credentials_are_an_error_that_shows_no_secret(home: Path):
    with pytest.raises(ValueError, match="AWS_ACCESS_KEY_ID is missing") as half:
        aws_credentials({"AWS_SECRET_ACCESS_KEY": ENV_KEY[1]}, home=home)
    assert ENV_KEY[1] not in str(half.value)
    (home / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key = {FILE_KEY[1]}\n")
    with pytest.raises(ValueError, match="lacks aws_access_key_id") as partial:
        aws_credentials({}, home=home)
    assert FILE_KEY[1] not in str(partial.value)


def test_a_malformed_credentials_file_is_reported_without_its_content(home: Path):
    # no section header: configparser's own error would quote this line, key and all
    (home / ".aws" / "credentials").write_text(f"aws_secret_access_key = {FILE_KEY[1]}\n")
    with pytest.raises(ValueError, match="is not a valid AWS credentials file") as broken:
        aws_credentials({}, home=home)
    rendered = "".join(traceback.format_exception(broken.value))
    assert FILE_KEY[1] not in rendered


def fake_botocore(monkeypatch: pytest.MonkeyPatch, get_credentials) -> list[int]:
    """botocore.session.Session().get_credentials() answering `get_credentials()`; returns a list
    that counts the sessions made."""
    sessions: list[int] = []

    class Session:
        def __init__(self) -> None:
            sessions.append(1)

        def get_credentials(self):
            return get_credentials()

    package = types.ModuleType("botocore")
    session_module = types.ModuleType("botocore.session")
    session_module.Session = Session  # type: ignore[attr-defined]
    package.session = session_module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "botocore", package)
    monkeypatch.setitem(sys.modules, "botocore.session", session_module)
    monkeypatch.setattr(sigv4, "_botocore_credentials", None)
    return sessions


def test_botocore_chain_is_used_first_for_the_process_environment(
    monkeypatch: pytest.MonkeyPatch, home: Path
):
    frozen = types.SimpleNamespace(
        access_key="AKIABOTOBOTOBOTO4444", secret_key="boto-secret", token="boto-token"
    )
    resolved = types.SimpleNamespace(get_frozen_credentials=lambda: frozen)
    sessions = fake_botocore(monkeypatch, lambda: resolved)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ENV_KEY[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_KEY[1])
    expected = AwsCredentials("AKIABOTOBOTOBOTO4444", "boto-secret", "boto-token")
    assert aws_credentials() == expected
    assert aws_credentials() == expected
    assert len(sessions) == 1  # resolved once: botocore refreshes temporary credentials itself
    # an explicit environment or home is the plain chain, whatever botocore would say
    assert aws_credentials({}, home=home) == AwsCredentials(*FILE_KEY)


def test_a_failing_botocore_chain_is_one_line_without_its_message(monkeypatch: pytest.MonkeyPatch):
    def explode():
        raise RuntimeError("credential_process printed: secret=process-secret-EXAMPLE")

    fake_botocore(monkeypatch, explode)
    with pytest.raises(
        ValueError, match=r"botocore's AWS credential chain failed \(RuntimeError\)"
    ) as failed:
        aws_credentials()
    assert "process-secret" not in "".join(traceback.format_exception(failed.value))


def test_repr_hides_the_secret_and_the_token():
    credentials = AwsCredentials("AKIAREPRREPRREPR5555", "repr-secret-EXAMPLE", "repr-token-EXAMPLE")
    for shown in (repr(credentials), str(credentials), f"{credentials}", repr([credentials])):
        assert "repr-secret" not in shown and "repr-token" not in shown
        assert "****5555" in shown
    assert "session_token=None" in repr(AwsCredentials("AKIAREPRREPRREPR5555", "repr-secret-EXAMPLE"))


# --- region --------------------------------------------------------------------------------------


def test_region_prefers_sync_aws_region_then_aws_region_then_the_default():
    env = {"SYNC_AWS_REGION": "eu-west-1", "AWS_REGION": "us-east-2", "AWS_DEFAULT_REGION": "ap-south-1"}
    assert aws_region(env) == "eu-west-1"
    assert aws_region({**env, "SYNC_AWS_REGION": " "}) == "us-east-2"
    assert aws_region({"AWS_DEFAULT_REGION": "ap-south-1"}) == "ap-south-1"
    with pytest.raises(ValueError) as missing:
        aws_region({})
    for name in ("SYNC_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"):
        assert name in str(missing.value)
