"""Metric fidelity: points per metric for one job, our collector vs CloudWatch's 1-minute statistics.

    python -m benchmarks --only metric_fidelity     (--quick: 60 epochs in ~1 s)

A training job on the local engine prints 600 epochs over about 60 s (``epoch=N train_loss=...
val_loss=...`` every 0.1 s). Then, on the same job:

- ours: ``SageMakerMetricsHook.collect`` (the job's CloudWatch Logs matched with its
  ``MetricDefinitions``): one point per printed epoch, with its step;
- ``TrainingJobAnalytics`` (SageMaker Python SDK v2): what it asks CloudWatch, made here with
  boto3 since SDK v2 is not installed (v3 is, without it): ``GetMetricStatistics`` on namespace
  ``/aws/sagemaker/TrainingJobs``, dimension ``TrainingJobName``, ``Period=60``, ``Average``,
  from ``TrainingStartTime`` to ``TrainingEndTime`` + 1 minute. The engine publishes to its
  CloudWatch what SageMaker publishes (one aggregated datum per metric and minute), so this is
  the answer the SDK would get, against seconds and without a step.

Target: 600 points per metric vs 1-2.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from benchmarks.harness import Settings, benchmark, row, times
from benchmarks.metric_collection import DEFINITIONS, run_job


def cloudwatch_points(cloudwatch: Any, describe: dict[str, Any]) -> dict[str, int]:
    """Datapoints per metric as ``TrainingJobAnalytics`` fetches them."""
    points = {}
    for definition in DEFINITIONS:
        answer = cloudwatch.get_metric_statistics(
            Namespace="/aws/sagemaker/TrainingJobs",
            MetricName=definition["Name"],
            Dimensions=[{"Name": "TrainingJobName", "Value": describe["TrainingJobName"]}],
            StartTime=describe["TrainingStartTime"],
            EndTime=describe["TrainingEndTime"] + timedelta(minutes=1),
            Period=60,
            Statistics=["Average"],
        )
        points[definition["Name"]] = len(answer["Datapoints"])
    return points


@benchmark("metric_fidelity", "points per metric, 600-epoch job: our collector vs CloudWatch 1-min stats")
def metric_fidelity(settings: Settings) -> dict[str, Any]:
    from airflow_sm_provider.hooks.metrics import SageMakerMetricsHook
    from airflow_sm_provider.local import LocalEngine

    epochs, sleep = (60, 0.01) if settings.quick else (600, 0.1)
    saved = dict(os.environ)
    with LocalEngine() as engine:
        os.environ.update(engine.environ())
        try:
            job = run_job(engine, epochs, sleep)
            describe = engine.client("sagemaker").describe_training_job(TrainingJobName=job)
            hook = SageMakerMetricsHook(aws_conn_id=None)
            frame = hook.collect(hook.describe_runs([job]))
            ours = {str(k): int(v) for k, v in frame.groupby("metric").size().items()}
            theirs = cloudwatch_points(engine.client("cloudwatch"), describe)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    seconds = (describe["TrainingEndTime"] - describe["TrainingStartTime"]).total_seconds()
    low, high = min(ours.values()), max(theirs.values())
    met = low == epochs and high <= 2
    return {
        "epochs": epochs,
        "printed_over_s": round(seconds, 1),
        "ours_points_per_metric": ours,
        "cloudwatch_1min_points_per_metric": theirs,
        "trainingjobanalytics": "sagemaker v2 not installed: its GetMetricStatistics request made with boto3",
        "rows": [
            row(
                f"Metric fidelity: points per metric, {epochs} epochs printed over {seconds:.0f} s",
                f"{low} (every epoch, with its step)",
                f"{high} (TrainingJobAnalytics: CloudWatch 1-minute averages against time, no step)",
                ratio=times(low / max(high, 1), "more points"),
                target=f"{epochs} vs 1-2",
                met=met,
                note=(
                    "TrainingJobAnalytics is SageMaker SDK v2, not installed here (v3 is): its "
                    "GetMetricStatistics request (Period=60, Average) was made with boto3 against the "
                    "engine's CloudWatch, which holds one datum per metric and minute as SageMaker does"
                ),
            )
        ],
    }
