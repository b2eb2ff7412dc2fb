"""MetricPlotOperator against the local engine: real jobs printing metric lines, real S3 and logs."""

from __future__ import annotations

import runpy
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from jobs_support import LOSS_DEFINITIONS, training_config, upload_script, wait_terminal

from airflow_sm_provider._compat import TaskDeferred
from airflow_sm_provider.hooks.jobs import SageMakerJobsHook
from airflow_sm_provider.hooks.metrics import SageMakerMetricsHook
from airflow_sm_provider.operators.plots import MetricPlotOperator, SweepCharts, sweep_metrics
from airflow_sm_provider.s3_keys import encode_segment

pytestmark = pytest.mark.integration

RUN_ID = "manual__2026-01-02T03:04:05+00:00"
SCRIPT = """
import json, os, sys, time
hp = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")))
lr, epochs, pause = float(hp["lr"]), int(hp["epochs"]), float(hp.get("pause", "0"))
fail_at = int(hp.get("fail_at", "-1"))
for epoch in range(epochs):
    if epoch == fail_at:
        with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as failure:
            failure.write("CUDA out of memory at epoch %d" % epoch)
        sys.exit(1)
    loss = 1.0 / (1.0 + lr * epoch)
    print(f"epoch={epoch} train_loss={loss:.6f}", flush=True)
    print(f"INFO epoch={epoch} val_loss={loss * 1.1:.6f}", flush=True)
    time.sleep(pause)
"""


def start_job(engine: Any, bucket: str, code: str, prefix: str, **hyperparameters: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    config = training_config(bucket, code, name=name)
    config["AlgorithmSpecification"]["MetricDefinitions"] = LOSS_DEFINITIONS
    config["HyperParameters"].update(hyperparameters)
    engine.client("sagemaker").create_training_job(**config)
    return name


def context(dag_id: str = "sweep_dag") -> dict[str, Any]:
    return {"ti": SimpleNamespace(dag_id=dag_id, run_id=RUN_ID, task_id="curves", map_index=-1)}


@pytest.fixture
def code(aws_env: Any, engine: Any, s3_bucket: str) -> str:
    return upload_script(engine.client("s3"), s3_bucket, SCRIPT)


def test_sweep_of_three_runs_publishes_every_chart_at_its_key(engine, s3_bucket, code):
    jobs = [
        start_job(engine, s3_bucket, code, "good", lr="0.5", epochs="30"),
        start_job(engine, s3_bucket, code, "slow", lr="0.05", epochs="30"),
        start_job(engine, s3_bucket, code, "oom", lr="0.2", epochs="30", fail_at="12"),
    ]
    jobs_hook = SageMakerJobsHook(aws_conn_id=None)
    ends = {name: wait_terminal(jobs_hook, name)["TrainingJobStatus"] for name in jobs}
    assert list(ends.values()) == ["Completed", "Completed", "Failed"]
    summaries = [{"kind": "training", "name": name, "status": ends[name]} for name in jobs]

    op = MetricPlotOperator(
        task_id="curves", jobs=summaries, bucket=s3_bucket, prefix="sweeps/", aws_conn_id=None
    )
    uris = op.execute(context())

    run_segment = encode_segment(RUN_ID)
    assert uris["running"] == []
    assert uris["overlays"] == {
        metric: f"s3://{s3_bucket}/sweeps/plots/sweep_dag/{run_segment}/{encode_segment(metric)}.png"
        for metric in ("train:loss", "validation:loss")
    }
    assert uris["jobs"] == {
        job: {
            m: f"s3://{s3_bucket}/sweeps/{job}/metrics/{encode_segment(m)}.png"
            for m in ("train:loss", "validation:loss")
        }
        for job in jobs
    }
    s3 = engine.client("s3")
    for uri in [
        *uris["overlays"].values(),
        *(u for per_job in uris["jobs"].values() for u in per_job.values()),
    ]:
        key = uri.removeprefix(f"s3://{s3_bucket}/")
        obj = s3.get_object(Bucket=s3_bucket, Key=key)
        assert obj["ContentType"] == "image/png"
        assert obj["Body"].read()[:8] == b"\x89PNG\r\n\x1a\n"

    # The figures those PNGs were drawn from: one y-range per metric across every chart.
    hook = SageMakerMetricsHook(aws_conn_id=None)
    runs = hook.describe_runs(jobs)
    frame = hook.collect(runs)
    assert frame.groupby(["run", "metric"]).size().to_dict() == {
        (jobs[0], "train:loss"): 30,
        (jobs[0], "validation:loss"): 30,
        (jobs[1], "train:loss"): 30,
        (jobs[1], "validation:loss"): 30,
        (jobs[2], "train:loss"): 12,
        (jobs[2], "validation:loss"): 12,
    }
    charts = SweepCharts(frame=frame, runs=runs, metrics=sweep_metrics(frame, runs, None))
    for metric in charts.metrics:
        limits = {charts.overlay(metric).axes[0].get_ylim()}
        limits |= {charts.job_chart(run, metric).axes[0].get_ylim() for run in runs}
        assert len(limits) == 1, (metric, limits)
    failed_title = charts.job_chart(runs[2], "train:loss").texts[0].get_text()  # suptitle
    assert "Failed" in failed_title and "CUDA out of memory" in failed_title


def test_live_publication_while_the_job_runs_then_after_it_ends(engine, s3_bucket, code):
    job = start_job(engine, s3_bucket, code, "live", lr="0.3", epochs="100", pause="0.4")
    op = MetricPlotOperator(
        task_id="curves", jobs=[job], bucket=s3_bucket, prefix="live", aws_conn_id=None, live=True
    )
    hook = SageMakerMetricsHook(aws_conn_id=None)
    deadline = time.monotonic() + 30
    while hook.collect(hook.describe_runs([job])).empty:  # wait for the first epochs in the logs
        assert time.monotonic() < deadline
        time.sleep(0.3)

    with pytest.raises(TaskDeferred) as deferred:  # published, and deferred: it saw the job running
        op.execute(context("live_dag"))
    assert deferred.value.method_name == "republish"
    assert deferred.value.trigger.moment > deferred.value.trigger.moment.now(
        deferred.value.trigger.moment.tzinfo
    )
    key = f"live/{job}/metrics/train~3Aloss.png"
    s3 = engine.client("s3")
    partial = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert partial[:4] == b"\x89PNG"

    assert wait_terminal(SageMakerJobsHook(aws_conn_id=None), job)["TrainingJobStatus"] == "Completed"
    uris = op.republish(context("live_dag"), event={"status": "success"})  # the trigger fired
    assert uris["running"] == []  # done: no further deferral
    final = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert final != partial and final[:4] == b"\x89PNG"
    assert len(hook.collect(hook.describe_runs([job]))) == 200


def test_live_publisher_redefers_under_dag_test_until_the_mapped_jobs_end(
    airflow_db, engine, s3_bucket, code, capsys
):
    """Real Airflow: the mapped training task's XCom in, deferrals through the trigger, URIs out."""
    configs = []
    for lr in ("0.1", "0.5"):
        config = training_config(s3_bucket, code, name="dagtest")
        config["AlgorithmSpecification"]["MetricDefinitions"] = LOSS_DEFINITIONS
        config["HyperParameters"].update(lr=lr, epochs="15", pause="0.3")
        configs.append(config)
    dag_id = f"itest_live_{uuid.uuid4().hex[:8]}"
    path = airflow_db / "dags" / f"{dag_id}.py"
    path.write_text(
        "from datetime import datetime, timedelta\n"
        "from airflow_sm_provider._compat import DAG\n"
        "from airflow_sm_provider.operators.jobs import TrainingJobOperator\n"
        "from airflow_sm_provider.operators.plots import MetricPlotOperator\n"
        f"with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1)) as dag:\n"
        "    train = TrainingJobOperator.partial(\n"
        "        task_id='train', aws_conn_id=None, wait_for_completion=False\n"
        f"    ).expand(config={configs!r})\n"
        f"    MetricPlotOperator(task_id='curves', jobs=train.output, bucket={s3_bucket!r}, prefix='dagtest',"
        " aws_conn_id=None, live=True, republish_every=timedelta(seconds=2))\n"
    )
    dag_run = runpy.run_path(str(path))["dag"].test()
    curves = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "curves")
    assert curves.state == "success"
    assert "still running; publishing again in 0:00:02" in capsys.readouterr().out  # it did defer
    uris = curves.xcom_pull(task_ids="curves")
    assert uris["running"] == [] and len(uris["jobs"]) == 2
    s3 = engine.client("s3")
    for per_job in uris["jobs"].values():
        for uri in per_job.values():
            assert (
                s3.head_object(Bucket=s3_bucket, Key=uri.removeprefix(f"s3://{s3_bucket}/"))["ContentLength"]
                > 0
            )
