"""The job operators with real Airflow (dag.test on SQLite) and the local engine."""

from __future__ import annotations

import runpy
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_sm_provider._compat import AirflowFailException
from airflow_sm_provider.operators.jobs import TrainingJobOperator

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def run_dag(airflow_db: Path, task_source: str) -> Any:
    """Write a one-task DAG file into the dags folder, run it with ``dag.test()``, return the TI."""
    dag_id = f"itest_{uuid.uuid4().hex[:8]}"
    path = airflow_db / "dags" / f"{dag_id}.py"
    path.write_text(
        "from datetime import datetime\n"
        "from airflow_sm_provider._compat import DAG\n"
        "from airflow_sm_provider.operators.jobs import ProcessingJobOperator, TrainingJobOperator\n"
        f"with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1)) as dag:\n"
        f"    {task_source}\n"
    )
    dag_run = runpy.run_path(str(path))["dag"].test()
    return dag_run.get_task_instances()[0]


def processing_config(bucket: str, script_uri: str) -> dict:
    return {
        "ProcessingJobName": "itest-proc",
        "RoleArn": ROLE,
        "AppSpecification": {
            "ImageUri": "local/python:3",
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/job.py"],
        },
        "ProcessingInputs": [
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": script_uri,
                    "LocalPath": "/opt/ml/processing/input/code",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "out",
                    "S3Output": {
                        "S3Uri": f"s3://{bucket}/out",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": "1", "InstanceType": "ml.m5.large", "VolumeSizeInGB": "5"}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": "600"},
    }


def training_config(bucket: str, code_uri: str, seconds: int) -> dict:
    return {
        "TrainingJobName": "itest-train",
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": "local/python:3", "TrainingInputMode": "File"},
        "HyperParameters": {
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": code_uri,
            "seconds": str(seconds),
        },
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/models"},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


@pytest.fixture
def code(tmp_path: Path, s3_bucket: str, aws_env) -> dict[str, str]:
    """A processing script and a training source dir, staged in S3."""
    from airflow_sm_provider.hooks.code import CodeStager

    (tmp_path / "job.py").write_text("for i in range(3):\n    print(f'processing line {i}', flush=True)\n")
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(
        textwrap.dedent(
            """
            import json, os, time
            hp = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")))
            for i in range(int(hp.get("seconds", "1"))):
                print(f"epoch={i}", flush=True)
                time.sleep(1)
            """
        )
    )
    stager = CodeStager(s3_bucket, "code", aws_conn_id=None)
    return {"script": stager.script(tmp_path / "job.py"), "source": stager.source_dir(source)}


class Ti:
    """The task-instance attributes the operator reads, for calling ``execute`` directly."""

    dag_id, run_id, task_id, map_index = "itest", f"manual__{uuid.uuid4().hex}", "train", -1

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


@pytest.mark.integration
def test_bad_config_fails_the_task_before_any_call(airflow_db):
    config = processing_config("bucket", "s3://bucket/code/job.py")
    config["S3Operations"] = {"S3Upload": []}
    ti = run_dag(
        airflow_db,
        f"ProcessingJobOperator(task_id='p', config={config!r}, aws_conn_id=None, retries=2, retry_delay=0)",
    )
    assert ti.state == "failed"
    assert ti.try_number == 1  # failed at once: retrying a config that breaks the rules cannot help


@pytest.mark.integration
def test_processing_job_under_dag_test(airflow_db, aws_env, s3_bucket, code, capsys, caplog):
    config = processing_config(s3_bucket, code["script"])
    ti = run_dag(
        airflow_db,
        f"ProcessingJobOperator(task_id='p', config={config!r}, aws_conn_id=None, deferrable=False, "
        "poll_interval=1, max_poll_interval=2)",
    )
    assert ti.state == "success"
    summary = ti.xcom_pull(task_ids="p")
    assert summary["status"] == "Completed" and summary["name"].startswith("itest-proc")
    assert "ProcessingJobStatus" not in summary  # never the whole describe response
    # The job's lines reach the task log once each: counted in the log records where Airflow's
    # logging reaches pytest's (2.11: there, its stdout shows each record through two handlers),
    # else in stdout (Airflow 3 writes the task log there under dag.test).
    lines = caplog.text if "processing line" in caplog.text else capsys.readouterr().out
    assert [lines.count(f"processing line {i}") for i in range(3)] == [1, 1, 1]


@pytest.mark.integration
def test_missing_input_names_the_field_and_creates_nothing(aws_env, engine, s3_bucket):
    config = training_config(s3_bucket, f"s3://{s3_bucket}/code/missing.tar.gz", 1)
    op = TrainingJobOperator(task_id="t", config=config, aws_conn_id=None, deferrable=False)
    client = engine.client("sagemaker")
    before = client.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
    with pytest.raises(AirflowFailException, match=r"config\.HyperParameters\.sagemaker_submit_directory"):
        op.execute({"ti": Ti()})
    assert op.job_name is None
    assert client.list_training_jobs(MaxResults=100)["TrainingJobSummaries"] == before


@pytest.mark.integration
def test_retry_attaches_and_on_kill_stops(aws_env, engine, s3_bucket, code):
    ti = Ti()
    config = training_config(s3_bucket, code["source"], 120)

    def attempt() -> TrainingJobOperator:
        op = TrainingJobOperator(task_id="t", config=config, aws_conn_id=None, wait_for_completion=False)
        op.execute({"ti": ti})
        return op

    first, retry = attempt(), attempt()
    assert retry.job_name == first.job_name  # attached, not a second `<name>-<epoch>` job
    client = engine.client("sagemaker")
    names = [
        j["TrainingJobName"]
        for j in client.list_training_jobs(NameContains=first.job_name)["TrainingJobSummaries"]
    ]
    assert names.count(first.job_name) == 1
    assert ti.xcoms["sagemaker_training_job_link"]["job_name"] == first.job_name

    retry.on_kill()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.describe_training_job(TrainingJobName=first.job_name)["TrainingJobStatus"]
        if status == "Stopped":
            break
        time.sleep(0.5)
    assert status == "Stopped"
