"""Training tasks tracked as SageMaker Experiments runs: real Airflow (``dag.test()``), the local
engine and the real SDK, in the training script too (``load_run()``)."""

from __future__ import annotations

import runpy
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from jobs_support import ROLE, upload_script

from airflow_sm_provider._compat import AIRFLOW_V3, AirflowFailException
from airflow_sm_provider.operators.jobs import TrainingJobOperator
from airflow_sm_provider.tracking.base import open_tracker

pytestmark = pytest.mark.integration

SCRIPT = """
import json, os, sys
from sagemaker.core.experiments.run import load_run

hp = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")))
lr = float(hp["lr"])
with load_run() as run:  # the job's ExperimentConfig names the task's run
    for epoch in range(4):
        loss = 1.0 / (1.0 + lr * (epoch + 1))
        run.log_metric("loss", loss, step=epoch)
        print(f"epoch={epoch} loss={loss}", flush=True)
if hp.get("fail") == "yes":
    with open("/opt/ml/output/failure", "w") as failure:
        failure.write("ValueError: the learning rate diverged")
    sys.exit(1)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as model:
    model.write(str(lr))
"""


def config(
    bucket: str, code: str, lr: float, name: str = "Tracked", **hyperparameters: str
) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": "local/python:3", "TrainingInputMode": "File"},
        "HyperParameters": {
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": code,
            "lr": str(lr),
            **hyperparameters,
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/data/"}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/models"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }


@pytest.fixture
def staged(aws_env: Any, engine: Any, s3_bucket: str) -> dict[str, str]:
    s3 = engine.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="data/train.csv", Body=b"1,2\n")
    return {"bucket": s3_bucket, "code": upload_script(s3, s3_bucket, SCRIPT)}


def run_dag(dags_folder: Path, body: str) -> tuple[Any, Any]:
    """Write a DAG file with ``body`` under its ``with DAG`` block; ``dag.test()`` it twice."""
    dag_id = f"tracked_{uuid.uuid4().hex[:8]}"
    path = dags_folder / f"{dag_id}.py"
    path.write_text(
        "from datetime import datetime\n"
        "from airflow_sm_provider._compat import DAG\n"
        "from airflow_sm_provider.operators.jobs import TrainingJobOperator\n"
        "from airflow_sm_provider.sensors.jobs import JobSensor\n"
        f"with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1)) as dag:\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
    )
    return runpy.run_path(str(path))["dag"]


def test_a_mapped_sweep_gives_one_run_per_task_found_by_its_dag_run(
    airflow_db: Path, dags_folder: Path, staged: dict[str, str], engine: Any
) -> None:
    experiment = f"Sweep-{time.time_ns() % 10**10}"
    prefix = f"sweep{uuid.uuid4().hex[:8]}"
    configs = [config(staged["bucket"], staged["code"], lr, prefix) for lr in (0.1, 0.2, 0.4)]
    dag = run_dag(
        dags_folder,
        f"""
        train = TrainingJobOperator.partial(
            task_id="train", experiment={experiment!r}, aws_conn_id="aws_default", wait_for_completion=False
        ).expand(config={configs!r})
        JobSensor(task_id="wait", jobs=train.output, poke_interval=1)
        """,
    )
    first = dag.test()
    assert first.state == "success"
    second = dag.test()  # a second DAG run of the same experiment
    assert second.state == "success"

    tracker = open_tracker()
    runs = tracker.find_runs("default", dag.dag_id, first.run_id)
    assert len(runs) == 3 and {run.ref.experiment for run in runs} == {experiment.lower()}
    assert len(tracker.find_runs("default", dag.dag_id, second.run_id)) == 3
    assert not {r.ref.record for r in runs} & {
        r.ref.record for r in tracker.find_runs("default", dag.dag_id, second.run_id)
    }
    summaries = [
        ti.xcom_pull(task_ids="train", map_indexes=ti.map_index)
        for ti in first.get_task_instances()
        if ti.task_id == "train"
    ]
    assert sorted(s["run"]["record"] for s in summaries) == [run.ref.record for run in runs]

    for run in runs:
        assert run.status == "Completed"
        assert run.parameters["lr"] in (0.1, 0.2, 0.4)
        assert run.parameters["job.instance_type"] == "ml.m5.large"
        assert run.parameters["job.training_seconds"] >= 0
        assert run.inputs == {"train": f"s3://{staged['bucket']}/data/", "code": staged["code"]}
        assert run.outputs["model"].endswith("/output/model.tar.gz")
        assert run.tags["airflow-sm:task-id"] == "train" and run.tags["airflow-sm:run-id"] == first.run_id
    series = tracker.metric_series(runs)
    assert [(s.metric, s.steps) for s in series] == [("loss", (0, 1, 2, 3))] * 3

    # clearing the DAG run and running it again continues its runs (the completed jobs are reused)
    if AIRFLOW_V3:
        rerun = dag.test(logical_date=first.logical_date, run_after=first.run_after)
    else:  # Airflow 2.11 replaces the DAG run of the same execution date (same run id)
        # Deleting the old run cascades to dag_run_note, whose user_id names FAB's ab_user
        # table: its model must be loaded, as it is in a running Airflow 2.11 webserver.
        import airflow.providers.fab.auth_manager.models  # noqa: F401

        rerun = dag.test(execution_date=first.execution_date)
    assert (rerun.state, rerun.run_id) == ("success", first.run_id)
    jobs = engine.client("sagemaker").list_training_jobs(NameContains=prefix, MaxResults=100)
    assert len(jobs["TrainingJobSummaries"]) == 6  # three per DAG run, none for the rerun
    again = tracker.find_runs("default", dag.dag_id, first.run_id)
    assert [run.ref for run in again] == [run.ref for run in runs]
    assert {run.status for run in again} == {"Completed"}


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "polling"])
def test_a_failed_job_leaves_its_run_failed_with_the_reason(
    airflow_db: Path, dags_folder: Path, staged: dict[str, str], deferrable: bool
) -> None:
    """The operator that waits logs the end: after resuming from the trigger, or polling."""
    experiment = f"fails-{time.time_ns() % 10**10}"
    bad = config(staged["bucket"], staged["code"], 0.1, fail="yes")
    dag = run_dag(
        dags_folder,
        f"TrainingJobOperator(task_id='train', config={bad!r}, experiment={experiment!r}, "
        f"aws_conn_id='aws_default', deferrable={deferrable}, poll_interval=1, max_poll_interval=1)\n",
    )
    dag_run = dag.test()
    assert dag_run.state == "failed"
    (run,) = open_tracker().find_runs("default", dag.dag_id, dag_run.run_id)
    assert run.status == "Failed" and "the learning rate diverged" in run.message
    assert run.parameters["job.status"] == "Failed" and "model" not in run.outputs


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"experiment": "x" * 60}, "experiment"),
        ({"experiment": "bad_name"}, "experiment"),
        ({"experiment": "ok", "run_name": "has space"}, "run_name"),
    ],
)
def test_bad_names_fail_before_any_job_or_run(
    staged: dict[str, str], engine: Any, arguments: dict, field: str
):
    client = engine.client("sagemaker")
    before = (
        client.list_training_jobs()["TrainingJobSummaries"],
        client.list_experiments()["ExperimentSummaries"],
    )
    op = TrainingJobOperator(
        task_id="t",
        config=config(staged["bucket"], staged["code"], 0.1),
        aws_conn_id="aws_default",
        **arguments,
    )
    with pytest.raises(AirflowFailException, match=rf"{field}: must be 1 to"):
        op.execute({"ti": object()})
    after = (
        client.list_training_jobs()["TrainingJobSummaries"],
        client.list_experiments()["ExperimentSummaries"],
    )
    assert after == before
