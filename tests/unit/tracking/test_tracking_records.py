"""What a run records at a job's start and end, from the API's shapes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from airflow_sm_provider.tracking.records import (
    RunStatus,
    is_outcome_parameter,
    parameter_value,
    run_end,
    run_start,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.01", 0.01),
        ("12", 12),
        ("1e-3", 0.001),
        ('"adam"', "adam"),  # the SDK's JSON encoding of strings
        ("adam", "adam"),
        ("true", "true"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("[1, 2]", "[1, 2]"),
        ("", ""),
        ("two\nlines", "two lines"),
        ('"a\\nb"', "a b"),
    ],
)
def test_hyperparameters_keep_numbers_as_numbers(text: str, value: object):
    result = parameter_value(text)
    assert result == value and type(result) is type(value)


REQUEST = {
    "TrainingJobName": "digits",
    "HyperParameters": {
        "lr": "0.05",
        "optimizer": '"adam"',
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": '"s3://bucket/code/sourcedir.tar.gz"',
    },
    "AlgorithmSpecification": {"TrainingImage": "123.dkr.ecr.us-east-1.amazonaws.com/img:1"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 10},
    "EnableManagedSpotTraining": True,
    "InputDataConfig": [
        {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://bucket/train/"}}},
        {"ChannelName": "fs", "DataSource": {"FileSystemDataSource": {"FileSystemId": "fs-1"}}},
    ],
}


def test_start_logs_hyperparameters_job_facts_and_inputs():
    start = run_start(REQUEST)
    assert start.parameters == {
        "lr": 0.05,
        "optimizer": "adam",
        "job.image": "123.dkr.ecr.us-east-1.amazonaws.com/img:1",
        "job.instance_type": "ml.m5.large",
        "job.instance_count": 2,
        "job.spot": "true",
    }
    assert start.inputs == {"train": "s3://bucket/train/", "code": "s3://bucket/code/sourcedir.tar.gz"}


def test_start_of_a_minimal_request():
    start = run_start({"AlgorithmSpecification": {"AlgorithmName": "xgb"}})
    assert start.parameters == {"job.image": "xgb", "job.spot": "false"}
    assert start.inputs == {}


ENDED = datetime(2026, 11, 30, 21, 0, tzinfo=UTC)


def test_end_of_a_completed_job():
    end = run_end(
        {
            "TrainingJobName": "digits-0123456789",
            "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed",
            "TrainingTimeInSeconds": 120,
            "BillableTimeInSeconds": 48,
            "TrainingEndTime": ENDED,
            "ModelArtifacts": {"S3ModelArtifacts": "s3://bucket/out/model.tar.gz"},
            "FinalMetricDataList": [
                {"MetricName": "val_loss", "Value": 0.25},
                {"MetricName": "bad", "Value": float("nan")},
            ],
        }
    )
    assert (end.status, end.message, end.end_time) == (RunStatus.COMPLETED, "", ENDED)
    assert end.outputs == {"model": "s3://bucket/out/model.tar.gz"}
    assert end.parameters == {
        "job.name": "digits-0123456789",
        "job.status": "Completed",
        "job.secondary_status": "Completed",
        "job.training_seconds": 120,
        "job.billable_seconds": 48,
        "final.val_loss": 0.25,
    }
    assert all(is_outcome_parameter(key) for key in end.parameters)
    assert not is_outcome_parameter("job.instance_type") and not is_outcome_parameter("lr")


def test_end_of_a_failed_job_carries_the_reason_on_one_line():
    end = run_end({"TrainingJobStatus": "Failed", "SecondaryStatus": "Failed", "FailureReason": "x" * 2000})
    assert end.status == RunStatus.FAILED and end.message == "x" * 1024
    reason = 'AlgorithmError: ExecuteUserScriptError:\nExitCode 1\r\nErrorMessage "boom"'
    assert run_end({"TrainingJobStatus": "Failed", "FailureReason": reason}).message == (
        'AlgorithmError: ExecuteUserScriptError: ExitCode 1 ErrorMessage "boom"'
    )
    assert end.outputs == {} and end.end_time is None


def test_a_job_out_of_time_says_so():
    end = run_end({"TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxRuntimeExceeded"})
    assert (end.status, end.message) == (RunStatus.STOPPED, "MaxRuntimeExceeded")
    stopped = run_end({"TrainingJobStatus": "Stopped", "SecondaryStatus": "Stopped"})
    assert (stopped.status, stopped.message) == (RunStatus.STOPPED, "")


def test_an_unknown_status_is_in_progress():
    assert run_end({"TrainingJobStatus": "Hibernating"}).status == RunStatus.IN_PROGRESS
