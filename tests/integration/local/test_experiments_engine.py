"""The sagemaker SDK's experiment runs against the local engine, over HTTP.

The SDK gets an explicit Session: boto3 clients on the engine endpoint (AWS_ENDPOINT_URL),
an explicit bucket (its default_bucket() would ask AWS STS for the account) and telemetry
opted out. A guard refuses any socket that is not loopback, so a call that escapes to AWS
fails the test instead of passing silently.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

pytestmark = pytest.mark.integration

TELEMETRY_OFF = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse DNS lookups and connections beyond this machine, and fail the test on any.

    The attempts are recorded and asserted at teardown because the SDK swallows errors of
    its telemetry sender: an exception alone would go unnoticed.
    """
    attempts: list[Any] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in _LOOPBACK:
            attempts.append(host)
            raise OSError(f"network access to {host!r} refused by the test")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in _LOOPBACK:
            attempts.append(address)
            raise OSError(f"network connection to {address!r} refused by the test")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield
    assert attempts == [], f"calls left this machine: {attempts}"


@pytest.fixture
def sm_session(aws_env: Any, s3_bucket: str, loopback_only: None) -> Any:
    from sagemaker.core.helper.session_helper import Session

    boto_session = boto3.Session()  # region, endpoint and fake credentials from aws_env
    return Session(
        boto_session=boto_session,
        sagemaker_client=boto_session.client("sagemaker"),
        sagemaker_metrics_client=boto_session.client("sagemaker-metrics"),
        default_bucket=s3_bucket,
        sagemaker_config=TELEMETRY_OFF,
    )


def _unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns() % 10**12}"


def test_run_parameters_and_step_metrics_read_back(sm_session: Any) -> None:
    from sagemaker.core.experiments.run import Run, load_run

    experiment = _unique("Exp")
    with Run(experiment_name=experiment, run_name="Run-A", sagemaker_session=sm_session) as run:
        run.log_parameters({"lr": 0.01, "optimizer": "adam"})
        for step in range(12):  # more than one BatchPutMetrics batch of 10
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        component_name = run.experiment_config["RunName"]
    assert component_name == f"{experiment.lower()}-run-a"

    # load_run must find the same run (CreateTrialComponent -> "already exists" -> load), not wipe it
    with load_run(experiment_name=experiment, run_name="Run-A", sagemaker_session=sm_session) as run:
        run.log_parameter("epochs", 12)

    client = sm_session.sagemaker_client
    described = client.describe_trial_component(TrialComponentName=component_name)
    assert described["Parameters"] == {
        "lr": {"NumberValue": 0.01},
        "optimizer": {"StringValue": "adam"},
        "epochs": {"NumberValue": 12.0},
    }
    assert described["Status"]["PrimaryStatus"] == "Completed"
    (loss,) = described["Metrics"]
    assert (loss["MetricName"], loss["Count"], loss["Min"], loss["Max"]) == ("loss", 12, 1 / 12, 1.0)

    found = client.search(
        Resource="ExperimentTrialComponent",
        SearchExpression={
            "Filters": [
                {"Name": "Parents.ExperimentName", "Operator": "Equals", "Value": experiment},
                {"Name": "Metrics.loss.Min", "Operator": "LessThan", "Value": "0.1"},
                {"Name": "Parameters.optimizer", "Operator": "Equals", "Value": "adam"},
            ]
        },
    )["Results"]
    assert [r["TrialComponent"]["TrialComponentName"] for r in found] == [component_name]

    series = sm_session.sagemaker_metrics_client.batch_get_metrics(
        MetricQueries=[
            {
                "MetricName": "loss",
                "ResourceArn": described["TrialComponentArn"],
                "MetricStat": "Last",
                "Period": "IterationNumber",
                "XAxisType": "IterationNumber",
            }
        ]
    )["MetricQueryResults"][0]
    assert series["Status"] == "Complete"
    assert series["XAxisValues"] == list(range(12))
    assert series["MetricValues"] == pytest.approx([1.0 / (s + 1) for s in range(12)])


def test_duplicate_names_and_missing_entities_are_aws_errors(sm_session: Any) -> None:
    client = sm_session.sagemaker_client
    name = _unique("dup")
    client.create_experiment(ExperimentName=name)
    with pytest.raises(client.exceptions.ClientError) as duplicate:
        client.create_experiment(ExperimentName=name.upper())
    assert duplicate.value.response["Error"]["Code"] == "ValidationException"
    assert "already exists" in duplicate.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.ResourceNotFound):
        client.describe_trial(TrialName=_unique("missing"))
    client.create_trial(TrialName=f"{name}-t", ExperimentName=name)
    with pytest.raises(client.exceptions.ClientError) as refused:
        client.delete_experiment(ExperimentName=name)
    assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_batch_put_metrics_reports_invalid_points(sm_session: Any) -> None:
    client = sm_session.sagemaker_client
    name = _unique("tc")
    client.create_trial_component(TrialComponentName=name)
    response = sm_session.sagemaker_metrics_client.batch_put_metrics(
        TrialComponentName=name,
        MetricData=[
            {"MetricName": "m", "Timestamp": time.time(), "Value": 1.0},  # no Step: accepted
            {"MetricName": "m", "Timestamp": time.time() - 30 * 24 * 3600, "Step": 1, "Value": 2.0},
        ],
    )
    assert response["Errors"] == [{"Code": "VALIDATION_ERROR", "MetricIndex": 1}]
    (summary,) = client.describe_trial_component(TrialComponentName=name)["Metrics"]
    assert summary["Count"] == 1


TRAIN_SCRIPT = """
import argparse

import boto3
from sagemaker.core.experiments.run import load_run
from sagemaker.core.helper.session_helper import Session

parser = argparse.ArgumentParser()
parser.add_argument("--bucket")
args = parser.parse_args()
config = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
session = Session(boto_session=boto3.Session(), default_bucket=args.bucket, sagemaker_config=config)
with load_run(sagemaker_session=session) as run:  # finds the run through TRAINING_JOB_ARN
    run.log_parameter("inside_job", 1)
    for step in range(3):
        run.log_metric("val_loss", 1.0 - 0.25 * step, step=step)
print("logged to", run.experiment_config["RunName"])
"""


def _upload_source(tmp_path: Any, bucket: str) -> str:
    import tarfile

    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    archive = tmp_path / "sourcedir.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(script, arcname="train.py")
    boto3.client("s3").upload_file(str(archive), bucket, "code/sourcedir.tar.gz")
    return f"s3://{bucket}/code/sourcedir.tar.gz"


def _wait_for(client: Any, job_name: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.describe_training_job(TrainingJobName=job_name)
        if job["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"training job {job_name} did not finish in {timeout} s")


def test_load_run_inside_a_training_job(sm_session: Any, s3_bucket: str, tmp_path: Any) -> None:
    import json

    from sagemaker.core.experiments.run import Run

    client = sm_session.sagemaker_client
    experiment, job_name = _unique("JobExp"), _unique("train-job")
    source = _upload_source(tmp_path, s3_bucket)
    with Run(experiment_name=experiment, run_name="in-job", sagemaker_session=sm_session) as run:
        run.log_parameter("host_side", "yes")
        job_arn = client.create_training_job(
            TrainingJobName=job_name,
            AlgorithmSpecification={
                "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/local-python:latest",
                "TrainingInputMode": "File",
            },
            RoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
            HyperParameters={
                "sagemaker_program": json.dumps("train.py"),
                "sagemaker_submit_directory": json.dumps(source),
                "bucket": json.dumps(s3_bucket),
            },
            OutputDataConfig={"S3OutputPath": f"s3://{s3_bucket}/output"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 300},
            ExperimentConfig=run.experiment_config,
        )["TrainingJobArn"]
        job = _wait_for(client, job_name)
        run_component, trial = run.experiment_config["RunName"], run.run_group_name
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ExperimentConfig"]["RunName"] == run_component

    described = client.describe_trial_component(TrialComponentName=run_component)
    assert described["Parameters"]["host_side"] == {"StringValue": "yes"}
    assert described["Parameters"]["inside_job"] == {"NumberValue": 1.0}
    series = sm_session.sagemaker_metrics_client.batch_get_metrics(
        MetricQueries=[
            {
                "MetricName": "val_loss",
                "ResourceArn": described["TrialComponentArn"],
                "MetricStat": "Avg",
                "Period": "IterationNumber",
                "XAxisType": "IterationNumber",
            }
        ]
    )["MetricQueryResults"][0]
    assert (series["XAxisValues"], series["MetricValues"]) == ([0, 1, 2], [1.0, 0.75, 0.5])

    # the job's own trial component, linked as SageMaker links it
    job_components = client.search(
        Resource="ExperimentTrialComponent",
        SearchExpression={
            "Filters": [
                {"Name": "Source.SourceArn", "Operator": "Equals", "Value": job_arn},
                {"Name": "Parents.TrialName", "Operator": "Equals", "Value": trial},
            ]
        },
    )["Results"]
    assert [r["TrialComponent"]["TrialComponentName"] for r in job_components] == [
        f"{job_name}-aws-training-job"
    ]
    assert job_components[0]["TrialComponent"]["Status"]["PrimaryStatus"] == "Completed"
    by_name = client.search(
        Resource="TrainingJob",
        SearchExpression={"Filters": [{"Name": "TrainingJobName", "Operator": "Equals", "Value": job_name}]},
    )["Results"]
    assert [r["TrainingJob"]["TrainingJobArn"] for r in by_name] == [job_arn]
