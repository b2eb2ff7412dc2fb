"""The trigger event contract: one parser for the operators and the sensor."""

from __future__ import annotations

import pytest

from airflow_sm_provider._compat import AirflowException
from airflow_sm_provider.errors import SageMakerApiError, TriggerEventError
from airflow_sm_provider.events import JOBS_FAILED, POLL_FAILED, JobsEvent, read_event
from airflow_sm_provider.triggers.jobs import JobStatusTrigger


def test_the_triggers_payloads_round_trip():
    trigger = JobStatusTrigger(jobs=[{"kind": "training", "name": "a"}], aws_conn_id=None)
    failed = JobsEvent.parse(trigger.poll_failed_event(SageMakerApiError("Search", "AccessDenied", "no")))
    assert failed.status == "error" and failed.reason == POLL_FAILED and failed.wait_failed
    assert failed.jobs == [{"kind": "training", "name": "a"}]
    event = JobsEvent("error", [{"kind": "training", "name": "a", "status": "Failed"}], "boom", JOBS_FAILED)
    assert JobsEvent.parse(event.to_payload()) == event
    assert not event.wait_failed and not event.succeeded


def test_events_of_older_triggers_without_reason_parse():
    event = JobsEvent.parse({"status": "error", "jobs": [{"name": "a"}, "junk"]})
    assert event.reason is None and event.jobs == [{"name": "a"}] and event.message == ""
    assert "reason" not in event.to_payload()


@pytest.mark.parametrize("payload", [None, {}, {"status": "maybe"}, {"status": "success", "jobs": []}])
def test_malformed_events_are_refused(payload):
    with pytest.raises(TriggerEventError):
        JobsEvent.parse(payload)
    with pytest.raises(AirflowException):
        read_event(payload)
