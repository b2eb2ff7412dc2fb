"""JobStatusTrigger's run loop (real aiobotocore client) and JobSensor's poke, on the local engine."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import asynccontextmanager

import pytest
from botocore.exceptions import ClientError
from jobs_support import training_config, upload_script, wait_terminal

from airflow_sm_provider._compat import AirflowException
from airflow_sm_provider.hooks.jobs import SageMakerJobsHook
from airflow_sm_provider.job_kinds import JobKind
from airflow_sm_provider.naming import JobIdentity
from airflow_sm_provider.sensors.jobs import JobSensor
from airflow_sm_provider.triggers import jobs as trigger_module
from airflow_sm_provider.triggers.jobs import JobStatusTrigger

pytestmark = pytest.mark.integration


@pytest.fixture
def start(aws_env, engine, s3_bucket):
    hook = SageMakerJobsHook(aws_conn_id=None)

    def make(script: str, name: str = "wait") -> str:
        config = training_config(s3_bucket, upload_script(engine.client("s3"), s3_bucket, script), name)
        identity = JobIdentity("itest", "dag", uuid.uuid4().hex, "t")
        return hook.start_job(JobKind.TRAINING, config, identity).name

    make.hook = hook
    return make


def trigger(*names: str, **kwargs) -> JobStatusTrigger:
    kwargs = {
        "aws_conn_id": None,
        "poll_interval": 0.01,
        "max_poll_interval": 0.02,
        "min_first_poll": 0,
        **kwargs,
    }
    return JobStatusTrigger(jobs=[{"kind": "training", "name": n} for n in names], **kwargs)


async def first_event(t: JobStatusTrigger, timeout: float = 60) -> dict:
    async def take() -> dict:
        async for event in t.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return await asyncio.wait_for(take(), timeout)


def test_waits_past_60_polls_and_all_jobs_until_success(start, monkeypatch, tmp_path):
    """The provider's deferrable waits give up after 60 polls; ours wait as long as jobs run.

    The slow job runs until the trigger's 61st poll has started (it waits for a file that poll
    writes), so the count does not depend on how fast the machine polls.
    """
    release = tmp_path / "release"
    polls = []
    real = trigger_module.run_poll_async

    async def counting(*args, **kwargs):
        polls.append(1)
        if len(polls) == 61:
            release.touch()
        return await real(*args, **kwargs)

    monkeypatch.setattr(trigger_module, "run_poll_async", counting)
    slow_script = f"import os, time\nwhile not os.path.exists({str(release)!r}):\n    time.sleep(0.02)\n"
    quick, slow = start("print('done')", "quick"), start(slow_script, "slow")
    event = asyncio.run(first_event(trigger(quick, slow)))
    assert event["status"] == "success", event
    assert len(polls) > 60
    assert [j["name"] for j in event["jobs"]] == [quick, slow]
    assert all(j["status"] == "Completed" for j in event["jobs"])


def test_failures_are_listed_with_reasons_after_every_job_ended(start):
    ok, bad = start("print('ok')", "ok"), start("raise SystemExit('bad data')", "bad")
    event = asyncio.run(first_event(trigger(ok, bad)))
    assert event["status"] == "error" and "1 of 2" in event["message"]
    failed = next(j for j in event["jobs"] if j["name"] == bad)
    assert failed["status"] == "Failed" and failed["failure_reason"]
    assert failed["failure_reason"] in event["message"]


def test_a_stopped_job_is_an_error_unless_stopped_ok(start):
    name = start("import time; time.sleep(60)", "stopme")
    start.hook.stop_job(JobKind.TRAINING, name)
    wait_terminal(start.hook, name)
    event = asyncio.run(first_event(trigger(name)))
    assert event["status"] == "error" and "Stopped" in event["message"]
    assert asyncio.run(first_event(trigger(name, stopped_ok=True)))["status"] == "success"


def test_on_kill_stops_unfinished_jobs_and_cancellation_alone_does_not(start):
    """A cancelled run (what a triggerer restart does) leaves the job; on_kill stops it."""
    name = start("import time; time.sleep(60)", "kill")
    t = trigger(name, stop_on_kill=True, poll_interval=0.05, max_poll_interval=0.05)

    async def scenario() -> None:
        task = asyncio.ensure_future(first_event(t))
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await t.cleanup()
        assert start.hook.describe_job(JobKind.TRAINING, name)["TrainingJobStatus"] == "InProgress"
        await t.on_kill()

    asyncio.run(scenario())
    assert wait_terminal(start.hook, name)["TrainingJobStatus"] == "Stopped"


def test_sensor_pokes_in_reschedule_mode_and_returns_summaries(start, tmp_path):
    # The job runs until the test opens its gate (a file), so the first poke sees it running
    # however slowly a loaded machine gets there.
    gate = tmp_path / "gate"
    name = start(f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.1)", "poke")
    sensor = JobSensor(
        task_id="s",
        jobs=[{"kind": "training", "name": name}],
        aws_conn_id=None,
        deferrable=False,
        mode="reschedule",
    )
    assert sensor.poke({}) is False
    gate.touch()
    deadline = time.monotonic() + 60
    while not sensor.poke({}):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert sensor._summaries[0]["name"] == name and sensor._summaries[0]["status"] == "Completed"


def test_sensor_poke_raises_listing_the_failed_job(start):
    name = start("raise SystemExit('boom')", "pokefail")
    wait_terminal(start.hook, name)
    sensor = JobSensor(task_id="s", jobs=[name], job_kind="training", aws_conn_id=None, deferrable=False)
    with pytest.raises(AirflowException, match=f"{name} ended Failed"):
        sensor.poke({})


def denying(monkeypatch, *operations: str) -> None:
    """Fault injection in the test: the trigger's client answers ``operations`` AccessDenied,
    as AWS does for an IAM policy written for the Amazon provider (no sagemaker:Search)."""

    def deny(model, **_) -> None:
        raise ClientError(
            {
                "Error": {
                    "Code": "AccessDeniedException",
                    "Message": f"not authorized: sagemaker:{model.name}",
                },
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
            model.name,
        )

    real = trigger_module.async_jobs_client

    @asynccontextmanager
    async def denied(aws):
        async with real(aws) as client:
            for operation in operations:
                client.meta.events.register(f"before-call.sagemaker.{operation}", deny)
            yield client

    monkeypatch.setattr(trigger_module, "async_jobs_client", denied)


def test_a_denied_search_is_waited_through_with_describes(start, monkeypatch):
    denying(monkeypatch, "Search")
    name = start("import time; time.sleep(1)", "nosearch")
    event = asyncio.run(first_event(trigger(name)))
    assert event["status"] == "success" and event["jobs"][0]["status"] == "Completed"


def test_a_failed_poll_says_the_wait_failed_and_leaves_the_job(start, monkeypatch):
    denying(monkeypatch, "Search", "DescribeTrainingJob")
    name = start("import time; time.sleep(30)", "noaccess")
    event = asyncio.run(first_event(trigger(name)))
    assert event["status"] == "error" and event["reason"] == "poll_failed"
    assert "the wait failed, not the SageMaker job(s)" in event["message"]
    assert start.hook.describe_job(JobKind.TRAINING, name)["TrainingJobStatus"] == "InProgress"
    start.hook.stop_job(JobKind.TRAINING, name)
