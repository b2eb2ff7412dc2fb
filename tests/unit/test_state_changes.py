"""The pure rules of event-driven waits: reading an event, what a process does with a message,
release timeouts, the rule pattern and the setup template."""

from __future__ import annotations

import json

import pytest

from airflow_sm_provider import event_setup
from airflow_sm_provider.job_kinds import JobKind
from airflow_sm_provider.state_changes import (
    MAX_RELEASE_SECONDS,
    Action,
    StateChange,
    decide,
    event_pattern,
    parse_message,
    release_seconds,
)


def body(detail_type: str, detail: dict, source: str = "aws.sagemaker") -> str:
    return json.dumps({"source": source, "detail-type": detail_type, "detail": detail})


def test_reads_training_and_processing_ends_and_nothing_else():
    training = parse_message(
        body(
            "SageMaker Training Job State Change",
            {
                "TrainingJobName": "Train-1",
                "TrainingJobStatus": "Stopped",
                "SecondaryStatus": "MaxRuntimeExceeded",
            },
        )
    )
    assert training == StateChange(JobKind.TRAINING, "Train-1", "Stopped", "MaxRuntimeExceeded")
    assert training.ended and training.key == (JobKind.TRAINING, "train-1")
    processing = parse_message(
        body(
            "SageMaker Processing Job State Change",
            {"ProcessingJobName": "p", "ProcessingJobStatus": "InProgress"},
        )
    )
    assert processing == StateChange(JobKind.PROCESSING, "p", "InProgress") and not processing.ended
    for other in (
        "not json",
        "[1]",
        body("SageMaker Training Job State Change", {"TrainingJobName": "x"}, source="my.app"),
        body("SageMaker Endpoint State Change", {"EndpointName": "e"}),
        body("SageMaker Training Job State Change", {"TrainingJobStatus": "Completed"}),  # no name
    ):
        assert parse_message(other) is None


END = StateChange(JobKind.TRAINING, "a", "Completed", "Completed")
RUNNING = StateChange(JobKind.TRAINING, "a", "InProgress", "Training")
MINE = {END.key}


@pytest.mark.parametrize(
    ("change", "age", "waited", "ended", "action"),
    [
        (END, 1, MINE, set(), Action.HAND),  # a trigger here waits: it confirms, then deletes
        (END, 1, set(), set(), Action.RELEASE),  # another process may wait on it
        (RUNNING, 1, MINE, set(), Action.RELEASE),  # not an end: nothing to confirm
        (END, 1, MINE, MINE, Action.DELETE),  # a duplicate of an end confirmed here
        (END, 1, set(), MINE, Action.DELETE),
        (END, 601, set(), set(), Action.DELETE),  # older than any wait needs
        (None, 1, MINE, set(), Action.DELETE),  # names no job: nobody can use it
    ],
)
def test_decide(change, age, waited, ended, action):
    assert decide(change, age, waited=waited, confirmed_ended=ended, max_age=600) is action


def test_a_released_message_hides_longer_each_receive_never_zero():
    timeouts = [release_seconds(n) for n in range(0, 10)]
    assert timeouts[:4] == [5, 5, 10, 20]
    assert all(t > 0 for t in timeouts) and max(timeouts) == MAX_RELEASE_SECONDS


def test_the_rule_matches_both_kinds_ends_only():
    pattern = event_pattern()
    assert pattern["source"] == ["aws.sagemaker"]
    assert {tuple(p["detail"]) for p in pattern["$or"]} == {("TrainingJobStatus",), ("ProcessingJobStatus",)}
    assert all(sorted(*p["detail"].values()) == ["Completed", "Failed", "Stopped"] for p in pattern["$or"])


def test_setup_refuses_bad_names_before_anything_and_lists_api_calls():
    with pytest.raises(ValueError, match=r"rule name 'a b': 1-64 characters"):
        event_setup.cloudformation("q", "a b")
    calls = event_setup.api_calls("q", "r", "eu-west-1", "111122223333")
    policy = json.loads(calls["sqs:CreateQueue"]["Attributes"]["Policy"])
    assert policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] == (
        "arn:aws:events:eu-west-1:111122223333:rule/r"
    )
    assert calls["events:PutTargets"]["Targets"][0]["Arn"] == "arn:aws:sqs:eu-west-1:111122223333:q"
