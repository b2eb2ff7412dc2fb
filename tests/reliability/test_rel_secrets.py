"""No credential reaches a task's log, its XCom, the engine's log, a job's environment or a report.

The operator runs on the engine with the engine's key in the environment (as a worker holds
its connection's keys) and copies the job's CloudWatch Logs into the task log; the job prints
its whole environment. Everything printed or logged (Airflow's task log, botocore's DEBUG log,
the engine's log, the job's lines) and the XComs are searched for the secret key. The report
is fed credentials through what a job's author controls (hyperparameters, a failure reason).
"""

from __future__ import annotations

import json
import logging

import pytest
from jobs_support import LOSS_DEFINITIONS, TaskInstanceStub, training_config, upload_script, wait_terminal

from airflow_sm_provider.hooks.jobs import SageMakerJobsHook
from airflow_sm_provider.operators.jobs import TrainingJobOperator
from airflow_sm_provider.operators.report import ComparisonReportOperator

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


# AWS's documented example keys: recognisably fake.
FAKE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
LEAKY_SCRIPT = """
import json, os, sys
hp = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")))
for epoch in range(3):
    print(f"epoch={epoch} train_loss={1 / (epoch + 1)} val_loss={1.1 / (epoch + 1)}", flush=True)
if hp["mode"] == "fail":
    with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as failure:
        failure.write("boto3 refused AWS_SECRET_ACCESS_KEY=%s for %s" % (hp["fake-secret"], hp["fake-key"]))
    sys.exit(1)
"""


def test_credentials_fed_to_a_report_come_out_redacted(engine, aws_env, s3_bucket):
    """A completed and a failed run whose hyperparameters and failure reason carry fake keys and
    the worker's own secret key: the report's four files hold none of them, and both runs."""
    worker_secret = engine.credentials.secret_access_key
    code = upload_script(engine.client("s3"), s3_bucket, LEAKY_SCRIPT)
    names = []
    for mode in ("ok", "fail"):
        config = training_config(s3_bucket, code, name=f"leaky-{mode}")
        config["AlgorithmSpecification"]["MetricDefinitions"] = LOSS_DEFINITIONS
        config["HyperParameters"].update(
            {
                "mode": mode,
                "fake-secret": FAKE_SECRET,
                "fake-key": FAKE_KEY_ID,
                "db_password": "hunter2-fake",
                "note": f"signed with {worker_secret}",
            }
        )
        engine.client("sagemaker").create_training_job(**config)
        names.append(config["TrainingJobName"])
    hook = SageMakerJobsHook(aws_conn_id=None)
    assert [wait_terminal(hook, name)["TrainingJobStatus"] for name in names] == ["Completed", "Failed"]

    ti = TaskInstanceStub(task_id="report")
    out = ComparisonReportOperator(
        task_id="report",
        jobs=[{"kind": "training", "name": name} for name in names],
        objective_metric="validation:loss",
        bucket=s3_bucket,
        prefix="leaky",
        aws_conn_id=None,
    ).execute({"ti": ti})

    s3 = engine.client("s3")
    bodies = {
        uri: s3.get_object(Bucket=s3_bucket, Key=uri.split(f"{s3_bucket}/", 1)[1])["Body"].read().decode()
        for uri in out["files"].values()
    }
    everything = "\n".join([*bodies.values(), json.dumps([out, ti.xcoms], default=str)])
    for secret in (FAKE_KEY_ID, FAKE_SECRET, "hunter2-fake", worker_secret):
        assert secret not in everything, secret
    report = json.loads(bodies[out["files"]["report.json"]])
    assert [run["name"] for run in report["runs"]] == [names[0]]
    assert report["runs"][0]["hyperparameters"]["db_password"] == "[redacted]"
    assert report["runs"][0]["hyperparameters"]["note"] == "signed with [redacted]"
    assert [run["name"] for run in report["failed"]] == [names[1]]
    assert report["failed"][0]["failure_reason"].startswith("boto3 refused AWS_SECRET_ACCESS_KEY=[redacted]")
