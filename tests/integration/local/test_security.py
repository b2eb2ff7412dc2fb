"""The engine over HTTP refuses what is not its own client's: unsigned, foreign, oversized, stalled."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from types import SimpleNamespace

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from airflow_sm_provider.local import LocalEngine
from airflow_sm_provider.local.gate import MAX_BODY_BYTES

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def send(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """One raw HTTP request; (status, lower-case headers, body parsed as JSON if it is JSON)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    headers = {k.lower(): v for k, v in response.getheaders()}
    try:
        return response.status, headers, json.loads(data)
    except ValueError:
        return response.status, headers, data


def signed(engine, body: bytes, target: str, host: str | None = None, service: str = "sagemaker") -> dict:
    """Headers of a JSON call signed with the engine's key, as botocore signs it."""
    url = engine.endpoint_url if host is None else f"http://{host}"
    request = AWSRequest(method="POST", url=f"{url}/", data=body, headers={"X-Amz-Target": target})
    key = Credentials(engine.credentials.access_key_id, engine.credentials.secret_access_key)
    SigV4Auth(key, service, engine.region).add_auth(request)
    return {
        **dict(request.headers),
        "Content-Type": "application/x-amz-json-1.1",
        **({"Host": host} if host else {}),
    }


def job_request(name: str) -> dict:
    return {
        "ProcessingJobName": name,
        "RoleArn": ROLE,
        "AppSpecification": {"ImageUri": "img", "ContainerEntrypoint": ["sh", "-c", "touch /tmp/pwned"]},
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}
        },
    }


def test_a_browser_page_cannot_create_a_job(engine):
    """The attack: a page POSTs CreateProcessingJob/CreateTrainingJob unsigned, from another origin."""
    name = f"drive-by-{uuid.uuid4().hex[:8]}"
    browser = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    for target in ("SageMaker.CreateProcessingJob", "SageMaker.CreateTrainingJob"):
        headers = {**browser, "X-Amz-Target": target}
        status, headers_back, body = send(
            engine.endpoint_url, "POST", "/", json.dumps(job_request(name)).encode(), headers
        )
        assert (status, body["__type"]) == (400, "MissingAuthenticationTokenException")
        assert not any(h.startswith("access-control-") for h in headers_back)
    names = [
        j["ProcessingJobName"]
        for j in engine.client("sagemaker").list_processing_jobs()["ProcessingJobSummaries"]
    ]
    assert name not in names


def test_a_preflight_gets_no_cors_permission(engine):
    for path in ("/", "/some-bucket/key"):
        status, headers, _ = send(
            engine.endpoint_url,
            "OPTIONS",
            path,
            headers={
                "Origin": "http://evil.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-amz-target,content-type",
            },
        )
        assert status == 403 and not any(h.startswith("access-control-") for h in headers)


def test_moto_cors_headers_never_leave_the_engine(engine, s3_bucket):
    s3 = engine.client("s3")
    rule = {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "AllowedHeaders": ["*"]}
    s3.put_bucket_cors(Bucket=s3_bucket, CORSConfiguration={"CORSRules": [rule]})
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "k"})
    parts = urllib.parse.urlsplit(url)
    status, headers, body = send(
        url, "GET", f"{parts.path}?{parts.query}", headers={"Origin": "http://evil.example"}
    )
    assert (status, body) == (200, b"x")
    assert "access-control-allow-origin" not in headers


def test_a_dns_rebinding_host_is_refused(engine):
    port = urllib.parse.urlsplit(engine.endpoint_url).port
    body = b"{}"
    status, _, answer = send(
        engine.endpoint_url,
        "POST",
        "/",
        body,
        signed(engine, body, "SageMaker.ListTrainingJobs", f"evil.example:{port}"),
    )
    assert (status, answer["__type"]) == (403, "AccessDeniedException")
    status, _, answer = send(
        engine.endpoint_url, "POST", "/", body, signed(engine, body, "SageMaker.ListTrainingJobs")
    )
    assert status == 200 and "TrainingJobSummaries" in answer


def test_allowed_host_option():
    with LocalEngine(allowed_hosts=["sagemaker-local"]) as engine:
        port = urllib.parse.urlsplit(engine.endpoint_url).port
        body = b"{}"
        headers = signed(engine, body, "SageMaker.ListTrainingJobs", f"sagemaker-local:{port}")
        assert send(engine.endpoint_url, "POST", "/", body, headers)[0] == 200


def _client(engine, service: str, key_id: str, secret: str):
    return boto3.session.Session().client(
        service,
        region_name=engine.region,
        endpoint_url=engine.endpoint_url,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.mark.parametrize(
    ("service", "call", "wrong_secret", "unknown_key"),
    [
        ("sagemaker", "list_training_jobs", "InvalidSignatureException", "UnrecognizedClientException"),
        ("logs", "describe_log_groups", "InvalidSignatureException", "UnrecognizedClientException"),
        ("s3", "list_buckets", "SignatureDoesNotMatch", "InvalidAccessKeyId"),
        ("sts", "get_caller_identity", "SignatureDoesNotMatch", "InvalidClientTokenId"),
    ],
)
def test_wrong_keys_get_each_protocols_aws_error(engine, service, call, wrong_secret, unknown_key):
    for key_id, secret, code in (
        (engine.credentials.access_key_id, "not-the-secret", wrong_secret),
        ("LOCALNOSUCHKEY000000", engine.credentials.secret_access_key, unknown_key),
    ):
        with pytest.raises(ClientError) as err:
            getattr(_client(engine, service, key_id, secret), call)()
        assert err.value.response["Error"]["Code"] == code


def test_unsigned_s3_is_access_denied(engine, s3_bucket):
    status, _, body = send(engine.endpoint_url, "GET", f"/{s3_bucket}/anything")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body


def test_a_request_from_the_wrong_time_is_refused(engine, monkeypatch):
    sagemaker = engine.client("sagemaker")
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: _utc(time.time() - 20 * 60))
    with pytest.raises(ClientError) as err:
        sagemaker.list_training_jobs()
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: _utc(time.time() - 10 * 60))
    sagemaker.list_training_jobs()  # within AWS's 15 minutes


def _utc(epoch: float):
    import datetime

    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).replace(tzinfo=None)


@pytest.mark.parametrize("signature_version", [None, "s3v4"])
def test_presigned_get_and_put(engine, s3_bucket, signature_version):
    s3 = boto3.session.Session().client(  # None: boto3's default, signature version 2 for presigning
        "s3",
        region_name=engine.region,
        endpoint_url=engine.endpoint_url,
        aws_access_key_id=engine.credentials.access_key_id,
        aws_secret_access_key=engine.credentials.secret_access_key,
        config=Config(signature_version=signature_version),
    )
    key = f"dir/a key+{signature_version}"
    put = urllib.parse.urlsplit(
        s3.generate_presigned_url("put_object", Params={"Bucket": s3_bucket, "Key": key})
    )
    assert send(engine.endpoint_url, "PUT", f"{put.path}?{put.query}", b"presigned")[0] == 200
    get = urllib.parse.urlsplit(
        s3.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": key})
    )
    assert send(engine.endpoint_url, "GET", f"{get.path}?{get.query}")[2] == b"presigned"
    other = get.path.replace("a%20key", "another")
    assert send(engine.endpoint_url, "GET", f"{other}?{get.query}")[0] == 403  # a URL is for one object


def test_streaming_uploads_with_trailing_checksums(engine, s3_bucket, tmp_path):
    """boto3's default for uploads: aws-chunked bodies, STREAMING-UNSIGNED-PAYLOAD-TRAILER, CRC32."""
    data = bytes(range(256)) * (40 * 1024)  # 10 MB: a multipart upload
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    s3 = engine.client("s3")
    s3.upload_file(str(path), s3_bucket, "big.bin")
    s3.put_object(Bucket=s3_bucket, Key="small.bin", Body=b"small", ChecksumAlgorithm="CRC32")
    assert s3.get_object(Bucket=s3_bucket, Key="big.bin")["Body"].read() == data
    assert s3.get_object(Bucket=s3_bucket, Key="small.bin")["Body"].read() == b"small"


# -- request bounds ---------------------------------------------------------------------------


def test_an_oversized_body_is_refused_before_it_is_read(engine):
    body = b'{"TrainingJobName": "' + b"a" * MAX_BODY_BYTES + b'"}'
    status, _, answer = send(
        engine.endpoint_url, "POST", "/", body, signed(engine, body, "SageMaker.DescribeTrainingJob")
    )
    assert (status, answer["__type"]) == (413, "RequestEntityTooLarge")


def test_unknown_members_are_refused_and_not_stored(engine):
    sagemaker = boto3.session.Session().client(
        "sagemaker",
        region_name=engine.region,
        endpoint_url=engine.endpoint_url,
        aws_access_key_id=engine.credentials.access_key_id,
        aws_secret_access_key=engine.credentials.secret_access_key,
    )
    name = f"exp-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"ExperimentName": name, "Junk": "x" * 1000}).encode()
    status, _, answer = send(
        engine.endpoint_url, "POST", "/", body, signed(engine, body, "SageMaker.CreateExperiment")
    )
    assert (status, answer["__type"]) == (400, "ValidationException") and "'Junk'" in answer["Message"]
    with pytest.raises(ClientError):
        sagemaker.describe_experiment(ExperimentName=name)


def test_a_nested_json_bomb_is_a_serialization_error(engine):
    body = b'{"TrainingJobName": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, _, answer = send(
        engine.endpoint_url, "POST", "/", body, signed(engine, body, "SageMaker.DescribeTrainingJob")
    )
    assert (status, answer["__type"]) == (400, "SerializationException")


@pytest.mark.parametrize("service", ["s3", "sagemaker", "logs"])
def test_an_unknown_target_is_an_unknown_operation(engine, service):
    body = b"{}"
    status, _, answer = send(
        engine.endpoint_url, "POST", "/", body, signed(engine, body, "Foo.Bar", service=service)
    )
    assert (status, answer["__type"]) == (400, "UnknownOperationException")


def test_a_short_body_cannot_hold_a_server_thread():
    with LocalEngine(read_timeout_seconds=1) as engine:
        parts = urllib.parse.urlsplit(engine.endpoint_url)
        body = b'{"TrainingJobName": "a"}'
        headers = signed(engine, body, "SageMaker.DescribeTrainingJob")
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            lines = [f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-length"]
            head = "POST / HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000\r\n{}\r\n\r\n".format(
                parts.netloc, "\r\n".join(lines)
            )
            started = time.monotonic()
            sock.sendall(head.encode() + body)  # 1000 bytes announced, a few sent
            answer = sock.recv(65536)
            assert time.monotonic() - started < 5
        assert answer.startswith(b"HTTP/1.1 400") and b"RequestTimeout" in answer
        engine.client("sagemaker").list_training_jobs()


def test_host_0_prints_a_reachable_endpoint():
    with LocalEngine(host="0") as engine:
        assert engine.endpoint_url.startswith("http://127.0.0.1:")
        engine.client("sagemaker").list_training_jobs()


def test_the_command_takes_a_fixed_key_and_allowed_hosts_as_compose_does(tmp_path):
    """``SAGEMAKER_LOCAL_*`` in the environment, ``--allowed-host``: printed and honoured."""
    env = {
        **os.environ,
        "SAGEMAKER_LOCAL_ACCESS_KEY_ID": "LOCALCOMPOSE00000000",
        "SAGEMAKER_LOCAL_SECRET_ACCESS_KEY": "compose-secret",
        "PYTHONUNBUFFERED": "1",
    }
    argv = [
        sys.executable,
        "-m",
        "airflow_sm_provider.local",
        "--port",
        "0",
        "--allowed-host",
        "sagemaker-local",
    ]
    process = subprocess.Popen(
        [*argv, "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        exports: dict[str, str] = {}
        while "SAGEMAKER_USER_CONFIG_OVERRIDE" not in exports:
            line = process.stdout.readline()
            assert line, process.stderr.read()
            key, _, value = line.strip().removeprefix("export ").partition("=")
            exports[key] = value
        assert exports["AWS_ACCESS_KEY_ID"] == "LOCALCOMPOSE00000000"
        assert exports["AWS_SECRET_ACCESS_KEY"] == "compose-secret"
        assert not (tmp_path / "credentials").exists()  # nothing generated when a key is given
        engine = SimpleNamespace(
            endpoint_url=exports["AWS_ENDPOINT_URL"],
            region="us-east-1",
            credentials=SimpleNamespace(
                access_key_id="LOCALCOMPOSE00000000", secret_access_key="compose-secret"
            ),
        )
        port = urllib.parse.urlsplit(engine.endpoint_url).port
        body = b"{}"
        headers = signed(engine, body, "SageMaker.ListTrainingJobs", f"sagemaker-local:{port}")
        assert send(engine.endpoint_url, "POST", "/", body, headers)[0] == 200
    finally:
        process.terminate()
        process.communicate(timeout=15)
