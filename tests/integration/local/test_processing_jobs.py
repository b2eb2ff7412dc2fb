"""Processing jobs through the engine over HTTP."""

from __future__ import annotations

import time
import uuid

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"

PREPROCESS = """
import argparse, json, os, pathlib
p = argparse.ArgumentParser()
p.add_argument("--input")
p.add_argument("--output")
args = p.parse_args()
rows = pathlib.Path(args.input, "raw.csv").read_text().splitlines()
pathlib.Path(args.output, "clean.csv").write_text("\\n".join(r.upper() for r in rows))
config = json.loads(pathlib.Path("/opt/ml/config/processingjobconfig.json").read_text())
print("job arn", config["ProcessingJobArn"])
print("mode", os.environ["MODE"])
"""


def _config(name: str, bucket: str, script_key: str, **overrides) -> dict:
    config = {
        "ProcessingJobName": name,
        "RoleArn": ROLE,
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}
        },
        "AppSpecification": {
            "ImageUri": "local/sklearn:1",
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/script.py"],
            "ContainerArguments": [
                "--input",
                "/opt/ml/processing/input/data",
                "--output",
                "/opt/ml/processing/output",
            ],
        },
        "ProcessingInputs": [
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": f"s3://{bucket}/{script_key}",
                    "LocalPath": "/opt/ml/processing/input/code",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            },
            {
                "InputName": "data",
                "S3Input": {
                    "S3Uri": f"s3://{bucket}/raw",
                    "LocalPath": "/opt/ml/processing/input/data",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            },
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "clean",
                    "S3Output": {
                        "S3Uri": f"s3://{bucket}/clean",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "Environment": {"MODE": "test"},
    }
    config.update(overrides)
    return config


def _wait(sm, name: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = sm.describe_processing_job(ProcessingJobName=name)
        if job["ProcessingJobStatus"] in {"Completed", "Failed", "Stopped"}:
            return job
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _logs(engine, name: str) -> list[str]:
    logs = engine.client("logs")
    group = "/aws/sagemaker/ProcessingJobs"
    streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=name + "/")["logStreams"]
    assert streams and streams[0]["logStreamName"].startswith(f"{name}/algo-1-")
    events = logs.get_log_events(
        logGroupName=group, logStreamName=streams[0]["logStreamName"], startFromHead=True
    )
    return [e["message"] for e in events["events"]]


@pytest.fixture
def script(engine, s3_bucket):
    def put(body: str) -> str:
        key = f"code/{uuid.uuid4().hex[:8]}/script.py"
        engine.client("s3").put_object(Bucket=s3_bucket, Key=key, Body=body.encode())
        return key

    return put


def test_processing_job_maps_inputs_outputs_and_config(engine, s3_bucket, script):
    s3, sm = engine.client("s3"), engine.client("sagemaker")
    s3.put_object(Bucket=s3_bucket, Key="raw/raw.csv", Body=b"a,b\nc,d")
    name = f"p-{uuid.uuid4().hex[:10]}"
    arn = sm.create_processing_job(**_config(name, s3_bucket, script(PREPROCESS)))["ProcessingJobArn"]
    job = _wait(sm, name)
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ProcessingStartTime"] <= job["ProcessingEndTime"]
    assert s3.get_object(Bucket=s3_bucket, Key="clean/clean.csv")["Body"].read() == b"A,B\nC,D"
    lines = _logs(engine, name)
    assert f"job arn {arn}" in lines and "mode test" in lines
    summaries = sm.list_processing_jobs(NameContains=name)["ProcessingJobSummaries"]
    assert [(s["ProcessingJobName"], s["ProcessingJobStatus"]) for s in summaries] == [(name, "Completed")]


def test_failed_processing_job_has_exit_message_and_reason(engine, s3_bucket, script):
    s3, sm = engine.client("s3"), engine.client("sagemaker")
    s3.put_object(Bucket=s3_bucket, Key="raw/raw.csv", Body=b"x")
    name = f"p-{uuid.uuid4().hex[:10]}"
    sm.create_processing_job(**_config(name, s3_bucket, script("raise ValueError('no column y')\n")))
    job = _wait(sm, name)
    assert job["ProcessingJobStatus"] == "Failed"
    assert "ValueError: no column y" in job["FailureReason"] and "ExitCode 1" in job["FailureReason"]
    assert "Traceback" in job["ExitMessage"]


def test_stop_processing_job(engine, s3_bucket, script):
    s3, sm = engine.client("s3"), engine.client("sagemaker")
    s3.put_object(Bucket=s3_bucket, Key="raw/raw.csv", Body=b"x")
    name = f"p-{uuid.uuid4().hex[:10]}"
    sm.create_processing_job(
        **_config(name, s3_bucket, script("import time\nprint('go', flush=True)\ntime.sleep(60)\n"))
    )
    deadline = time.monotonic() + 10
    while "ProcessingStartTime" not in sm.describe_processing_job(ProcessingJobName=name):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    sm.stop_processing_job(ProcessingJobName=name)
    job = _wait(sm, name, timeout=5)
    assert job["ProcessingJobStatus"] == "Stopped" and time.monotonic() - started < 5


def test_processing_rules(engine, s3_bucket, script):
    sm = engine.client("sagemaker")
    key = script("print(1)\n")
    name = f"p-{uuid.uuid4().hex[:10]}"
    config = _config(name, s3_bucket, key)
    config["ProcessingInputs"][0]["S3Input"]["LocalPath"] = "/tmp/code"
    with pytest.raises(ClientError) as err:
        sm.create_processing_job(**config)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as err:
        sm.describe_processing_job(ProcessingJobName=name)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    engine.client("s3").put_object(Bucket=s3_bucket, Key="raw/raw.csv", Body=b"x")
    sm.create_processing_job(**_config(name, s3_bucket, key))
    with pytest.raises(ClientError) as err:
        sm.create_processing_job(**_config(name, s3_bucket, key))
    assert err.value.response["Error"]["Code"] == "ResourceInUse"
    assert _wait(sm, name)["ProcessingJobStatus"] == "Completed"
