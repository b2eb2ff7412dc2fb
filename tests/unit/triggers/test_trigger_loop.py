"""JobStatusTrigger on a real event loop against the local engine: it never blocks the loop
(polling or event-driven), and its first poll waits for the defer race to pass."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import botocore.loaders
import pytest
from events_support import job_end_queue
from jobs_support import training_config, upload_script

from airflow_sm_provider.hooks.jobs import SageMakerJobsHook
from airflow_sm_provider.job_kinds import JobKind
from airflow_sm_provider.naming import JobIdentity
from airflow_sm_provider.triggers import jobs as trigger_module
from airflow_sm_provider.triggers.jobs import JobStatusTrigger

pytestmark = pytest.mark.integration


@pytest.fixture
def job(aws_env, engine, s3_bucket):
    """Start a training job running ``script``; return its name."""

    def start(script: str) -> str:
        config = training_config(s3_bucket, upload_script(engine.client("s3"), s3_bucket, script), "loop")
        identity = JobIdentity("loop", "dag", uuid.uuid4().hex, "t")
        return SageMakerJobsHook(aws_conn_id=None).start_job(JobKind.TRAINING, config, identity).name

    return start


class SlowSteps(logging.Handler):
    """Collects asyncio debug mode's "Executing <handle> took N seconds" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.steps: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("Executing"):
            self.steps.append(record.getMessage())


async def first_event(trigger: JobStatusTrigger, timeout: float = 60) -> dict:
    async def take() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return await asyncio.wait_for(take(), timeout)


def assert_no_slow_step(trigger: JobStatusTrigger, monkeypatch) -> None:
    """Run ``trigger`` to its event in asyncio's debug mode; no step may take 100 ms.

    The Amazon provider caches loaded service models process-wide; a fresh loader makes this
    run as cold as a triggerer's first trigger, whatever other tests ran before. The service
    models' JSON is parsed into that loader first: the parse runs in the worker thread, but
    holding the GIL it can still delay the loop once per process (up to ~1 s on a loaded
    machine; the README says so), which is not what these tests are about.
    """
    from airflow.providers.amazon.aws.hooks import base_aws

    loader = botocore.loaders.Loader()
    for service in ("sagemaker", "sqs"):
        loader.load_service_model(service, "service-2")
    monkeypatch.setattr(base_aws, "_loader", loader)
    slow = SlowSteps()
    logger = logging.getLogger("asyncio")
    logger.addHandler(slow)

    async def scenario() -> dict:
        asyncio.get_running_loop().slow_callback_duration = 0.1
        return await first_event(trigger)

    try:
        event = asyncio.run(scenario(), debug=True)
    finally:
        logger.removeHandler(slow)
    assert event["status"] == "success", event
    assert slow.steps == []


def test_no_step_on_the_event_loop_takes_100_ms(job, monkeypatch):
    """Client creation (connection, session, credentials, service model) happens off the loop."""
    name = job("import time; time.sleep(1.5)")
    trigger = JobStatusTrigger(
        jobs=[{"kind": "training", "name": name}],
        aws_conn_id="aws_default",  # read from AIRFLOW_CONN_AWS_DEFAULT, as a triggerer reads it
        poll_interval=0.2,
        max_poll_interval=0.3,
        min_first_poll=0,
    )
    assert_no_slow_step(trigger, monkeypatch)


def test_an_event_driven_wait_takes_no_100_ms_step_either(job, engine, monkeypatch):
    """The shared SQS listener's client is built off the loop too, and its 20 s long poll awaits."""
    with job_end_queue(engine) as queue:
        name = job("import time; time.sleep(3)")  # ends after the first poll: the event wakes the wait
        trigger = JobStatusTrigger(
            jobs=[{"kind": "training", "name": name}],
            aws_conn_id="aws_default",
            min_first_poll=0,
            event_queue_url=queue,
            safety_poll_interval=600,
        )
        assert_no_slow_step(trigger, monkeypatch)


def test_the_first_poll_waits_min_first_poll_after_the_defer(job, monkeypatch):
    name = job("print('done')")
    polls: list[float] = []
    real = trigger_module.run_poll_async

    async def timed(*args, **kwargs):
        polls.append(time.time())
        return await real(*args, **kwargs)

    monkeypatch.setattr(trigger_module, "run_poll_async", timed)
    trigger = JobStatusTrigger(
        jobs=[{"kind": "training", "name": name}],
        aws_conn_id=None,
        poll_interval=0.01,
        max_poll_interval=0.02,
        min_first_poll=1.5,
    )
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "success", event
    assert polls[0] >= trigger.started_at + 1.5


def test_a_restarted_trigger_does_not_wait_again(job, monkeypatch):
    """The minimum counts from the defer (``started_at``, serialized), not from this run."""
    name = job("print('done')")
    trigger = JobStatusTrigger(
        jobs=[{"kind": "training", "name": name}],
        aws_conn_id=None,
        poll_interval=0.01,
        max_poll_interval=0.02,
        min_first_poll=600,
        started_at=time.time() - 600,
    )
    assert asyncio.run(first_event(trigger, timeout=30))["status"] == "success"


def test_min_first_poll_comes_from_the_config_and_is_serialized(monkeypatch):
    jobs = [{"kind": "training", "name": "a"}]
    assert JobStatusTrigger(jobs=jobs).min_first_poll == trigger_module.MIN_FIRST_POLL_SECONDS
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__MIN_FIRST_POLL_SECONDS", "25")
    trigger = JobStatusTrigger(jobs=jobs)
    assert trigger.min_first_poll == 25
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__MIN_FIRST_POLL_SECONDS", "1")
    assert JobStatusTrigger(**trigger.serialize()[1]).min_first_poll == 25  # the worker's value holds


def test_a_negative_min_first_poll_is_refused_naming_the_setting(monkeypatch):
    jobs = [{"kind": "training", "name": "a"}]
    with pytest.raises(ValueError, match="min_first_poll must be >= 0"):
        JobStatusTrigger(jobs=jobs, min_first_poll=-1)
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__MIN_FIRST_POLL_SECONDS", "-5")
    with pytest.raises(ValueError, match=r"\[sagemaker_provider\] min_first_poll_seconds must be >= 0"):
        JobStatusTrigger(jobs=jobs)
