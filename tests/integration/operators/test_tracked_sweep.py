"""Plots and the report of a tracked sweep: real Airflow (``dag.test()``), the engine and the SDK.

The training script logs ``loss`` both ways (printed for the MetricDefinitions, and with
``run.log_metric``) and ``lr_now`` only on its Run, so the merged series shows both sources.
"""

from __future__ import annotations

import runpy
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from jobs_support import training_config, upload_script

from airflow_sm_provider.tracking.base import open_tracker

pytestmark = pytest.mark.integration

SCRIPT = """
import json, os
from sagemaker.core.experiments.run import load_run

hp = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")))
lr = float(hp["lr"])
with load_run() as run:
    for epoch in range(6):
        loss = 1.0 / (1.0 + lr * (epoch + 1))
        run.log_metric("loss", loss, step=epoch)
        run.log_metric("lr_now", lr * 0.9 ** epoch, step=epoch)
        print(f"epoch={epoch} loss={loss}", flush=True)
"""


def test_tracked_sweep_plots_on_its_runs_and_reports_from_the_dag_run_lookup(
    airflow_db: Path, dags_folder: Path, aws_env: Any, engine: Any, s3_bucket: str
) -> None:
    code = upload_script(engine.client("s3"), s3_bucket, SCRIPT)
    configs = []
    for lr in ("0.1", "0.5"):
        config = training_config(s3_bucket, code, name="tracked")
        config["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "loss", "Regex": r"loss=(\S+)"}]
        config["HyperParameters"]["lr"] = lr
        configs.append(config)
    experiment = f"sweep-{time.time_ns() % 10**10}"
    dag_id = f"tracked_sweep_{uuid.uuid4().hex[:8]}"
    (dags_folder / f"{dag_id}.py").write_text(
        "from datetime import datetime\n"
        "from airflow_sm_provider._compat import DAG\n"
        "from airflow_sm_provider.operators.jobs import TrainingJobOperator\n"
        "from airflow_sm_provider.operators.plots import MetricPlotOperator\n"
        "from airflow_sm_provider.operators.report import ComparisonReportOperator\n"
        "from airflow_sm_provider.sensors.jobs import JobSensor\n"
        f"with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1)) as dag:\n"
        "    train = TrainingJobOperator.partial(\n"
        f"        task_id='train', experiment={experiment!r}, wait_for_completion=False\n"
        f"    ).expand(config={configs!r})\n"
        "    wait = JobSensor(task_id='wait', jobs=train.output, poke_interval=1)\n"
        f"    curves = MetricPlotOperator(task_id='curves', jobs=train.output, bucket={s3_bucket!r})\n"
        "    report = ComparisonReportOperator(\n"
        f"        task_id='report', objective_metric='loss', bucket={s3_bucket!r},\n"
        f"        experiment={experiment!r},\n"
        "    )\n"
        "    wait >> curves >> report\n"
    )
    dag_run = runpy.run_path(str(dags_folder / f"{dag_id}.py"))["dag"].test()
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert set(states.values()) == {"success"}, states

    tis = {ti.task_id: ti for ti in dag_run.get_task_instances() if ti.task_id != "train"}
    uris = tis["curves"].xcom_pull(task_ids="curves")
    assert set(uris["overlays"]) == {"loss", "lr_now"}  # lr_now only ever reached the Run
    runs = open_tracker().find_runs("default", dag_id, dag_run.run_id)
    assert len(runs) == 2
    for run in runs:
        job = run.parameters["job.name"]
        assert run.outputs["curve:loss"] == uris["jobs"][job]["loss"]
        assert run.outputs["curve:lr_now"] == uris["jobs"][job]["lr_now"]

    report = tis["report"].xcom_pull(task_ids="report")  # its runs came from the tracker's lookup
    assert report["ranked"] == 2 and report["best"] in uris["jobs"]
    assert set(report["files"]) == {"report.html", "report.json", "runs.csv", "metrics.csv"}
