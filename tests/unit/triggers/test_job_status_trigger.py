"""JobStatusTrigger's pure parts: serialization, backoff without a give-up, the event payload."""

from __future__ import annotations

import random

import pytest

from airflow_sm_provider.job_kinds import JobKind, Outcome
from airflow_sm_provider.status_poll import JobState
from airflow_sm_provider.triggers.jobs import JobStatusTrigger, poll_delay

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


def test_backoff_grows_with_jitter_up_to_the_maximum_and_never_gives_up():
    rng = random.Random(1)
    delays = [poll_delay(elapsed, 10, 300, rng) for elapsed in range(0, 28 * 86400, 3600)]
    assert len(delays) > 60  # far beyond the Amazon provider's 60-poll limit: still a delay
    assert all(8 <= d <= 300 for d in delays)
    assert poll_delay(0, 10, 300, rng) <= 12 and poll_delay(86400, 10, 300, rng) == pytest.approx(
        300, rel=0.2
    )
    assert len({round(poll_delay(0, 10, 300, rng), 6) for _ in range(20)}) > 1  # jittered


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
    assert "2 of 3" in event["message"]
    assert "a ended Failed / Failed: AlgorithmError: boom" in event["message"]
    assert "c ended Stopped / MaxRuntimeExceeded" in event["message"]


@pytest.mark.parametrize(("stopped_ok", "status"), [(False, "error"), (True, "success")])
def test_user_stop_is_an_error_unless_stopped_ok(stopped_ok, status):
    trigger = JobStatusTrigger(jobs=JOBS[:1], stopped_ok=stopped_ok)
    event = trigger.event({"a": _state(JobKind.TRAINING, "a", "Stopped", "Stopped")})
    assert event["status"] == status


def test_rejects_no_jobs_and_unknown_kinds():
    with pytest.raises(ValueError):
        JobStatusTrigger(jobs=[])
    with pytest.raises(ValueError):
        JobStatusTrigger(jobs=[{"kind": "transform", "name": "x"}])
