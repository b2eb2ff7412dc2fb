"""The metrics hook against the local engine: per-epoch series where CloudWatch keeps one a minute."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3
import pytest
from jobs_support import training_config, upload_script, wait_terminal

from airflow_sm_provider.hooks.jobs import SageMakerJobsHook
from airflow_sm_provider.hooks.metrics import SageMakerMetricsHook

pytestmark = pytest.mark.integration

TELEMETRY_OFF = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
DEFINITIONS = [
    {"Name": "train:loss", "Regex": r"train_loss=(\S+)"},
    {"Name": "validation:accuracy", "Regex": r"val_acc=(\S+)"},
]
# 600 epochs in about 60 s: one line per epoch and metric, as a training loop prints them.
SCRIPT = """
import json, os, time
hp = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")))
epochs, pause = int(hp["epochs"]), float(hp["pause"])
for epoch in range(epochs):
    print(f"epoch={epoch} train_loss={1.0 / (epoch + 1):.6f}", flush=True)
    print(f"epoch={epoch} val_acc={epoch / epochs:.6f}", flush=True)
    time.sleep(pause)
"""


def run_job(engine: Any, bucket: str, **hyperparameters: str) -> str:
    code = upload_script(engine.client("s3"), bucket, SCRIPT)
    name = f"epochs-{uuid.uuid4().hex[:8]}"
    config = training_config(bucket, code, name=name, StoppingCondition={"MaxRuntimeInSeconds": 600})
    config["AlgorithmSpecification"]["MetricDefinitions"] = DEFINITIONS
    config["HyperParameters"].update(hyperparameters)
    engine.client("sagemaker").create_training_job(**config)
    job = wait_terminal(SageMakerJobsHook(aws_conn_id=None), name, timeout=300)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    return name


def analytics_points(job: str) -> dict[str, int]:
    """Points per metric that sagemaker-core's TrainingJobAnalytics (CloudWatch, Period 60) returns."""
    from sagemaker.core.analytics import TrainingJobAnalytics
    from sagemaker.core.helper.session_helper import Session

    boto_session = boto3.Session()
    session = Session(
        boto_session=boto_session,
        sagemaker_client=boto_session.client("sagemaker"),
        sagemaker_config=TELEMETRY_OFF,
    )
    frame = TrainingJobAnalytics(job, sagemaker_session=session).dataframe()
    if frame.empty:
        return {}
    return frame.groupby("metric_name").size().to_dict()


def test_collector_gives_every_epoch_where_training_job_analytics_gives_one_point_a_minute(
    aws_env, engine, s3_bucket
):
    started = time.monotonic()
    job = run_job(engine, s3_bucket, epochs="600", pause="0.1")
    assert time.monotonic() - started < 120

    hook = SageMakerMetricsHook(aws_conn_id=None)
    frame = hook.collect(hook.describe_runs([job]))
    assert frame.groupby("metric").size().to_dict() == {"train:loss": 600, "validation:accuracy": 600}
    loss = frame[frame["metric"] == "train:loss"]
    assert loss["step"].tolist() == list(range(600))
    assert loss["value"].iloc[-1] == pytest.approx(1 / 600, rel=1e-3)
    assert set(frame["source"]) == {"logs"}

    points = analytics_points(job)  # CloudWatch statistics, Period 60 s, against seconds
    assert set(points) == {"train:loss", "validation:accuracy"}
    assert all(1 <= count <= 2 for count in points.values()), points


def test_metrics_json_fills_in_and_a_missing_one_is_no_points(aws_env, engine, s3_bucket):
    job = run_job(engine, s3_bucket, epochs="3", pause="0")
    s3 = engine.client("s3")
    doc = {"metrics": {"f1": [0.1, 0.5, "NaN"], "train:loss": [{"step": 0, "value": 99.0}]}}
    s3.put_object(Bucket=s3_bucket, Key=f"metrics/{job}.json", Body=json.dumps(doc).encode())
    hook = SageMakerMetricsHook(aws_conn_id=None)
    runs = hook.describe_runs([job])
    frame = hook.collect(runs, metrics_json=f"s3://{s3_bucket}/metrics/{{job}}.json")
    loss = frame[frame["metric"] == "train:loss"]
    assert loss["value"].tolist() == [1.0, 0.5, pytest.approx(1 / 3, rel=1e-3)]  # logs win over JSON
    f1 = frame[frame["metric"] == "f1"]
    assert f1["step"].tolist() == [0, 1, 2] and f1["finite"].tolist() == [True, True, False]
    assert hook.collect(runs, metrics_json=f"s3://{s3_bucket}/nothing/{{job}}.json")["metric"].nunique() == 2
    uploaded = hook.upload(f"s3://{s3_bucket}/x/report.html", b"<html></html>", "text/html; charset=utf-8")
    assert s3.head_object(Bucket=s3_bucket, Key="x/report.html")["ContentType"] == "text/html; charset=utf-8"
    assert uploaded == f"s3://{s3_bucket}/x/report.html"
    assert hook.calls["sagemaker.DescribeTrainingJob"] == 1 and hook.calls["s3.GetObject"] == 2


def test_a_job_without_log_group_yet_gives_an_empty_frame(aws_env, engine, s3_bucket):
    code = upload_script(engine.client("s3"), s3_bucket, "import time\ntime.sleep(30)\n")
    name = f"quiet-{uuid.uuid4().hex[:8]}"
    config = training_config(bucket=s3_bucket, code_uri=code, name=name)
    config["AlgorithmSpecification"]["MetricDefinitions"] = DEFINITIONS
    engine.client("sagemaker").create_training_job(**config)
    hook = SageMakerMetricsHook(aws_conn_id=None)
    runs = hook.describe_runs([name])
    assert runs[0].running
    assert hook.collect(runs).empty
    engine.client("sagemaker").stop_training_job(TrainingJobName=name)
    time.sleep(0.1)


def test_every_stream_and_every_page_is_read(aws_env, engine, s3_bucket):
    """A second host's stream, written after the job, holding more events than one page."""
    job = run_job(engine, s3_bucket, epochs="3", pause="0")
    logs = engine.client("logs")
    stream = f"{job}/algo-2-1700000000"
    logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream)
    now = int(time.time() * 1000)
    lines = [f"epoch={i} train_loss={1 / (i + 1):.6f}" for i in range(12_000)]  # > 10,000 a page
    for start in range(0, len(lines), 5000):
        logs.put_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs",
            logStreamName=stream,
            logEvents=[{"timestamp": now, "message": line} for line in lines[start : start + 5000]],
        )
    hook = SageMakerMetricsHook(aws_conn_id=None)
    frame = hook.collect(hook.describe_runs([job]))
    loss = frame[frame["metric"] == "train:loss"]
    # algo-1's steps 0-2, algo-2's the rest (a page holds at most 10,000 events), each once.
    assert loss["step"].tolist() == list(range(12_000))
    assert loss["value"].iloc[:3].tolist() == [1.0, 0.5, pytest.approx(1 / 3, rel=1e-4)]
