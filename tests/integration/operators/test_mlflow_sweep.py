"""An MLflow-tracked sweep: real Airflow (``dag.test()``), the local engine, a real MLflow server.

The training script logs with ``mlflow.log_metric(..., step=epoch)`` onto the run the operator
names in the job's environment; ``loss`` is also printed (MetricDefinitions), ``lr_now`` only
reaches MLflow. Everything is read back with MLflow's own client. The same runs tracked in
SageMaker Experiments (the same points, logged with the SDK's ``Run``) give the same report.
"""

from __future__ import annotations

import json
import runpy
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jobs_support import training_config, upload_script

# About a minute of CPU (Airflow's dag.test(), two jobs, two trackers): on demand, with -m slow.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

EPOCHS = 6
SCRIPT = f"""
import json, os
import mlflow

hp = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")))
lr = float(hp["lr"])
for epoch in range({EPOCHS}):
    loss = 1.0 / (1.0 + lr * (epoch + 1))
    mlflow.log_metric("loss", loss, step=epoch)
    mlflow.log_metric("lr_now", lr * 0.9 ** epoch, step=epoch)
    print(f"epoch={{epoch}} loss={{loss}}", flush=True)
"""


def _report_files(jobs: list[dict[str, Any]]) -> dict[str, bytes]:
    """The report of ``jobs`` (summaries naming their runs), read as the report operator does."""
    from airflow_sm_provider.aws_args import AwsArgs
    from airflow_sm_provider.hooks.metrics import metrics_hook
    from airflow_sm_provider.reporting.model import Objective, RunRecord, build_report
    from airflow_sm_provider.reporting.render import render_artifacts
    from airflow_sm_provider.sweep import gather, tracker_opener

    aws = AwsArgs()
    sweep = gather(metrics_hook(aws), jobs, tracker=tracker_opener(aws), step_regex=None)
    report = build_report(
        [RunRecord.from_dict(run.record()) for run in sweep.runs],
        sweep.series,
        Objective("loss", "Minimize"),
        now=datetime(2026, 1, 1, tzinfo=UTC),  # the one field that differs from build to build
    )
    files = render_artifacts(report, sweep.series, {})
    return {name: body for name, (body, _) in files.items() if name != "report.html"}


def _as_experiments_runs(summaries: list[dict[str, Any]], mlflow_server: str) -> list[dict[str, Any]]:
    """The same jobs tracked in SageMaker Experiments, with the points their MLflow runs hold."""
    from mlflow.tracking import MlflowClient
    from sagemaker.core.experiments.run import Run

    from airflow_sm_provider.naming import JobIdentity
    from airflow_sm_provider.tracking.base import TrackingConfig, open_tracker
    from airflow_sm_provider.tracking.records import RunStart, run_end

    client, experiments = MlflowClient(mlflow_server), open_tracker("experiments")
    config = TrackingConfig(f"twin-{time.time_ns() % 10**10}")
    sagemaker = experiments.session.sagemaker_client
    twins = []
    for i, summary in enumerate(summaries):
        identity = JobIdentity("default", "twin", "manual__1", "train", i)
        ref = experiments.start_run(config, identity, "twin", RunStart())
        with Run(ref.experiment, ref.run_name, sagemaker_session=experiments.session) as run:
            for metric in client.get_run(summary["run"]["record"]).data.metrics:
                for point in client.get_metric_history(summary["run"]["record"], metric):
                    run.log_metric(metric, point.value, step=point.step)
        experiments.end_run(ref, run_end(sagemaker.describe_training_job(TrainingJobName=summary["name"])))
        twins.append({**summary, "run": ref.to_xcom()})
    return twins


def test_mlflow_tracked_sweep_is_read_with_mlflows_client_and_reports_as_experiments_does(
    airflow_db: Path, dags_folder: Path, aws_env: Any, engine: Any, s3_bucket: str, mlflow_server: str
) -> None:
    from mlflow.tracking import MlflowClient

    code = upload_script(engine.client("s3"), s3_bucket, SCRIPT)
    configs = []
    for lr in ("0.1", "0.5"):
        config = training_config(s3_bucket, code, name="mlflowed")
        config["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "loss", "Regex": r"loss=(\S+)"}]
        config["HyperParameters"]["lr"] = lr
        configs.append(config)
    experiment = f"mlflow-sweep-{time.time_ns() % 10**10}"
    dag_id = f"mlflow_sweep_{uuid.uuid4().hex[:8]}"
    tracking = f"tracking_backend='mlflow', tracking_uri={mlflow_server!r}"
    (dags_folder / f"{dag_id}.py").write_text(
        "from datetime import datetime\n"
        "from airflow_sm_provider._compat import DAG\n"
        "from airflow_sm_provider.operators.jobs import TrainingJobOperator\n"
        "from airflow_sm_provider.operators.plots import MetricPlotOperator\n"
        "from airflow_sm_provider.operators.report import ComparisonReportOperator\n"
        "from airflow_sm_provider.sensors.jobs import JobSensor\n"
        f"with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1)) as dag:\n"
        "    train = TrainingJobOperator.partial(\n"
        f"        task_id='train', experiment={experiment!r}, {tracking}, wait_for_completion=False\n"
        f"    ).expand(config={configs!r})\n"
        "    wait = JobSensor(task_id='wait', jobs=train.output, poke_interval=1)\n"
        f"    curves = MetricPlotOperator(task_id='curves', jobs=train.output, bucket={s3_bucket!r})\n"
        "    report = ComparisonReportOperator(\n"
        f"        task_id='report', objective_metric='loss', bucket={s3_bucket!r},\n"
        f"        experiment={experiment!r}, {tracking},\n"
        "    )\n"
        "    wait >> curves >> report\n"
    )
    dag_run = runpy.run_path(str(dags_folder / f"{dag_id}.py"))["dag"].test()
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert set(states.values()) == {"success"}, states
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances() if ti.task_id != "train"}
    uris = tis["curves"].xcom_pull(task_ids="curves")
    assert set(uris["overlays"]) == {"loss", "lr_now"}  # lr_now only ever reached MLflow

    client = MlflowClient(mlflow_server)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], f"tags.`airflow-sm:run-id` = '{dag_run.run_id}'")
    assert len(runs) == 2
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.params["lr"] in ("0.1", "0.5")
        assert run.data.tags["outcome.job.status"] == "Completed"
        for metric in ("loss", "lr_now"):
            history = client.get_metric_history(run.info.run_id, metric)
            assert sorted(point.step for point in history) == list(range(EPOCHS))
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert artifacts == {"plots/curve-loss.png", "plots/curve-lr_now.png"}

    report = tis["report"].xcom_pull(task_ids="report")  # its runs came from the MLflow lookup
    assert report["ranked"] == 2 and report["best"] in uris["jobs"]

    summaries = [
        ti.xcom_pull(task_ids="train", map_indexes=ti.map_index)
        for ti in dag_run.get_task_instances()
        if ti.task_id == "train"
    ]
    assert {s["run"]["backend"] for s in summaries} == {"mlflow"}
    by_mlflow = _report_files(summaries)
    by_experiments = _report_files(_as_experiments_runs(summaries, mlflow_server))
    assert by_mlflow == by_experiments
    metrics = json.loads(by_mlflow["report.json"])
    assert metrics["runs"] and by_mlflow["metrics.csv"].count(b"lr_now") == 2 * EPOCHS
