from __future__ import annotations

import gzip
import json
from pathlib import Path

import botocore
import pytest

from airflow_sm_provider.local import lifecycle
from airflow_sm_provider.local.lifecycle import Event, IllegalTransition


def _model_enum(shape: str) -> set[str]:
    path = Path(botocore.__file__).parent / "data/sagemaker/2017-07-24/service-2.json.gz"
    return set(json.loads(gzip.decompress(path.read_bytes()))["shapes"][shape]["enum"])


def _drive(events: list[Event]) -> dict:
    record = {**lifecycle.new_training_state(0.0), "ResourceConfig": {"InstanceCount": 1}}
    for t, event in enumerate(events, start=1):
        record = lifecycle.advance_training(record, event, float(t * 10))
    return record


def test_vocabulary_is_the_service_models():
    assert {s.value for s in lifecycle.TrainingJobStatus} == _model_enum("TrainingJobStatus")
    assert {s.value for s in lifecycle.SecondaryStatus} <= _model_enum("SecondaryStatus")
    assert {s.value for s in lifecycle.ProcessingJobStatus} == _model_enum("ProcessingJobStatus")


def test_every_state_in_the_table_has_a_message_and_targets_are_known():
    for (_, secondary), moves in lifecycle.TRAINING.items():
        assert secondary in lifecycle.MESSAGES
        for status, target in moves.values():
            assert target in lifecycle.MESSAGES
            assert status in lifecycle.TrainingJobStatus


def test_happy_path_records_transitions_times_and_billing():
    record = _drive([Event.QUEUE, Event.DOWNLOAD, Event.TRAIN, Event.UPLOAD, Event.COMPLETE])
    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == ("Completed", "Completed")
    statuses = [t["Status"] for t in record["SecondaryStatusTransitions"]]
    assert statuses == ["Starting", "Pending", "Downloading", "Training", "Uploading", "Completed"]
    assert all("EndTime" in t and t["StatusMessage"] for t in record["SecondaryStatusTransitions"])
    # Pending does not count: the instance starts with Downloading (t=20), the job ends at t=50.
    assert record["TrainingStartTime"] == 20.0
    assert record["TrainingEndTime"] == 50.0
    assert record["TrainingTimeInSeconds"] == 30
    assert record["BillableTimeInSeconds"] == 30
    assert record["LastModifiedTime"] == 50.0


def test_failure_before_start_still_has_start_and_end_times():
    record = lifecycle.advance_training(
        lifecycle.new_training_state(1.0), Event.FAIL, 2.0, failure_reason="ClientError: no data"
    )
    assert record["FailureReason"] == "ClientError: no data"
    assert record["TrainingStartTime"] == record["TrainingEndTime"] == 2.0
    assert record["TrainingTimeInSeconds"] == 1


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([Event.DOWNLOAD, Event.TRAIN, Event.STOP, Event.STOPPED], ("Stopped", "Stopped")),
        ([Event.DOWNLOAD, Event.TRAIN, Event.MAX_RUNTIME], ("Stopped", "MaxRuntimeExceeded")),
        ([Event.QUEUE, Event.MAX_WAIT], ("Stopped", "MaxWaitTimeExceeded")),
        ([Event.DOWNLOAD, Event.TRAIN, Event.INTERRUPT], ("InProgress", "Interrupted")),
        (
            [Event.DOWNLOAD, Event.TRAIN, Event.INTERRUPT, Event.RESTART, Event.DOWNLOAD, Event.TRAIN],
            ("InProgress", "Training"),
        ),
        ([Event.QUEUE, Event.STOP, Event.STOPPED], ("Stopped", "Stopped")),
    ],
)
def test_paths_to_every_end(events, expected):
    record = _drive(events)
    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == expected


@pytest.mark.parametrize(
    ("events", "illegal"),
    [
        ([Event.DOWNLOAD, Event.TRAIN, Event.UPLOAD, Event.COMPLETE], Event.STOP),
        ([Event.DOWNLOAD, Event.TRAIN, Event.STOP], Event.COMPLETE),
        ([], Event.TRAIN),
        ([Event.QUEUE], Event.MAX_RUNTIME),
    ],
)
def test_illegal_moves_raise_and_change_nothing(events, illegal):
    record = _drive(events)
    before = json.dumps(record, sort_keys=True)
    with pytest.raises(IllegalTransition):
        lifecycle.advance_training(record, illegal, 999.0)
    assert json.dumps(record, sort_keys=True) == before


def test_processing_lifecycle():
    record = lifecycle.mark_processing_started(lifecycle.new_processing_state(1.0), 2.0)
    done = lifecycle.advance_processing(record, Event.COMPLETE, 5.0, exit_message="ok")
    assert (done["ProcessingJobStatus"], done["ExitMessage"]) == ("Completed", "ok")
    assert (done["ProcessingStartTime"], done["ProcessingEndTime"]) == (2.0, 5.0)
    stopping = lifecycle.advance_processing(record, Event.STOP, 3.0)
    assert lifecycle.advance_processing(stopping, Event.STOPPED, 4.0)["ProcessingJobStatus"] == "Stopped"
    with pytest.raises(IllegalTransition):
        lifecycle.advance_processing(done, Event.STOP, 6.0)
