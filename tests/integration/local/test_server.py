"""One endpoint for all of AWS: routing, error shapes and engine routes, over HTTP."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
import uuid

import boto3
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration


def raw(engine, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """One HTTP request to the engine; returns (status, headers, parsed JSON or raw bytes)."""
    url = urllib.parse.urlsplit(engine.endpoint_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    try:
        return response.status, response.headers, json.loads(data)
    except ValueError:
        return response.status, response.headers, data


def engine_credentials(engine) -> Credentials:
    return Credentials(engine.credentials.access_key_id, engine.credentials.secret_access_key)


def signed(
    engine, method: str, path: str, body: bytes = b"", headers: dict | None = None, service="sagemaker"
):
    """``headers`` plus a SigV4 signature by the engine's key, as botocore signs (S3's rules for s3)."""
    request = AWSRequest(method=method, url=f"{engine.endpoint_url}{path}", data=body, headers=headers or {})
    signer = S3SigV4Auth if service == "s3" else SigV4Auth
    signer(engine_credentials(engine), service, engine.region).add_auth(request)
    return dict(request.headers)


def sagemaker_call(engine, operation: str, body: bytes, headers: dict | None = None) -> tuple:
    headers = {
        "X-Amz-Target": f"SageMaker.{operation}",
        "Content-Type": "application/x-amz-json-1.1",
        **(headers or {}),
    }
    return raw(engine, "POST", "/", body, signed(engine, "POST", "/", body, headers))


def test_health(engine):
    assert raw(engine, "GET", "/_engine/health")[:3:2] == (200, {"status": "ok"})


def test_s3_put_and_get_through_the_engine(engine, s3_bucket):
    s3 = engine.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="dir/hello.txt", Body=b"hello")
    assert s3.get_object(Bucket=s3_bucket, Key="dir/hello.txt")["Body"].read() == b"hello"
    listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix="dir/")["Contents"]
    assert [o["Key"] for o in listed] == ["dir/hello.txt"]


def test_s3_virtual_host_style_is_understood(engine, s3_bucket):
    """A client that addresses the bucket in the Host header (virtual-host style) still works."""
    engine.client("s3").put_object(Bucket=s3_bucket, Key="v.txt", Body=b"virtual")
    port = urllib.parse.urlsplit(engine.endpoint_url).port
    request = AWSRequest(method="GET", url=f"http://{s3_bucket}.localhost:{port}/v.txt")
    S3SigV4Auth(engine_credentials(engine), "s3", engine.region).add_auth(request)
    headers = {**dict(request.headers), "Host": f"{s3_bucket}.localhost:{port}"}
    status, _, body = raw(engine, "GET", "/v.txt", headers=headers)
    assert (status, body) == (200, b"virtual")


def test_cloudwatch_logs_and_metrics_go_to_moto(engine):
    logs = engine.client("logs")
    group, stream = f"/test/{uuid.uuid4().hex[:8]}", "stream-1"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    events = [{"timestamp": now, "message": "first"}, {"timestamp": now + 1, "message": "second"}]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    got = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    assert [e["message"] for e in got] == ["first", "second"]

    cloudwatch = engine.client("cloudwatch")
    namespace = f"/test/{uuid.uuid4().hex[:8]}"
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=[{"MetricName": "loss", "Value": 0.5}])
    assert [m["MetricName"] for m in cloudwatch.list_metrics(Namespace=namespace)["Metrics"]] == ["loss"]


def test_sts_and_iam_go_to_moto(engine):
    assert engine.client("sts").get_caller_identity()["Account"].isdigit()
    role = f"role-{uuid.uuid4().hex[:8]}"
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    arn = engine.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    assert arn.endswith(f":role/{role}")


def test_batch_put_metrics_reaches_the_engine_not_s3(engine):
    name = f"tc-{uuid.uuid4().hex[:8]}"
    engine.client("sagemaker").create_trial_component(TrialComponentName=name)
    metrics = engine.client("sagemaker-metrics")
    point = {"MetricName": "loss", "Timestamp": time.time(), "Step": 1, "Value": 0.25}
    assert metrics.batch_put_metrics(TrialComponentName=name, MetricData=[point]).get("Errors", []) == []
    got = metrics.batch_get_metrics(
        MetricQueries=[
            {
                "MetricName": "loss",
                "ResourceArn": engine.client("sagemaker").describe_trial_component(TrialComponentName=name)[
                    "TrialComponentArn"
                ],
                "MetricStat": "Avg",
                "Period": "IterationNumber",
                "XAxisType": "IterationNumber",
            }
        ]
    )
    assert got["MetricQueryResults"][0]["MetricValues"] == [0.25]
    buckets = [b["Name"] for b in engine.client("s3").list_buckets()["Buckets"]]
    assert not any(b.lower() == "batchputmetrics" for b in buckets)


def test_metrics_requests_are_validated_against_their_model(engine):
    metrics = boto3.session.Session().client(
        "sagemaker-metrics",
        region_name=engine.region,
        endpoint_url=engine.endpoint_url,
        aws_access_key_id=engine.credentials.access_key_id,
        aws_secret_access_key=engine.credentials.secret_access_key,
        config=Config(parameter_validation=False),
    )
    with pytest.raises(ClientError) as err:
        metrics.batch_put_metrics(TrialComponentName="tc", MetricData=[])
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert "'metricData'" in err.value.response["Error"]["Message"]
    assert err.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "ValidationException"


def test_errors_have_the_aws_shape(engine):
    with pytest.raises(ClientError) as err:
        engine.client("sagemaker").describe_training_job(TrainingJobName="no-such-job-here")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    status, headers, body = sagemaker_call(engine, "DescribeTrainingJob", b'{"TrainingJobName": "bad name"}')
    assert status == 400 and headers["x-amzn-ErrorType"] == "ValidationException"
    assert set(body) == {"__type", "Message"} and body["__type"] == "ValidationException"
    assert body["Message"].startswith("1 validation error detected: Value 'bad name' at 'trainingJobName'")


def test_unknown_sagemaker_operations(engine):
    status, _, body = sagemaker_call(engine, "LaunchRocket", b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    with pytest.raises(ClientError) as err:  # in the model, not served by the engine
        engine.client("sagemaker").delete_endpoint(EndpointName="e")
    assert err.value.response["Error"]["Code"] == "UnknownOperationException"


def test_other_services_signed_for_sagemaker_are_not_served(engine):
    runtime = engine.client("sagemaker-runtime")
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName="e", Body=b"{}")
    assert err.value.response["Error"]["Code"] == "UnknownOperationException"


def test_malformed_json_is_a_serialization_error(engine):
    status, _, body = sagemaker_call(engine, "ListTrainingJobs", b"{not json")
    assert (status, body["__type"]) == (400, "SerializationException")


def test_chunked_request_bodies_are_read(engine):
    url = urllib.parse.urlsplit(engine.endpoint_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    body = b'{"TrainingJobName": "bad name"}'
    connection.putrequest("POST", "/", skip_host=True)
    for name, value in signed(
        engine, "POST", "/", body, {"X-Amz-Target": "SageMaker.DescribeTrainingJob"}
    ).items():
        connection.putheader(name, value)
    connection.putheader("Host", url.netloc)
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    connection.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    response = connection.getresponse()
    assert "'bad name'" in json.loads(response.read())["Message"]  # the body arrived
    connection.close()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "not-the-token"}])
def test_job_credentials_need_the_job_token(engine, headers):
    status, _, body = raw(engine, "GET", "/_engine/credentials/no-such-job", headers=headers)
    assert status == 403 and "AccessKeyId" not in body


def test_interrupt_route_answers_with_aws_errors(engine):
    path = "/_engine/interrupt/no-such-job"
    status, _, body = raw(engine, "POST", path, headers=signed(engine, "POST", path))
    assert status == 400 and body["__type"] in {"ResourceNotFound", "ValidationException"}


def test_unknown_engine_route(engine):
    assert raw(engine, "GET", "/_engine/nothing", headers=signed(engine, "GET", "/_engine/nothing"))[0] == 404
