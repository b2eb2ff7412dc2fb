"""The failed jobs a failing task carries to its callbacks."""

from __future__ import annotations

import pickle

import pytest

from airflow_sm_provider._compat import AirflowException
from airflow_sm_provider.errors import JobsFailedError
from airflow_sm_provider.notifications.failures import failed_job_records, failed_jobs_of, jobs_failed

ARN = "arn:aws-cn:sagemaker:cn-north-1:123456789012:training-job/digits-c02"
SUMMARIES = [
    {"kind": "training", "name": "digits-c01", "status": "Completed", "arn": ARN.replace("c02", "c01")},
    {"kind": "training", "name": "digits-c02", "status": "Failed", "secondary_status": "Failed", "arn": ARN}
    | {"failure_reason": "boom"},
    {"kind": "training", "name": "late", "status": "Stopped", "secondary_status": "MaxRuntimeExceeded"},
    {"kind": "processing", "name": "prep", "status": "Stopped", "message": "stopped by user"},
    {"kind": "training", "name": "gone", "failure_reason": "job not found"},
]


def test_records_name_only_failed_jobs_with_status_reason_and_console_link():
    records = failed_job_records(SUMMARIES)
    no_link = {"console_url": ""}
    late = "Stopped / MaxRuntimeExceeded"
    assert records == [
        {
            "kind": "training",
            "name": "digits-c02",
            "status": "Failed",
            "reason": "boom",
            "console_url": "https://console.amazonaws.cn/sagemaker/home?region=cn-north-1#/jobs/digits-c02",
        },
        {"kind": "training", "name": "late", "status": late, "reason": "", **no_link},
        {"kind": "processing", "name": "prep", "status": "Stopped", "reason": "stopped by user", **no_link},
        {"kind": "training", "name": "gone", "status": "unknown", "reason": "job not found", **no_link},
    ]
    names = [r["name"] for r in failed_job_records(SUMMARIES, stopped_ok=True)]
    assert names == ["digits-c02", "late", "gone"]  # a user's stop is fine, running out of time is not


def test_the_exception_is_an_airflow_exception_carrying_the_jobs():
    error = jobs_failed(SUMMARIES, lead="trigger reported success, but ")
    assert isinstance(error, AirflowException) and isinstance(error, JobsFailedError)
    assert str(error).startswith("trigger reported success, but 4 of 5 SageMaker job(s) did not succeed:\n")
    assert "training job digits-c02 ended Failed / Failed: boom" in str(error)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert copy.failed_jobs == error.failed_jobs and str(copy) == str(error)
    assert not jobs_failed(SUMMARIES[:1]).failed_jobs  # all succeeded: nothing to raise


def test_callbacks_find_the_jobs_through_wrapping_exceptions():
    error = jobs_failed(SUMMARIES, message="from the trigger")
    assert str(error) == "from the trigger"
    try:
        try:
            raise error
        except AirflowException as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert failed_jobs_of(outer) == error.failed_jobs
    assert failed_jobs_of(ValueError("other")) == [] and failed_jobs_of(None) == []


def test_the_sensor_and_the_operators_fail_with_the_jobs_for_callbacks():
    from airflow_sm_provider.operators.jobs import TrainingJobOperator
    from airflow_sm_provider.sensors.jobs import JobSensor

    event = {"status": "error", "reason": "jobs_failed", "jobs": SUMMARIES[:2], "message": "1 of 2 failed"}
    sensor = JobSensor(task_id="s", jobs=SUMMARIES[:2])
    operator = TrainingJobOperator(task_id="t", config={}, print_log=False)
    for task in (sensor, operator):
        with pytest.raises(AirflowException, match="1 of 2 failed") as info:
            task.execute_complete({}, event)
        assert [job["name"] for job in failed_jobs_of(info.value)] == ["digits-c02"]


def test_a_wait_on_failed_jobs_fails_without_retries_but_an_operator_may_retry():
    """The sensor's retries would wait on the same ended jobs and delay the callback a minute."""
    from airflow_sm_provider._compat import AirflowFailException
    from airflow_sm_provider.operators.jobs import TrainingJobOperator
    from airflow_sm_provider.sensors.jobs import JobSensor

    event = {"status": "error", "reason": "jobs_failed", "jobs": SUMMARIES[:2], "message": "1 of 2 failed"}
    with pytest.raises(AirflowFailException):
        JobSensor(task_id="s", jobs=SUMMARIES[:2]).execute_complete({}, event)
    with pytest.raises(AirflowException) as info:
        TrainingJobOperator(task_id="t", config={}, print_log=False).execute_complete({}, event)
    assert not isinstance(info.value, AirflowFailException)
