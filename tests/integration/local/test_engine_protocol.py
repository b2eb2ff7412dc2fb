"""The engine's protocol over HTTP with boto3: model validation end to end, UTF-8 bodies, loopback.

Routing, error shapes and engine routes are in ``test_server.py``; duplicate names, missing
RoleArn and negative MaxRuntimeInSeconds (client validation off) in ``test_training_jobs.py``.
Here: the constraints botocore does not check on the client (patterns, maximums, enums) are
answered as AWS answers them, over the wire, and nothing is created.
"""

from __future__ import annotations

import copy
import socket
import urllib.parse
import uuid

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def training(bucket: str) -> dict:
    """A valid CreateTrainingJob request (never started: every test breaks one member)."""
    return {
        "TrainingJobName": f"proto-{uuid.uuid4().hex[:10]}",
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": "local/python:3", "TrainingInputMode": "File"},
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/train"}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }


def processing(bucket: str) -> dict:
    """A valid CreateProcessingJob request (never started: every test breaks one member)."""
    return {
        "ProcessingJobName": f"proto-{uuid.uuid4().hex[:10]}",
        "RoleArn": ROLE,
        "AppSpecification": {"ImageUri": "local/python:3"},
        "ProcessingInputs": [
            {
                "InputName": "data",
                "S3Input": {
                    "S3Uri": f"s3://{bucket}/raw",
                    "LocalPath": "/opt/ml/processing/input/data",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        ],
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}
        },
    }


def _set(request: dict, path: tuple, value: object) -> dict:
    changed = copy.deepcopy(request)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


TRAINING_BREAKS = {
    "illegal name": (("TrainingJobName",), "bad_name!", "trainingJobName", "regular expression pattern"),
    "too long name": (("TrainingJobName",), "n" * 64, "trainingJobName", "length less than or equal to 63"),
    "role not an ARN": (
        ("RoleArn",),
        "role/SageMakerRole-not-an-arn",
        "roleArn",
        "regular expression pattern: arn:aws",
    ),
    "unknown instance type": (
        ("ResourceConfig", "InstanceType"),
        "ml.m5.gigantic",
        "resourceConfig.instanceType",
        "enum value set: [",
    ),
    "malformed S3 output": (
        ("OutputDataConfig", "S3OutputPath"),
        "s3:/bucket/out",
        "outputDataConfig.s3OutputPath",
        "regular expression pattern",
    ),
    "malformed S3 channel": (
        ("InputDataConfig", 0, "DataSource", "S3DataSource", "S3Uri"),
        "bucket/train",
        "inputDataConfig.1.member.dataSource.s3DataSource.s3Uri",
        "regular expression pattern",
    ),
    "runtime over 28 days": (
        ("StoppingCondition", "MaxRuntimeInSeconds"),
        28 * 24 * 3600 + 1,
        "stoppingCondition.maxRuntimeInSeconds",
        "value less than or equal to 2419200",
    ),
}

PROCESSING_BREAKS = {
    "illegal name": (("ProcessingJobName",), "bad name", "processingJobName", "regular expression pattern"),
    "unknown instance type": (
        ("ProcessingResources", "ClusterConfig", "InstanceType"),
        "ml.m5.gigantic",
        "processingResources.clusterConfig.instanceType",
        "enum value set: [",
    ),
    "malformed S3 input": (
        ("ProcessingInputs", 0, "S3Input", "S3Uri"),
        "s3//bucket/raw",
        "processingInputs.1.member.s3Input.s3Uri",
        "regular expression pattern",
    ),
    "runtime over 9 days": (
        ("StoppingCondition",),
        {"MaxRuntimeInSeconds": 777_601},
        "stoppingCondition.maxRuntimeInSeconds",
        "value less than or equal to 777600",
    ),
}


def _names(sagemaker, kind: str) -> set[str]:
    """Names of all jobs of ``kind``: jobs of earlier tests may still change status meanwhile."""
    noun = "TrainingJob" if kind == "training" else "ProcessingJob"
    pages = sagemaker.get_paginator(f"list_{kind}_jobs").paginate()
    return {summary[f"{noun}Name"] for page in pages for summary in page[f"{noun}Summaries"]}


def _refused(call, request: dict) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as err:
        call(**request)
    error, meta = err.value.response["Error"], err.value.response["ResponseMetadata"]
    return error["Code"], error["Message"], meta["HTTPStatusCode"]


@pytest.mark.parametrize("label", list(TRAINING_BREAKS))
def test_bad_training_requests_are_validation_errors_and_create_nothing(engine, s3_bucket, label):
    path, value, member, rule = TRAINING_BREAKS[label]
    sagemaker = engine.client("sagemaker")
    before = _names(sagemaker, "training")
    request = _set(training(s3_bucket), path, value)
    code, message, status = _refused(sagemaker.create_training_job, request)
    assert (code, status) == ("ValidationException", 400)
    assert f"at '{member}' failed to satisfy constraint: Member must " in message and rule in message
    assert _names(sagemaker, "training") == before


@pytest.mark.parametrize("label", list(PROCESSING_BREAKS))
def test_bad_processing_requests_are_validation_errors_and_create_nothing(engine, s3_bucket, label):
    path, value, member, rule = PROCESSING_BREAKS[label]
    sagemaker = engine.client("sagemaker")
    before = _names(sagemaker, "processing")
    request = _set(processing(s3_bucket), path, value)
    code, message, status = _refused(sagemaker.create_processing_job, request)
    assert (code, status) == ("ValidationException", 400)
    assert f"at '{member}' failed to satisfy constraint: Member must " in message and rule in message
    assert _names(sagemaker, "processing") == before


#: Requests the service model accepts but the local engine cannot run: (kind, member path,
#: value, what the refusal says). Refused at create time, so no job is accepted that then fails.
UNSUPPORTED = {
    "training augmented manifest": (
        "training",
        ("InputDataConfig", 0, "DataSource", "S3DataSource", "S3DataType"),
        "AugmentedManifestFile",
        "The local engine does not support channel train S3DataType AugmentedManifestFile; "
        "it supports S3Prefix, ManifestFile",
    ),
    "training file system channel": (
        "training",
        ("InputDataConfig", 0, "DataSource"),
        {
            "FileSystemDataSource": {
                "FileSystemId": "fs-0123456789abcdef0",
                "FileSystemAccessMode": "ro",
                "FileSystemType": "EFS",
                "DirectoryPath": "/train",
            }
        },
        "The local engine supports S3DataSource channels only",
    ),
    "training pipe mode": (
        "training",
        ("AlgorithmSpecification", "TrainingInputMode"),
        "Pipe",
        "Pipe input mode is not supported by the local engine",
    ),
    "processing pipe input": (
        "processing",
        ("ProcessingInputs", 0, "S3Input", "S3InputMode"),
        "Pipe",
        "The local engine does not support processing input data S3InputMode Pipe; it supports File",
    ),
    "processing gzip input": (
        "processing",
        ("ProcessingInputs", 0, "S3Input", "S3CompressionType"),
        "Gzip",
        "The local engine does not support processing input data S3CompressionType Gzip; it supports None",
    ),
    "processing without an entry point": (
        "processing",
        ("AppSpecification",),
        {"ImageUri": "local/python:3"},
        "AppSpecification.ContainerEntrypoint is required",
    ),
}


@pytest.mark.parametrize("label", list(UNSUPPORTED))
def test_what_the_engine_cannot_run_is_refused_at_create_time(engine, s3_bucket, label):
    kind, path, value, says = UNSUPPORTED[label]
    sagemaker = engine.client("sagemaker")
    base = training(s3_bucket) if kind == "training" else processing(s3_bucket)
    if kind == "processing":  # runnable but for the one broken member
        base["AppSpecification"]["ContainerEntrypoint"] = ["python3", "-c", "print('never')"]
    request = _set(base, path, value)
    before = _names(sagemaker, kind)
    code, message, status = _refused(getattr(sagemaker, f"create_{kind}_job"), request)
    assert (code, status) == ("ValidationException", 400)
    assert says in message
    assert _names(sagemaker, kind) == before


def test_every_broken_constraint_is_listed_in_one_answer(engine, s3_bucket):
    request = _set(training(s3_bucket), ("RoleArn",), "role/SageMakerRole-not-an-arn")
    request = _set(request, ("ResourceConfig", "InstanceType"), "ml.nope")
    request["TrainingJobName"] = "bad_name!"
    code, message, _ = _refused(engine.client("sagemaker").create_training_job, request)
    assert code == "ValidationException"
    assert message.startswith("3 validation errors detected: ")
    assert [part.split("' at '")[1].split("'")[0] for part in message.split("; ")] == [
        "trainingJobName",
        "roleArn",
        "resourceConfig.instanceType",
    ]


@pytest.mark.parametrize("value", ["データセット", "Привет-мир", "naïve façade"])
def test_unicode_letters_travel_in_tags(engine, value):
    """Letters outside ASCII pass the \\p{L} tag patterns and come back intact through UTF-8 JSON."""
    sagemaker = engine.client("sagemaker")
    name = f"proto-exp-{uuid.uuid4().hex[:8]}"
    arn = sagemaker.create_experiment(ExperimentName=name, Tags=[{"Key": value, "Value": value}])[
        "ExperimentArn"
    ]
    assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == [{"Key": value, "Value": value}]


def test_tag_values_outside_the_pattern_are_refused(engine):
    sagemaker = engine.client("sagemaker")
    name = f"proto-exp-{uuid.uuid4().hex[:8]}"
    request = {"ExperimentName": name, "Tags": [{"Key": "ok", "Value": "semi;colon"}]}
    code, message, _ = _refused(sagemaker.create_experiment, request)
    assert code == "ValidationException" and "at 'tags.1.member.value'" in message
    code, _, _ = _refused(sagemaker.describe_experiment, {"ExperimentName": name})
    assert code == "ResourceNotFound"


def test_binds_loopback_only_by_default(engine):
    """Reached on 127.0.0.1, refused on another loopback address (it would answer if bound to 0.0.0.0)."""
    port = urllib.parse.urlsplit(engine.endpoint_url).port
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.2", port), timeout=2):
        pass
