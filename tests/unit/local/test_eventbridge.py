"""The engine's state-change events: one per status change, AWS's detail shape, and the test
faults (lost and repeated events). Sent into moto's EventBridge backend in this process."""

from __future__ import annotations

from pathlib import Path

from airflow_sm_provider.local.context import EngineContext
from airflow_sm_provider.local.eventbridge import EventPublisher, event_detail
from airflow_sm_provider.local.store import Store

RECORD = {
    "ProcessingJobName": "prep",
    "ProcessingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/prep",
    "ProcessingJobStatus": "InProgress",
    "CreationTime": 1.5,
    "LastModifiedTime": 2.0,
    "Tags": [{"Key": "k", "Value": "v"}],
    "_ProcessGroup": [1, 2],  # engine-only fields stay out
}
DONE = {**RECORD, "ProcessingJobStatus": "Completed", "ProcessingEndTime": 3.25}


def publisher(tmp_path: Path, **faults: float) -> EventPublisher:
    return EventPublisher(
        EngineContext(store=Store(), data_dir=tmp_path, region="eu-north-1"), seed=1, **faults
    )


def test_detail_is_the_describe_response_with_millisecond_times_and_a_tag_map():
    detail = event_detail("ProcessingJob", DONE)
    assert detail["ProcessingEndTime"] == 3250 and detail["CreationTime"] == 1500
    assert detail["Tags"] == {"k": "v"} and "_ProcessGroup" not in detail


def test_one_event_per_status_change_and_the_faults(tmp_path):
    events = publisher(tmp_path)
    events.changed("ProcessingJob", None, RECORD)
    events.changed("ProcessingJob", RECORD, {**RECORD, "LastModifiedTime": 9.0})  # no status change
    events.changed("ProcessingJob", RECORD, DONE)
    events.changed("Experiment", None, {"ExperimentName": "e"})  # not a job
    assert (events.sent, events.dropped) == (2, 0)
    lossy = publisher(tmp_path, drop_fraction=1.0)
    lossy.changed("ProcessingJob", RECORD, DONE)
    assert (lossy.sent, lossy.dropped) == (0, 1)
    repeating = publisher(tmp_path, duplicate_fraction=1.0)
    repeating.changed("ProcessingJob", RECORD, DONE)
    assert repeating.sent == 2
