"""Job helpers shared by the hook and sensor integration tests (run against the local engine)."""

from __future__ import annotations

import io
import logging
import tarfile
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from airflow_sm_provider.hooks.jobs import SageMakerJobsHook
from airflow_sm_provider.job_kinds import JobKind

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def upload_script(s3, bucket: str, script: str, key: str | None = None) -> str:
    """Upload ``script`` as ``train.py`` in a sourcedir.tar.gz; return its S3 URI."""
    buf = io.BytesIO()
    data = textwrap.dedent(script).encode()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    key = key or f"code/{uuid.uuid4().hex}.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
    return f"s3://{bucket}/{key}"


def training_config(bucket: str, code_uri: str, name: str = "hook-train", **extra) -> dict:
    return {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": "local/python:3", "TrainingInputMode": "File"},
        "HyperParameters": {"sagemaker_program": "train.py", "sagemaker_submit_directory": code_uri},
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/models"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
        **extra,
    }


def wait_terminal(hook: SageMakerJobsHook, name: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (job := hook.describe_job(JobKind.TRAINING, name))["TrainingJobStatus"] not in (
        "Completed",
        "Failed",
        "Stopped",
    ):
        assert time.monotonic() < deadline, job["SecondaryStatus"]
        time.sleep(0.1)
    return job


@dataclass
class TaskInstanceStub:
    """The task-instance attributes the operators read, with XCom recording, for calling
    ``execute`` / ``execute_complete`` directly (a real TaskInstance needs its DAG run in the
    database). Keep one per task instance across its resumes: the run id is its identity."""

    dag_id: str = "reliability"
    task_id: str = "train"
    run_id: str = field(default_factory=lambda: f"manual__{uuid.uuid4().hex}")
    map_index: int = -1
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


#: The MetricDefinitions of the test jobs that print ``train_loss=… val_loss=…`` per epoch.
LOSS_DEFINITIONS = [
    {"Name": "train:loss", "Regex": r"train_loss=(\S+)"},
    {"Name": "validation:loss", "Regex": r"val_loss=(\S+)"},
]


class InjectedFaults(logging.Handler):
    """Counts the faults the local engine injects (``SAGEMAKER_LOCAL_FAULTS``) while entered: the
    injector logs each at WARNING on its module's logger."""

    logger = logging.getLogger("airflow_sm_provider.local.faults")

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.msg.startswith("Injected fault")

    def __enter__(self) -> InjectedFaults:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.logger.removeHandler(self)
