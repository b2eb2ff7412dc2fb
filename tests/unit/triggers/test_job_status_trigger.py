"""JobStatusTrigger's pure parts: serialization, the event payloads, what it refuses."""

from __future__ import annotations

import pytest

from airflow_sm_provider.errors import SageMakerApiError
from airflow_sm_provider.job_kinds import JobKind, Outcome
from airflow_sm_provider.status_poll import JobState
from airflow_sm_provider.triggers.jobs import JobStatusTrigger

JOBS = [{"kind": "training", "name": "a"}, {"kind": "processing", "name": "b"}]


def test_serialized_kwargs_rebuild_the_same_trigger():
    trigger = JobStatusTrigger(
        jobs=JOBS, aws_conn_id="c", stopped_ok=True, poll_interval=5, stop_on_kill=True
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_sm_provider.triggers.jobs.JobStatusTrigger"
    rebuilt = JobStatusTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["started_at"] == trigger.started_at  # the backoff schedule survives a restart


def _state(kind, name, status, secondary=None, reason=None):
    summary = {
        "kind": kind.value,
        "name": name,
        "status": status,
        "secondary_status": secondary,
        "failure_reason": reason,
    }
    return JobState(
        kind=kind, name=name, outcome=Outcome.SUCCEEDED, status=status, confirmed=True, summary=summary
    )


def test_event_waits_for_all_then_lists_every_failure():
    trigger = JobStatusTrigger(jobs=[*JOBS, {"kind": "training", "name": "c"}])
    event = trigger.event(
        {
            "a": _state(JobKind.TRAINING, "a", "Failed", "Failed", "AlgorithmError: boom"),
            "b": _state(JobKind.PROCESSING, "b", "Completed"),
            "c": _state(JobKind.TRAINING, "c", "Stopped", "MaxRuntimeExceeded"),
        }
    )
    assert event["status"] == "error" and [j["name"] for j in event["jobs"]] == ["a", "b", "c"]
    assert event["reason"] == "jobs_failed"
    assert "2 of 3" in event["message"]
    assert "a ended Failed / Failed: AlgorithmError: boom" in event["message"]
    assert "c ended Stopped / MaxRuntimeExceeded" in event["message"]


@pytest.mark.parametrize(("stopped_ok", "status"), [(False, "error"), (True, "success")])
def test_user_stop_is_an_error_unless_stopped_ok(stopped_ok, status):
    trigger = JobStatusTrigger(jobs=JOBS[:1], stopped_ok=stopped_ok)
    event = trigger.event({"a": _state(JobKind.TRAINING, "a", "Stopped", "Stopped")})
    assert event["status"] == status


def test_rejects_no_jobs_unknown_kinds_and_a_name_of_two_kinds():
    with pytest.raises(ValueError):
        JobStatusTrigger(jobs=[])
    with pytest.raises(ValueError):
        JobStatusTrigger(jobs=[{"kind": "transform", "name": "x"}])
    with pytest.raises(ValueError, match="a training and a processing job"):
        JobStatusTrigger(jobs=[{"kind": "training", "name": "x"}, {"kind": "processing", "name": "X"}])


def test_a_failed_poll_says_the_wait_failed_not_the_jobs():
    trigger = JobStatusTrigger(jobs=JOBS)
    event = trigger.poll_failed_event(SageMakerApiError("DescribeTrainingJob", "AccessDeniedException", "no"))
    assert event["status"] == "error" and event["reason"] == "poll_failed"
    assert event["message"].startswith("the wait failed, not the SageMaker job(s)")
    assert "may still be running" in event["message"] and "AccessDeniedException" in event["message"]
    assert [j["name"] for j in event["jobs"]] == ["a", "b"]
