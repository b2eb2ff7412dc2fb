"""Acceptance: the Amazon provider's own SageMaker operators, unmodified, run jobs on the local engine.

The DAG runs under real Airflow (``dag.test()`` on SQLite) with the ``aws_default`` connection
pointing at the engine, so the provider's hook, its S3 checks, its log tailing and its status
polling all talk to the engine exactly as they would talk to SageMaker. The training test takes
about 30 s: the provider's log tailing describes the job at most every 30 s, whatever check_interval.
"""

from __future__ import annotations

import inspect
import io
import json
import re
import runpy
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"

TRAIN_SCRIPT = """
import argparse, os, pathlib
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int)
args = parser.parse_args()
rows = pathlib.Path(os.environ["SM_CHANNEL_TRAIN"], "rows.csv").read_text().split()
for epoch in range(args.epochs):
    print(f"epoch={epoch}", flush=True)
print(f"TRAIN-MARKER rows={len(rows)}", flush=True)
pathlib.Path(os.environ["SM_MODEL_DIR"], "model.txt").write_text("weights")
"""

PROCESS_SCRIPT = """
import json, pathlib, sys
rows = pathlib.Path("/opt/ml/processing/input/data/rows.csv").read_text().split()
pathlib.Path("/opt/ml/processing/output/summary.json").write_text(json.dumps({"rows": len(rows)}))
print("PROCESS-MARKER done", flush=True)
"""


def run_dag(dags_folder: Path, imports: str, task_source: str) -> Any:
    """Write a one-task DAG into the bundle folder, run it with ``dag.test()``, return its task instance."""
    dag_id = f"amazon_provider_{uuid.uuid4().hex[:8]}"
    path = dags_folder / f"{dag_id}.py"
    path.write_text(
        "from datetime import datetime\n"
        "from airflow_sm_provider._compat import DAG\n"
        f"{imports}\n"
        f"with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1)) as dag:\n"
        f"    {task_source}\n"
    )
    dag_run = runpy.run_path(str(path))["dag"].test()
    (instance,) = dag_run.get_task_instances()
    return instance


def _source_tarball(script: str) -> bytes:
    buffer = io.BytesIO()
    data = script.encode()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def staged(engine, s3_bucket: str) -> str:
    """Input rows and both scripts in the engine's S3; returns the bucket."""
    s3 = engine.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="data/rows.csv", Body=b"a\nb\nc\n")
    s3.put_object(Bucket=s3_bucket, Key="code/sourcedir.tar.gz", Body=_source_tarball(TRAIN_SCRIPT))
    s3.put_object(Bucket=s3_bucket, Key="code/process.py", Body=PROCESS_SCRIPT.encode())
    return s3_bucket


def test_training_operator_runs_to_completed_and_tails_the_script_output(
    airflow_db, dags_folder, aws_env, engine, staged, capsys
):
    name = f"amzn-train-{uuid.uuid4().hex[:8]}"
    config = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": "local/python:3", "TrainingInputMode": "File"},
        "HyperParameters": {
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(f"s3://{staged}/code/sourcedir.tar.gz"),
            "epochs": "2",
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{staged}/data"}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{staged}/models"},
        # Strings, as a Jinja-rendered config has them: the operator casts these to integers.
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": "1", "VolumeSizeInGB": "5"},
        "StoppingCondition": {"MaxRuntimeInSeconds": "300"},
    }
    ti = run_dag(
        dags_folder,
        "from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator",
        f"SageMakerTrainingOperator(task_id='train', config={config!r}, deferrable=False, "
        "wait_for_completion=True, print_log=True, check_interval=1)",
    )
    out = capsys.readouterr().out
    assert ti.state == "success", out[-3000:]
    described = ti.xcom_pull(task_ids="train")["Training"]
    assert (described["TrainingJobName"], described["TrainingJobStatus"]) == (name, "Completed")
    assert (
        described["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{staged}/models/{name}/output/model.tar.gz"
    )
    # The provider's hook tailed the job's CloudWatch stream and logged each line once. Airflow
    # 2.11 prints each record through two handlers, in two time formats: a record is its
    # time to the millisecond and its message.
    tailed = {
        (stamp.group(1).replace(",", "."), line.split(" - ", 1)[-1])
        for line in out.splitlines()
        if ("SageMakerHook" in line or "{sagemaker.py:" in line)
        and (stamp := re.search(r"(\d\d:\d\d:\d\d[,.]\d{3})", line))
    }
    messages = [message for _, message in tailed]
    assert sum("TRAIN-MARKER rows=3" in message for message in messages) == 1
    assert sum("epoch=1" in message for message in messages) == 1
    assert any("Billable seconds:" in message for message in messages)
    assert engine.client("sagemaker").describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == (
        "Completed"
    )


def test_processing_operator_runs_to_completed_and_reads_its_output(
    airflow_db, dags_folder, aws_env, engine, staged, capsys
):
    name = f"amzn-proc-{uuid.uuid4().hex[:8]}"
    config = {
        "ProcessingJobName": name,
        "RoleArn": ROLE,
        "AppSpecification": {
            "ImageUri": "local/python:3",
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/process.py"],
        },
        "ProcessingInputs": [
            {
                "InputName": input_name,
                "S3Input": {
                    "S3Uri": uri,
                    "LocalPath": f"/opt/ml/processing/input/{input_name}",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
            for input_name, uri in [
                ("code", f"s3://{staged}/code/process.py"),
                ("data", f"s3://{staged}/data"),
            ]
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "summary",
                    "S3Output": {
                        "S3Uri": f"s3://{staged}/summary",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": "1", "InstanceType": "ml.m5.large", "VolumeSizeInGB": "5"}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": "300"},
    }
    # Newer provider releases read output files into the XCom; older ones (Airflow 2.11's
    # constraints pin 9.22) do not have the argument, and the file is read from S3 instead.
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerProcessingOperator

    reads_files = "output_files_to_xcom" in inspect.signature(SageMakerProcessingOperator).parameters
    files = [{"output_name": "summary", "file_name": "summary.json", "result_name": "Summary"}]
    ti = run_dag(
        dags_folder,
        "from airflow.providers.amazon.aws.operators.sagemaker import SageMakerProcessingOperator",
        f"SageMakerProcessingOperator(task_id='process', config={config!r}, deferrable=False, "
        "wait_for_completion=True, print_log=True, check_interval=1"
        + (f", output_files_to_xcom={files!r})" if reads_files else ")"),
    )
    out = capsys.readouterr().out
    assert ti.state == "success", out[-3000:]
    result = ti.xcom_pull(task_ids="process")
    assert (result["Processing"]["ProcessingJobName"], result["Processing"]["ProcessingJobStatus"]) == (
        name,
        "Completed",
    )
    if reads_files:
        assert result["OutputFiles"] == {"Summary": {"rows": 3}}
    else:
        summary = engine.client("s3").get_object(Bucket=staged, Key="summary/summary.json")["Body"].read()
        assert json.loads(summary) == {"rows": 3}
    # The provider's processing hook only polls the status (it has no log tailing for processing
    # jobs, whatever print_log says); the script's output is in the job's CloudWatch stream.
    logs = engine.client("logs")
    group = "/aws/sagemaker/ProcessingJobs"
    (stream,) = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/")["logStreams"]
    events = logs.get_log_events(
        logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True
    )
    assert "PROCESS-MARKER done" in [event["message"] for event in events["events"]]
