"""The task's process killed (SIGKILL, no on_kill) after its job was created: the retry attaches.

A real process runs the operator (polling, as a worker does) and is killed once the engine
lists its job; the retry, with the same task identity, must attach to that job (not start a
second) and can stop it. Slow: the child process imports Airflow (``-m slow``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from jobs_support import TaskInstanceStub, training_config, upload_script

from airflow_sm_provider.operators.jobs import TrainingJobOperator

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = "import time\nfor i in range(600):\n    print(f'epoch={i}', flush=True)\n    time.sleep(0.2)\n"

CHILD = textwrap.dedent(
    """
    import json, sys
    from airflow_sm_provider.operators.jobs import TrainingJobOperator

    config, run_id = json.loads(sys.argv[1]), sys.argv[2]

    class Ti:
        dag_id, task_id, map_index, run_id = "reliability", "train", -1, run_id
        def xcom_push(self, key, value):
            pass

    TrainingJobOperator(
        task_id="train", config=config, aws_conn_id=None, deferrable=False, poll_interval=1
    ).execute({"ti": Ti()})
    """
)


def test_task_killed_after_create_is_retried_onto_the_same_job(engine, aws_env, s3_bucket):
    sm = engine.client("sagemaker")
    stem = f"killed-{uuid.uuid4().hex[:8]}"
    config = training_config(s3_bucket, upload_script(engine.client("s3"), s3_bucket, SCRIPT), name=stem)
    run_id = f"manual__{uuid.uuid4().hex}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(config), run_id],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (jobs := sm.list_training_jobs(NameContains=stem)["TrainingJobSummaries"]):
            assert child.poll() is None, "the task process ended before creating its job"
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(2)  # now waiting on its job
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    name = jobs[0]["TrainingJobName"]
    assert sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "InProgress"

    retry = TrainingJobOperator(task_id="train", config=config, aws_conn_id=None, wait_for_completion=False)
    assert retry.execute({"ti": TaskInstanceStub(run_id=run_id)})["name"] == name
    assert [
        j["TrainingJobName"] for j in sm.list_training_jobs(NameContains=stem)["TrainingJobSummaries"]
    ] == [name]

    retry.on_kill()  # and the retried task can cancel it: no orphan
    while (status := sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]) != "Stopped":
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
