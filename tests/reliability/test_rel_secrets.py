"""No credential reaches a task's log, its XCom, the engine's log or a job's environment.

The operator runs on the engine with the engine's key in the environment (as a worker holds
its connection's keys) and copies the job's CloudWatch Logs into the task log; the job prints
its whole environment. Everything printed or logged (Airflow's task log, botocore's DEBUG log,
the engine's log, the job's lines) and the XComs are searched for the secret key.
"""

from __future__ import annotations

import json
import logging

import pytest
from jobs_support import TaskInstanceStub, training_config, upload_script

from airflow_sm_provider.operators.jobs import TrainingJobOperator

pytestmark = pytest.mark.integration

SCRIPT = """
import json, os
print("environment " + json.dumps(dict(os.environ)), flush=True)
print("epoch=0 loss=1.0", flush=True)
"""


class Everything(logging.Handler):
    """Keeps every record's text, at every level, from every logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()}")


def test_the_secret_key_is_in_no_log_xcom_or_job_environment(engine, aws_env, s3_bucket, capfd):
    secret = engine.credentials.secret_access_key
    config = training_config(s3_bucket, upload_script(engine.client("s3"), s3_bucket, SCRIPT), name="secrets")
    root, handler = logging.getLogger(), Everything()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        ti = TaskInstanceStub()
        op = TrainingJobOperator(
            task_id="train", config=config, aws_conn_id=None, deferrable=False, poll_interval=0.5
        )
        summary = op.execute({"ti": ti})
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    out = capfd.readouterr()
    task_log = out.out + out.err + "\n".join(handler.lines)
    assert summary["status"] == "Completed"
    assert "environment {" in task_log  # the job's environment did reach the task log...
    assert (
        "botocore" in task_log and "airflow_sm_provider.local" in task_log
    )  # ...as did DEBUG and engine logs
    assert secret not in task_log  # ...but never the key
    assert secret not in json.dumps([summary, ti.xcoms], default=str)
