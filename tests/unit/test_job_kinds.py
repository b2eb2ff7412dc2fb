"""The job-kind table: outcomes of every status, and the small XCom summary."""

from __future__ import annotations

from datetime import UTC, datetime

import botocore.session
import pytest

from airflow_sm_provider.job_kinds import (
    KINDS,
    KNOWN_SECONDARY,
    JobKind,
    Outcome,
    can_attach,
    classify,
    failure_lines,
    job_summary,
    may_run,
    outcome,
)

MODEL = botocore.session.get_session().get_service_model("sagemaker")


def test_table_knows_every_status_of_botocores_model():
    """Our hand-written table and botocore's enums check each other: a new value shows up here."""
    assert set(MODEL.shape_for("SecondaryStatus").enum) <= KNOWN_SECONDARY
    for kind, shape in ((JobKind.TRAINING, "TrainingJobStatus"), (JobKind.PROCESSING, "ProcessingJobStatus")):
        for status in MODEL.shape_for(shape).enum:
            assert classify(kind, status)[1] is None, status


def test_method_names_exist_in_the_api():
    operations = {op for op in MODEL.operation_names}
    for spec in KINDS.values():
        for method in (spec.create_method, spec.describe_method, spec.stop_method, spec.list_method):
            assert "".join(part.title() for part in method.split("_")) in operations


def test_list_keys_and_search_resources_are_the_apis_own():
    resources = set(MODEL.shape_for("ResourceType").enum)
    for spec in KINDS.values():
        operation = MODEL.operation_model("".join(part.title() for part in spec.list_method.split("_")))
        assert spec.list_key in operation.output_shape.members
        assert spec.search_resource is None or spec.search_resource in resources


@pytest.mark.parametrize(
    ("kind", "status", "secondary", "expected"),
    [
        (JobKind.TRAINING, "InProgress", "Training", True),
        (JobKind.TRAINING, "InProgress", "Interrupted", True),
        (JobKind.TRAINING, "Stopping", "Stopping", False),  # a killed try's job: never attached to
        (JobKind.TRAINING, "Deleting", None, False),
        (JobKind.TRAINING, "Stopped", "Stopped", False),
        (JobKind.TRAINING, "Completed", "Completed", False),
        (JobKind.PROCESSING, "InProgress", None, True),
        (JobKind.PROCESSING, "Stopping", None, False),
    ],
)
def test_a_retry_attaches_only_to_a_job_that_runs_on(kind, status, secondary, expected):
    assert can_attach(kind, status, secondary) is expected


@pytest.mark.parametrize(
    ("kind", "status", "secondary", "expected"),
    [
        (JobKind.TRAINING, "Completed", "Completed", Outcome.SUCCEEDED),
        (JobKind.TRAINING, "Failed", "Failed", Outcome.FAILED),
        (JobKind.TRAINING, "Stopped", "Stopped", Outcome.STOPPED),
        (JobKind.TRAINING, "Stopped", "MaxRuntimeExceeded", Outcome.FAILED),
        (JobKind.TRAINING, "Stopped", "MaxWaitTimeExceeded", Outcome.FAILED),
        (JobKind.TRAINING, "InProgress", "Interrupted", Outcome.RUNNING),
        (JobKind.TRAINING, "InProgress", "Restarting", Outcome.RUNNING),
        (JobKind.TRAINING, "Stopping", "Stopping", Outcome.RUNNING),
        (JobKind.PROCESSING, "Completed", None, Outcome.SUCCEEDED),
        (JobKind.PROCESSING, "Stopped", None, Outcome.STOPPED),
    ],
)
def test_classify(kind, status, secondary, expected):
    assert classify(kind, status, secondary) == (expected, None)


def test_stopped_is_not_success_unless_stopped_ok_and_out_of_time_never_is():
    assert outcome(JobKind.TRAINING, "Stopped", "Stopped") == Outcome.STOPPED
    assert outcome(JobKind.TRAINING, "Stopped", "Stopped", stopped_ok=True) == Outcome.SUCCEEDED
    assert outcome(JobKind.TRAINING, "Stopped", "MaxRuntimeExceeded", stopped_ok=True) == Outcome.FAILED


def test_unknown_values_are_reported_not_crashed_on():
    result, warning = classify(JobKind.TRAINING, "Hibernating", "Dreaming")
    assert result == Outcome.RUNNING and "Hibernating" in warning
    result, warning = classify(JobKind.TRAINING, "InProgress", "Dreaming")
    assert result == Outcome.RUNNING and "Dreaming" in warning


def test_summary_of_a_sparse_describe_has_no_key_error():
    """FailureReason, TrainingStartTime, ModelArtifacts... missing must not raise (provider gap)."""
    summary = job_summary(JobKind.TRAINING, {"TrainingJobName": "t", "TrainingJobStatus": "Failed"})
    assert summary["name"] == "t" and summary["failure_reason"] is None and summary["start_time"] is None
    assert summary["model_artifacts"] is None
    assert job_summary(JobKind.PROCESSING, {})["outputs"] == []


def test_summary_is_small_and_json_safe():
    started = datetime(2026, 1, 1, tzinfo=UTC)
    describe = {
        "TrainingJobName": "t",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/t",
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "SecondaryStatusTransitions": [{"Status": "Completed", "StatusMessage": "done"}],
        "BillableTimeInSeconds": 12,
        "TrainingStartTime": started,
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/m/model.tar.gz"},
        "AlgorithmSpecification": {"TrainingImage": "huge"},
        "HyperParameters": {"x": "1"},
    }
    summary = job_summary(JobKind.TRAINING, describe)
    assert summary["message"] == "done" and summary["start_time"] == started.isoformat()
    assert summary["model_artifacts"] == "s3://b/m/model.tar.gz" and summary["billable_seconds"] == 12
    assert "HyperParameters" not in summary and "AlgorithmSpecification" not in summary
    processing = job_summary(
        JobKind.PROCESSING,
        {
            "ProcessingJobName": "p",
            "ExitMessage": "exit 1",
            "ProcessingOutputConfig": {"Outputs": [{"S3Output": {"S3Uri": "s3://b/o"}}, {"OutputName": "x"}]},
        },
    )
    assert processing["outputs"] == ["s3://b/o"] and processing["message"] == "exit 1"


def test_failure_lines_list_every_unsuccessful_job_with_its_reason():
    jobs = [
        {"kind": "training", "name": "a", "status": "Completed", "secondary_status": "Completed"},
        {"kind": "training", "name": "b", "status": "Failed", "failure_reason": "AlgorithmError: boom"},
        {"kind": "training", "name": "c", "status": "Stopped", "secondary_status": "Stopped"},
        {"kind": "processing", "name": "d", "status": None, "failure_reason": "job not found"},
    ]
    lines = failure_lines(jobs)
    assert lines == [
        "training job b ended Failed: AlgorithmError: boom",
        "training job c ended Stopped / Stopped: no reason given",
        "processing job d ended unknown: job not found",
    ]
    assert len(failure_lines(jobs, stopped_ok=True)) == 2


def test_may_run_is_false_only_for_a_terminal_or_missing_job():
    assert may_run({"kind": "training", "name": "a", "status": "InProgress"})
    assert may_run({"kind": "training", "name": "a", "status": "Stopping"})
    assert not may_run({"kind": "training", "name": "a", "status": "Completed"})
    assert not may_run({"kind": "processing", "name": "a", "status": None, "failure_reason": "job not found"})
    assert may_run({"kind": "processing", "name": "a"})  # nothing known: it may run
    assert may_run({"kind": "tuning", "name": "a", "status": "Completed"})  # a kind we do not know
    assert not may_run({"name": "a", "status": "Failed"}, JobKind.TRAINING)
