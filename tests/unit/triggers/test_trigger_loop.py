"""JobStatusTrigger on a real event loop against the local engine: it never blocks the loop,
and its first poll waits for the defer race to pass."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import botocore.loaders
import pytest
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


class ThreadLog:
    """Wraps functions to record whether each call ran on the event loop's thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.calls: list[tuple[str, bool]] = []
        self.loop_thread: int | None = None

    def watch(self, owner: object, name: str) -> None:
        original = getattr(owner, name)

        def recorded(*args, **kwargs):
            self.calls.append((name, threading.get_ident() == self.loop_thread))
            return original(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, recorded)


async def first_event(trigger: JobStatusTrigger, timeout: float = 60) -> dict:
    async def take() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return await asyncio.wait_for(take(), timeout)


def test_client_setup_never_runs_on_the_event_loop(job, monkeypatch):
    """Building the hook (connection read), loading service models and the endpoint rules are
    synchronous and slow (0.7-2 s for a process's first client): they must run in the worker
    thread, never on the loop that every deferred task of the triggerer shares.

    Checked by the thread each call runs on, not by a clock, so a loaded machine cannot make it
    pass or fail. A fresh loader makes the run as cold as a triggerer's first trigger.
    """
    from airflow.providers.amazon.aws.hooks import base_aws

    from airflow_sm_provider.hooks import jobs as jobs_hooks

    monkeypatch.setattr(base_aws, "_loader", botocore.loaders.Loader())
    calls = ThreadLog(monkeypatch)
    calls.watch(jobs_hooks, "jobs_hook")
    calls.watch(botocore.loaders.Loader, "load_service_model")
    calls.watch(botocore.loaders.Loader, "load_data")
    name = job("import time; time.sleep(1.5)")
    trigger = JobStatusTrigger(
        jobs=[{"kind": "training", "name": name}],
        aws_conn_id="aws_default",  # read from AIRFLOW_CONN_AWS_DEFAULT, as a triggerer reads it
        poll_interval=0.2,
        max_poll_interval=0.3,
        min_first_poll=0,
    )
    calls.calls.clear()  # starting the job above used the same functions, off any loop

    async def scenario() -> dict:
        calls.loop_thread = threading.get_ident()
        return await first_event(trigger)

    event = asyncio.run(scenario())
    assert event["status"] == "success", event
    watched = {name for name, _ in calls.calls}
    assert {"jobs_hook", "load_service_model", "load_data"} <= watched, watched
    assert [name for name, on_loop in calls.calls if on_loop] == []


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
