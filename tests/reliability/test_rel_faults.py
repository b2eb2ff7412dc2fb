"""The operators under injected AWS faults: every job found and finished, none started twice.

The engine here injects faults (``local/faults.py``) into 30% of the SageMaker calls
(throttling, 500/503, connections dropped without an answer) and drops the answer of every
successful Create, so the client cannot know the job exists. The provider runs with the retry
configuration it uses everywhere: botocore's ``adaptive`` mode, 10 attempts
(``hooks.jobs.DEFAULT_RETRIES``), for the boto3 client of the operators and the aiobotocore
client of the trigger; a retried Create that finds its name taken (``ResourceInUse``) makes
``start_job`` look the job up by its identity and attach.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from jobs_support import TaskInstanceStub, training_config, upload_script

from airflow_sm_provider._compat import TaskDeferred
from airflow_sm_provider.hooks.jobs import DEFAULT_RETRIES
from airflow_sm_provider.local import LocalEngine
from airflow_sm_provider.local.faults import ENV_VAR
from airflow_sm_provider.operators.jobs import TrainingJobOperator

pytestmark = pytest.mark.integration

FAULTS = {"rate": 0.3, "after_create": 1.0, "seed": 20}
SCRIPT = """
import json, os, time
hp = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")))
for epoch in range(int(hp["epochs"])):
    print(f"epoch={epoch} loss={1 / (epoch + 1)}", flush=True)
    time.sleep(0.5)
"""


class FaultLog(logging.Handler):
    """Counts the faults the engine reports injecting, by (operation, kind)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[tuple[str, str]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("Injected fault"):
            kind, operation = record.args
            self.counts[(operation.removeprefix("SageMaker."), kind)] += 1


@pytest.fixture(scope="module")
def faulty_engine() -> Iterator[LocalEngine]:
    """An engine of its own with fault injection on (the env var is read once, at start)."""
    os.environ[ENV_VAR] = json.dumps(FAULTS)
    try:
        engine = LocalEngine().start()
    finally:
        del os.environ[ENV_VAR]
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def faults(faulty_engine, monkeypatch) -> Iterator[FaultLog]:
    for key, value in faulty_engine.environ().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__MIN_FIRST_POLL_SECONDS", "0")
    handler = FaultLog()
    logger = logging.getLogger("airflow_sm_provider.local.faults")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def stage(engine: LocalEngine, epochs: int) -> dict[str, Any]:
    """A training config whose script prints ``epochs`` epochs, staged on the engine's S3."""
    bucket = f"faults-{uuid.uuid4().hex[:12]}"
    s3 = engine.client("s3")
    s3.create_bucket(Bucket=bucket)
    config = training_config(bucket, upload_script(s3, bucket, SCRIPT), name="faults")
    config["HyperParameters"]["epochs"] = str(epochs)
    return config


def jobs_named(engine: LocalEngine, stem: str) -> list[dict[str, Any]]:
    client = engine.client("sagemaker")  # a plain client: the listing retries injected faults too
    pages = client.get_paginator("list_training_jobs").paginate(NameContains=stem)
    return [job for page in pages for job in page["TrainingJobSummaries"]]


def test_provider_retry_configuration_is_the_one_stated():
    assert DEFAULT_RETRIES == {"mode": "adaptive", "max_attempts": 10}


def test_the_stated_retry_configuration_survives_client_creation():
    """botocore rewrites the retries dict it is given; the shared default used to change with it."""
    from airflow_sm_provider.hooks.jobs import with_default_retries

    config = with_default_retries(None)
    boto3.session.Session(region_name="us-east-1").client("sagemaker", config=config)
    assert DEFAULT_RETRIES == {"mode": "adaptive", "max_attempts": 10}
    assert with_default_retries(None).retries == {"mode": "adaptive", "max_attempts": 10}


def test_deferred_training_under_faults_attaches_after_a_lost_create_and_finishes_once(faulty_engine, faults):
    config = stage(faulty_engine, epochs=3)
    ti = TaskInstanceStub()
    op = TrainingJobOperator(
        task_id="train", config=config, aws_conn_id=None, poll_interval=0.5, max_poll_interval=1
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti})
    assert faults.counts[("CreateTrainingJob", "reset-after-create")] == 1  # its answer was lost

    async def first_event() -> dict:
        async for event in deferred.value.trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    event = asyncio.run(asyncio.wait_for(first_event(), 180))
    summary = op.execute_complete({"ti": ti}, event)
    assert summary["status"] == "Completed"

    again = TrainingJobOperator(
        task_id="train", config=config, aws_conn_id=None, poll_interval=0.5, max_poll_interval=1
    )
    assert again.execute({"ti": ti})["name"] == summary["name"]  # a retry reuses, starts nothing
    jobs = jobs_named(faulty_engine, summary["name"])
    assert [(j["TrainingJobName"], j["TrainingJobStatus"]) for j in jobs] == [(summary["name"], "Completed")]
    assert sum(faults.counts.values()) > 1  # faults beyond the dropped create were survived


def test_polling_training_under_faults_completes_once(faulty_engine, faults):
    config = stage(faulty_engine, epochs=3)
    op = TrainingJobOperator(
        task_id="train",
        config=config,
        aws_conn_id=None,
        deferrable=False,
        poll_interval=0.5,
        max_poll_interval=1,
    )
    summary = op.execute({"ti": TaskInstanceStub()})
    assert summary["status"] == "Completed"
    assert [j["TrainingJobName"] for j in jobs_named(faulty_engine, summary["name"])] == [summary["name"]]
    assert faults.counts[("CreateTrainingJob", "reset-after-create")] == 1
