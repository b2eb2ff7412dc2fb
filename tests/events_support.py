"""Helpers of the event-driven wait tests: a job-end queue on the local engine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from airflow_sm_provider import event_setup
from airflow_sm_provider.aws_args import AwsArgs


@contextmanager
def job_end_queue(engine) -> Iterator[str]:
    """A queue and rule made by ``event_setup.create`` on the engine (the test's AWS environment
    must point at it); yields the queue URL, removes both afterwards."""
    name = f"job-ends-{uuid.uuid4().hex[:10]}"
    created = event_setup.create(AwsArgs(aws_conn_id=None), name, name)
    try:
        yield created["queue_url"]
    finally:
        events = engine.client("events")
        events.remove_targets(Rule=name, Ids=["job-end-queue"])
        events.delete_rule(Name=name)
        engine.client("sqs").delete_queue(QueueUrl=created["queue_url"])
