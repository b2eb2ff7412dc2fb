"""What the engine cannot do comes back as an AWS error that botocore parses, in every protocol.

Real botocore clients against the engine fixture: JSON (CloudWatch Logs; CloudWatch as
botocore 1.43+ sends it; SageMaker), rest-json (a moto service, Lambda), query (IAM, STS, and
CloudWatch as older clients send it: the same client built from botocore's own CloudWatch model
with its protocol list cut to ``query``), rest-xml (S3). Retries are off so a 500 is seen once.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration

_NO_RETRY = Config(retries={"mode": "standard", "max_attempts": 1})


def _client(engine, service: str, session: botocore.session.Session | None = None):
    return boto3.session.Session(botocore_session=session).client(
        service,
        region_name=engine.region,
        endpoint_url=engine.endpoint_url,
        aws_access_key_id=engine.credentials.access_key_id,
        aws_secret_access_key=engine.credentials.secret_access_key,
        config=_NO_RETRY,
    )


@pytest.fixture(scope="module")
def query_cloudwatch_session(tmp_path_factory) -> botocore.session.Session:
    """A botocore session whose CloudWatch model speaks only query, as clients before 1.43 do."""
    model = (
        botocore.session.get_session()
        .get_component("data_loader")
        .load_service_model("cloudwatch", "service-2")
    )
    model["metadata"]["protocol"] = "query"
    model["metadata"]["protocols"] = ["query"]
    folder = tmp_path_factory.mktemp("models")
    version = folder / "cloudwatch" / model["metadata"]["apiVersion"]
    version.mkdir(parents=True)
    (version / "service-2.json").write_text(json.dumps(model))
    session = botocore.session.get_session()
    session.get_component("data_loader").search_paths.insert(0, str(Path(folder)))
    return session


def _expect(call, code: str, status: int, *names: str) -> None:
    with pytest.raises(ClientError) as info:
        call()
    error, meta = info.value.response["Error"], info.value.response["ResponseMetadata"]
    assert (error["Code"], meta["HTTPStatusCode"]) == (code, status), error
    for name in names:
        assert name in error["Message"]


@pytest.mark.parametrize(
    ("service", "protocol", "operation", "params", "code", "action"),
    [
        (
            "logs",
            "json",
            "get_log_anomaly_detector",
            {"anomalyDetectorArn": "arn:aws:logs:us-east-1:123456789012:anomaly-detector:x"},
            "UnknownOperationException",
            "logs:GetLogAnomalyDetector",
        ),
        (
            "cloudwatch",
            "json",
            "describe_anomaly_detectors",
            {},
            "UnknownOperationException",
            "cloudwatch:DescribeAnomalyDetectors",
        ),
        ("sagemaker", "json", "list_endpoints", {}, "UnknownOperationException", "sagemaker:ListEndpoints"),
        (
            "lambda",
            "rest-json",
            "get_account_settings",
            {},
            "UnknownOperationException",
            "lambda:GetAccountSettings",
        ),
        (
            "iam",
            "query",
            "get_context_keys_for_principal_policy",
            {"PolicySourceArn": "arn:aws:iam::123456789012:role/r"},
            "InvalidAction",
            "iam:GetContextKeysForPrincipalPolicy",
        ),
        (
            "sts",
            "query",
            "decode_authorization_message",
            {"EncodedMessage": "x"},
            "InvalidAction",
            "sts:DecodeAuthorizationMessage",
        ),
    ],
)
def test_an_action_the_engine_does_not_support_is_an_aws_error(
    engine, service, protocol, operation, params, code, action
):
    client = _client(engine, service)
    assert client.meta.service_model.resolved_protocol == protocol
    _expect(lambda: getattr(client, operation)(**params), code, 400, action, "local engine does not support")


def test_cloudwatch_over_query_answers_unsupported_actions_as_query_errors(engine, query_cloudwatch_session):
    client = _client(engine, "cloudwatch", query_cloudwatch_session)
    assert client.meta.service_model.resolved_protocol == "query"
    _expect(client.describe_anomaly_detectors, "InvalidAction", 400, "cloudwatch:DescribeAnomalyDetectors")
    # and what moto implements still works over query
    client.put_metric_data(Namespace="t", MetricData=[{"MetricName": "m", "Value": 1.0}])
    assert client.list_metrics(Namespace="t")["Metrics"][0]["MetricName"] == "m"


def test_a_failure_inside_moto_is_an_s3_internal_error_naming_the_action(engine, s3_bucket):
    # moto fails reading RestoreObject's empty body: a bug of the emulator, answered as S3 would answer one
    client = _client(engine, "s3")
    _expect(
        lambda: client.restore_object(Bucket=s3_bucket, Key=f"k-{uuid.uuid4().hex}"),
        "InternalError",
        500,
        "s3:RestoreObject",
    )


def test_a_head_request_keeps_its_status_as_the_error(engine):
    """A HEAD answer has no body (moto labels it text/html): its status is the error, as on S3."""
    _expect(lambda: _client(engine, "s3").head_bucket(Bucket=f"missing-{uuid.uuid4().hex}"), "404", 404)
