"""Event-driven waits end to end on the local engine: its EventBridge sends SageMaker's job-end
events to an SQS queue (created with ``event_setup.create``), and ``JobStatusTrigger`` runs in an
asyncio loop here (and in a second process) with real boto3 / aiobotocore clients.

Jobs wait for a file before they end, so a test decides when each job ends: after the
trigger's first poll, which makes "the event woke it" observable from call counts alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections import Counter

import pytest
from events_support import job_end_queue
from jobs_support import training_config, upload_script

from airflow_sm_provider.hooks.jobs import SageMakerJobsHook
from airflow_sm_provider.job_kinds import JobKind
from airflow_sm_provider.naming import JobIdentity
from airflow_sm_provider.state_changes import parse_message
from airflow_sm_provider.triggers import events as events_module
from airflow_sm_provider.triggers import jobs as trigger_module
from airflow_sm_provider.triggers.jobs import DESCRIBE_ONLY, JobStatusTrigger

pytestmark = pytest.mark.integration

#: Ends when ``<gate>`` exists: with exit code 0, or 3 if the file says "fail".
GATED = """
import pathlib, sys, time
gate = pathlib.Path({gate!r})
while not gate.exists():
    time.sleep(0.1)
sys.exit(3 if gate.read_text() == "fail" else 0)
"""


@pytest.fixture
def queue(aws_env, engine):
    with job_end_queue(engine) as url:
        yield url


@pytest.fixture
def gated_job(aws_env, engine, s3_bucket, tmp_path):
    """Start a training job that ends when told; returns (name, end) with ``end(fail=False)``."""
    s3 = engine.client("s3")

    def start(prefix: str = "evt") -> tuple[str, object]:
        gate = tmp_path / uuid.uuid4().hex
        config = training_config(
            s3_bucket, upload_script(s3, s3_bucket, GATED.format(gate=str(gate))), prefix
        )
        identity = JobIdentity("events", "dag", uuid.uuid4().hex, "t")
        name = SageMakerJobsHook(aws_conn_id=None).start_job(JobKind.TRAINING, config, identity).name

        def end(fail: bool = False) -> None:
            gate.write_text("fail" if fail else "ok")

        return name, end

    return start


@pytest.fixture
def polls(monkeypatch) -> Counter:
    """Counts the trigger's polls: "batched" (first and safety polls) and "describe" (confirmations)."""
    counts: Counter = Counter()
    real = trigger_module.run_poll_async

    async def counted(refs, invoke, *, skip=()):
        poll = await real(refs, invoke, skip=skip)
        counts["describe" if frozenset(skip) == DESCRIBE_ONLY else "batched"] += 1  # once it has run
        return poll

    monkeypatch.setattr(trigger_module, "run_poll_async", counted)
    return counts


def event_trigger(queue_url: str, *names: str, safety: float = 600) -> JobStatusTrigger:
    return JobStatusTrigger(
        jobs=[{"kind": "training", "name": name} for name in names],
        aws_conn_id="aws_default",
        min_first_poll=0,
        event_queue_url=queue_url,
        safety_poll_interval=safety,
    )


async def fire(trigger: JobStatusTrigger) -> dict:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("trigger ended without an event")


async def after_first_polls(polls: Counter, count: int) -> None:
    while polls["batched"] < count:
        await asyncio.sleep(0.05)


def queue_depth(engine, queue_url: str) -> int:
    attributes = engine.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def test_the_engine_sends_aws_shaped_end_events_through_the_rule(engine, queue):
    """The publisher's events go through the setup's rule: ends pass, other states do not."""
    arn = "arn:aws:sagemaker:us-east-1:123456789012:training-job/shape"
    record = {
        "TrainingJobName": "shape",
        "TrainingJobArn": arn,
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": "Training",
        "CreationTime": 1_700_000_000.25,
        "LastModifiedTime": 1_700_000_100.0,
        "SecondaryStatusTransitions": [{"Status": "Starting", "StartTime": 1_700_000_000.25}],
        "Tags": [{"Key": "team", "Value": "ml"}],
    }
    ended = {**record, "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed"}
    engine.events.changed("TrainingJob", None, record)
    engine.events.changed("TrainingJob", record, ended)
    engine.events.changed("TrainingJob", ended, ended)  # no status change: no event
    messages = engine.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1  # only the end passes the rule
    body = json.loads(messages[0]["Body"])
    assert (body["source"], body["detail-type"]) == ("aws.sagemaker", "SageMaker Training Job State Change")
    assert body["resources"] == [arn]
    detail = body["detail"]
    assert (detail["TrainingJobName"], detail["TrainingJobStatus"]) == ("shape", "Completed")
    assert detail["CreationTime"] == 1_700_000_000_250  # epoch milliseconds, as AWS sends them
    assert detail["SecondaryStatusTransitions"][0]["StartTime"] == 1_700_000_000_250
    assert detail["Tags"] == {"team": "ml"}


def test_a_job_end_wakes_the_trigger_before_any_safety_poll(engine, queue, gated_job, polls):
    name, end = gated_job()
    trigger = event_trigger(queue, name, safety=600)

    async def scenario() -> dict:
        waiting = asyncio.create_task(fire(trigger))
        await after_first_polls(polls, 1)  # the job still runs: the first poll saw it unfinished
        end()
        return await asyncio.wait_for(waiting, 120)

    event = asyncio.run(scenario())
    assert event["status"] == "success", event
    assert polls["batched"] == 1  # the safety poll (600 s) never came: the event woke the trigger
    assert polls["describe"] >= 1  # the hint was confirmed with a Describe
    assert queue_depth(engine, queue) == 0  # the end's message was deleted once confirmed


def test_three_triggers_here_and_one_in_another_process_all_complete(engine, queue, gated_job, polls):
    """One listener serves the three triggers; the other process reads the same queue, each
    releasing what it does not wait on, so every wait ends on its own job's event."""
    (a, end_a), (b, end_b), (c, end_c), (other, end_other) = [gated_job() for _ in range(4)]
    kwargs = event_trigger(queue, other).serialize()[1]
    process = subprocess.Popen(
        [sys.executable, "-c", SECOND_PROCESS, json.dumps(kwargs)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:

        async def scenario() -> list[dict]:
            waits = [asyncio.create_task(fire(event_trigger(queue, name))) for name in (a, b, c)]
            await after_first_polls(polls, 3)
            listeners = list(events_module._LISTENERS.values())
            end_a(), end_b(fail=True), end_c(), end_other()
            results = await asyncio.wait_for(asyncio.gather(*waits), 180)
            assert len(listeners) == 1  # one long-poll loop for the three triggers
            return results

        results = asyncio.run(scenario())
        out, _ = process.communicate(timeout=180)
    finally:
        process.kill()
    assert [r["status"] for r in results] == ["success", "error", "success"]
    assert results[1]["jobs"][0]["status"] == "Failed"
    assert json.loads(out.strip().splitlines()[-1])["status"] == "success"
    assert polls["batched"] == 3  # no safety poll here: every end came as an event


#: A trigger in a process of its own, like a second triggerer: prints its event as JSON.
SECOND_PROCESS = """
import asyncio, json, sys
from airflow_sm_provider.triggers.jobs import JobStatusTrigger

async def main():
    async for event in JobStatusTrigger(**json.loads(sys.argv[1])).run():
        print(json.dumps(event.payload))
        return

asyncio.run(main())
"""


def test_lost_and_repeated_events_delay_nothing_but_the_lost_and_no_message_goes_early(
    engine, queue, gated_job, polls, monkeypatch
):
    """A lost end is caught by the safety poll (short here); with 30% of events lost and every
    one sent twice the waits all end right; and a message is deleted only once its job is
    confirmed ended here (checked at each DeleteMessageBatch)."""
    bodies: dict[str, str] = {}
    early: list[str] = []
    real_sort, real_call = events_module.QueueListener._sort, events_module.QueueListener._call

    async def sort(self, messages):
        bodies.update({m["ReceiptHandle"]: m["Body"] for m in messages})
        await real_sort(self, messages)

    async def call(self, method, **params):
        if method == "delete_message_batch":
            for entry in params["Entries"]:
                change = parse_message(bodies[entry["ReceiptHandle"]])
                if change is not None and change.key not in self._ended:
                    early.append(change.name)
        return await real_call(self, method, **params)

    monkeypatch.setattr(events_module.QueueListener, "_sort", sort)
    monkeypatch.setattr(events_module.QueueListener, "_call", call)
    monkeypatch.setattr(engine.events, "drop_fraction", 1.0)
    (lost, end_lost), (failing, end_failing), (ok, end_ok) = [gated_job() for _ in range(3)]

    async def scenario() -> list[dict]:
        waits = [
            asyncio.create_task(fire(event_trigger(queue, name, safety=2))) for name in (lost, failing, ok)
        ]
        await after_first_polls(polls, 3)
        end_lost()  # its end event is dropped: only a safety poll can see it
        first = await asyncio.wait_for(waits[0], 120)
        monkeypatch.setattr(engine.events, "drop_fraction", 0.3)
        monkeypatch.setattr(engine.events, "duplicate_fraction", 1.0)
        end_failing(fail=True), end_ok()
        return [first, *await asyncio.wait_for(asyncio.gather(*waits[1:]), 120)]

    results = asyncio.run(scenario())
    assert [r["status"] for r in results] == ["success", "error", "success"]
    assert [r["jobs"][0]["status"] for r in results] == ["Completed", "Failed", "Completed"]
    assert polls["batched"] > 3  # safety polls ran (the lost end needed one)
    assert engine.events.dropped > 0
    assert early == []


def test_safety_poll_interval_and_queue_come_from_the_config_and_are_serialized(monkeypatch):
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__EVENT_QUEUE_URL", "https://sqs.example/1/q")
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__EVENT_SAFETY_POLL_SECONDS", "120")
    trigger = JobStatusTrigger(jobs=[{"kind": "training", "name": "a"}])
    assert (trigger.event_queue_url, trigger.safety_poll_interval) == ("https://sqs.example/1/q", 120)
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__EVENT_QUEUE_URL", "")
    kwargs = trigger.serialize()[1]
    assert JobStatusTrigger(**kwargs).event_queue_url == "https://sqs.example/1/q"  # the worker's value holds
    assert JobStatusTrigger(jobs=kwargs["jobs"], event_queue_url="").event_queue_url == ""
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__EVENT_SAFETY_POLL_SECONDS", "0")
    with pytest.raises(ValueError, match=r"event_safety_poll_seconds must be > 0"):
        JobStatusTrigger(jobs=kwargs["jobs"])


def test_the_setup_command_prints_a_template_and_refuses_bad_names(capsys):
    from airflow_sm_provider.cli import main

    assert main(["events", "setup", "--queue-name", "job-ends"]) == 0
    template = json.loads(capsys.readouterr().out)
    resources = template["Resources"]
    assert resources["JobEndRule"]["Properties"]["EventPattern"]["source"] == ["aws.sagemaker"]
    statement = resources["JobEndQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": ["JobEndRule", "Arn"]}
    assert (
        "sqs:ChangeMessageVisibility"
        in resources["TriggererPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Action"]
    )
    assert main(["events", "setup", "--queue-name", "no/slash"]) == 2
    assert "queue name 'no/slash'" in capsys.readouterr().err
