"""A task resumed without its trigger event finds its job again through its identity.

Airflow resumes a deferred task with ``event=None`` when the trigger's event is lost (the
worker or the triggerer died while the task was deferred). Before, the operator failed with
"unexpected trigger event" and left the job running, unwatched. Real operator, real engine:
each resume is a fresh operator instance, as after a crash, and the engine's job list shows
that nothing was created twice.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from jobs_support import TaskInstanceStub, training_config, upload_script

from airflow_sm_provider._compat import AirflowException, TaskDeferred
from airflow_sm_provider.operators.jobs import TrainingJobOperator

pytestmark = pytest.mark.integration

SCRIPT = """
import json, os, time
hp = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")))
for epoch in range(int(hp["epochs"])):
    print(f"epoch={epoch} loss={1 / (epoch + 1)}", flush=True)
    time.sleep(0.5)
"""


@pytest.fixture
def config(engine, aws_env, s3_bucket) -> dict[str, Any]:
    code = upload_script(engine.client("s3"), s3_bucket, SCRIPT)
    config = training_config(s3_bucket, code, name="resume")
    config["HyperParameters"]["epochs"] = "240"
    return config


def operator(config: dict[str, Any]) -> TrainingJobOperator:
    return TrainingJobOperator(
        task_id="train", config=config, aws_conn_id=None, poll_interval=1, max_poll_interval=2
    )


def jobs_named(engine, stem: str) -> list[str]:
    summaries = engine.client("sagemaker").list_training_jobs(NameContains=stem, MaxResults=100)
    return [job["TrainingJobName"] for job in summaries["TrainingJobSummaries"]]


def wait_status(engine, name: str, wanted: set[str], timeout: float = 120) -> str:
    client = engine.client("sagemaker")
    deadline = time.monotonic() + timeout
    while (status := client.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]) not in wanted:
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    return status


def test_resume_without_event_defers_again_on_the_running_job_then_on_kill_stops_it(engine, config):
    ti = TaskInstanceStub()
    with pytest.raises(TaskDeferred) as first:
        operator(config).execute({"ti": ti})
    name = first.value.trigger.jobs[0]["name"]

    resumed = operator(config)  # the worker that resumes knows nothing of the first one
    with pytest.raises(TaskDeferred) as again:
        resumed.execute_complete({"ti": ti}, None)
    assert [job["name"] for job in again.value.trigger.jobs] == [name]
    assert again.value.method_name == "execute_complete"
    assert jobs_named(engine, "resume").count(name) == 1 and len(jobs_named(engine, name)) == 1

    resumed.on_kill()  # the re-attached task can stop its job
    assert wait_status(engine, name, {"Stopped", "Failed", "Completed"}) == "Stopped"
    with pytest.raises(AirflowException, match=rf"{name} ended Stopped"):
        operator(config).execute_complete({"ti": ti}, None)  # ended: completes as its event would
    assert jobs_named(engine, name) == [name]  # nothing was started in its place


def test_resume_without_event_after_the_job_completed_succeeds_with_its_summary(engine, config):
    ti = TaskInstanceStub()
    config["HyperParameters"]["epochs"] = "2"
    with pytest.raises(TaskDeferred) as first:
        operator(config).execute({"ti": ti})
    name = first.value.trigger.jobs[0]["name"]
    assert wait_status(engine, name, {"Completed", "Failed", "Stopped"}) == "Completed"

    summary = operator(config).execute_complete({"ti": ti}, None)
    assert summary["name"] == name and summary["status"] == "Completed"
    assert jobs_named(engine, name) == [name]


def test_resume_without_event_and_without_a_job_fails_and_creates_none(engine, config):
    before = jobs_named(engine, "resume")
    with pytest.raises(AirflowException, match="no SageMaker training job: nothing to attach to or stop"):
        operator(config).execute_complete({"ti": TaskInstanceStub()}, None)
    assert jobs_named(engine, "resume") == before
