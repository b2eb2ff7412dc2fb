"""The SigV4 verifier against requests botocore really signs, with each of its signers."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from botocore.auth import (
    HmacV1QueryAuth,
    S3SigV4Auth,
    S3SigV4QueryAuth,
    SigV4Auth,
    SigV4QueryAuth,
)
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from airflow_sm_provider.local import auth

KEY_ID, SECRET = "LOCALTESTKEY00000000", "test-secret"
KEY = auth.SigningKey(SECRET)
BASE = "http://127.0.0.1:4566"


def arrived(request: AWSRequest, body: bytes = b"") -> tuple[auth.Request, auth.SignedRequest, bytes]:
    """The request as the engine sees it: raw path and query as sent, lower-case headers, Host."""
    url = urlsplit(request.url)
    headers = {name.lower(): value for name, value in request.headers.items()}
    headers["host"] = url.netloc
    got = auth.Request(request.method, url.path, url.query, headers)
    signed = auth.parse(got)
    assert signed is not None
    return got, signed, body


def check(request: AWSRequest, body: bytes = b"", key: auth.SigningKey | None = KEY, now=None) -> None:
    got, signed, body = arrived(request, body)
    auth.verify(got, signed, key, lambda: auth.hashlib.sha256(body).hexdigest(), now=now)


def sign(
    signer_class=SigV4Auth,
    service: str = "sagemaker",
    method: str = "POST",
    path: str = "/",
    body: bytes = b'{"TrainingJobName": "a"}',
    headers: dict | None = None,
    token: str | None = None,
) -> AWSRequest:
    request = AWSRequest(method=method, url=f"{BASE}{path}", data=body, headers=headers or {})
    signer_class(Credentials(KEY_ID, SECRET, token), service, "us-east-1").add_auth(request)
    return request


@pytest.mark.parametrize(
    "path",
    ["/", "/BatchGetMetrics", "/a b/c", "/x/./y/../z", "//double//slash", "/%C3%A9t%C3%A9"],
)
def test_header_signatures_of_json_services(path):
    check(
        sign(path=path, headers={"X-Amz-Target": "SageMaker.DescribeTrainingJob"}),
        b'{"TrainingJobName": "a"}',
    )


@pytest.mark.parametrize(
    "path", ["/bucket/key", "/bucket/a%20b/c%2Bd", "/bucket/x/../y", "/bucket/%E2%9C%93", "/bucket"]
)
def test_header_signatures_of_s3_with_each_payload_mode(path):
    body = b"hello"
    check(sign(S3SigV4Auth, "s3", "PUT", f"{path}?tagging=&versionId=3", body), body)  # hex SHA-256
    contexts = {  # what makes botocore's S3 signer choose each payload mode
        "UNSIGNED-PAYLOAD": {"client_config": Config(s3={"payload_signing_enabled": False})},
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER": {
            "checksum": {"request_algorithm": {"in": "trailer", "name": "crc32"}}
        },
    }
    for mode, context in contexts.items():
        request = AWSRequest(method="PUT", url=f"{BASE}{path}", data=body)
        request.context.update(context)
        S3SigV4Auth(Credentials(KEY_ID, SECRET), "s3", "us-east-1").add_auth(request)
        assert request.headers["X-Amz-Content-SHA256"] == mode
        check(request, b"a body the signature does not cover")


def test_presigned_urls_v4_and_v2():
    for signer, service in ((S3SigV4QueryAuth, "s3"), (SigV4QueryAuth, "sagemaker")):
        request = AWSRequest(method="GET", url=f"{BASE}/bucket/a%20key?response-content-type=text%2Fplain")
        signer(Credentials(KEY_ID, SECRET), service, "us-east-1", expires=60).add_auth(request)
        check(request)
    request = AWSRequest(method="GET", url=f"{BASE}/bucket/a%20key?versionId=2")
    request.auth_path = "/bucket/a%20key"
    HmacV1QueryAuth(Credentials(KEY_ID, SECRET), expires=60).add_auth(request)
    check(request)


def test_a_date_header_instead_of_x_amz_date():
    check(
        sign(headers={"Date": "Mon, 30 Nov 2026 00:00:00 GMT"}), b'{"TrainingJobName": "a"}'
    )  # re-dated by botocore


def test_session_token_must_match_the_keys():
    request = sign(token="job-token")
    body = b'{"TrainingJobName": "a"}'
    check(request, body, auth.SigningKey(SECRET, "job-token"))
    with pytest.raises(auth.SignatureError) as err:
        check(request, body, auth.SigningKey(SECRET, "another-token"))
    assert err.value.reason == "unknown-key"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda got: got, "unknown-key"),  # key None below
        (lambda got: auth.Request(got.method, "/other", got.raw_query, got.headers), "mismatch"),
        (lambda got: auth.Request("PUT", got.raw_path, got.raw_query, got.headers), "mismatch"),
        (lambda got: auth.Request(got.method, got.raw_path, "a=1", got.headers), "mismatch"),
        (
            lambda got: auth.Request(
                got.method,
                got.raw_path,
                got.raw_query,
                {**got.headers, "x-amz-target": "SageMaker.CreateTrainingJob"},
            ),
            "mismatch",
        ),
        (
            lambda got: auth.Request(
                got.method, got.raw_path, got.raw_query, {**got.headers, "host": "evil.example:4566"}
            ),
            "mismatch",
        ),
    ],
)
def test_anything_changed_breaks_the_signature(change, reason):
    body = b'{"TrainingJobName": "a"}'
    got, signed, _ = arrived(sign(headers={"X-Amz-Target": "SageMaker.DescribeTrainingJob"}))
    key = None if reason == "unknown-key" else KEY
    with pytest.raises(auth.SignatureError) as err:
        auth.verify(change(got), signed, key, lambda: auth.hashlib.sha256(body).hexdigest())
    assert err.value.reason == reason


def test_a_changed_body_breaks_the_signature_json_and_s3():
    with pytest.raises(auth.SignatureError, match="signature"):
        check(sign(), b'{"TrainingJobName": "b"}')
    with pytest.raises(auth.SignatureError, match="x-amz-content-sha256"):
        check(sign(S3SigV4Auth, "s3", "PUT", "/bucket/k", b"hello"), b"HELLO")


def test_wrong_secret():
    with pytest.raises(auth.SignatureError) as err:
        check(sign(), b'{"TrainingJobName": "a"}', auth.SigningKey("not-the-secret"))
    assert err.value.reason == "mismatch"


def test_clock_skew_of_15_minutes_and_presigned_expiry():
    body = b'{"TrainingJobName": "a"}'
    request = sign()
    check(request, body, now=time.time() + 14 * 60)
    for offset in (16 * 60, -16 * 60):
        with pytest.raises(auth.SignatureError) as err:
            check(request, body, now=time.time() + offset)
        assert err.value.reason == "skewed"
    presigned = AWSRequest(method="GET", url=f"{BASE}/bucket/k")
    S3SigV4QueryAuth(Credentials(KEY_ID, SECRET), "s3", "us-east-1", expires=3600).add_auth(presigned)
    check(presigned, now=time.time() + 3000)  # older than 15 minutes, within its X-Amz-Expires
    with pytest.raises(auth.SignatureError) as err:
        check(presigned, now=time.time() + 3700)
    assert err.value.reason == "expired"


def test_unsigned_and_malformed_requests():
    assert auth.parse(auth.Request("POST", "/", "", {"host": "h"})) is None
    for authorization in ("AWS AKID:sig", "AWS4-HMAC-SHA256 Credential=x, SignedHeaders=host, Signature=zz"):
        with pytest.raises(auth.SignatureError) as err:
            auth.parse(
                auth.Request(
                    "POST", "/", "", {"authorization": authorization, "x-amz-date": "20260101T000000Z"}
                )
            )
        assert err.value.reason == "malformed"
