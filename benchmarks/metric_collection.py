"""Collecting one 1,000-epoch training job's series from the local engine: API calls and wall time.

    python -m benchmarks --only metric_collection [--runs 10] [--quick]

A training job on the engine prints ``epoch=N train_loss=... val_loss=...`` and a line of noise
per epoch (1,000 epochs, 5 ms apart; 100 with ``--quick``); once it has completed,
``SageMakerMetricsHook.collect(describe_runs([job]))`` is timed: DescribeTrainingJob, every
CloudWatch Logs stream and page, matching with the job's two ``MetricDefinitions``, the tidy
frame. The calls come from the hook's own count (by operation), for one collection.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from typing import Any

from benchmarks.harness import Settings, benchmark, in_seconds, row, summarize

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
SCRIPT = """
import json, os, time
hp = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")))
for epoch in range(int(hp["epochs"])):
    print(f"epoch={epoch} train_loss={1.0 / (epoch + 1):.6f} val_loss={1.1 / (epoch + 1):.6f}")
    print(f"INFO step time 0.01 s, {epoch * 64} samples seen", flush=True)
    time.sleep(float(hp.get("sleep", 0.005)))
"""
DEFINITIONS = [
    {"Name": "train:loss", "Regex": r"train_loss=(\S+)"},
    {"Name": "validation:loss", "Regex": r"val_loss=(\S+)"},
]
#: Target for one 1,000-epoch job: well under the time a person waits for a chart.
TARGET_MS = 2000


def _source_dir() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = SCRIPT.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run_job(engine: Any, epochs: int, sleep: float = 0.005) -> str:
    """Run the epoch-printing job on the engine to completion; its name."""
    sagemaker, s3 = engine.client("sagemaker"), engine.client("s3")
    s3.create_bucket(Bucket="bench")
    s3.put_object(Bucket="bench", Key="code/sourcedir.tar.gz", Body=_source_dir())
    name = f"epochs-{epochs}-{int(time.time())}"
    sagemaker.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={
            "TrainingImage": "local/python:3",
            "TrainingInputMode": "File",
            "MetricDefinitions": DEFINITIONS,
        },
        HyperParameters={
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": "s3://bench/code/sourcedir.tar.gz",
            "epochs": str(epochs),
            "sleep": str(sleep),
        },
        OutputDataConfig={"S3OutputPath": "s3://bench/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 600},
    )
    while (
        status := sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
    ) == "InProgress":
        time.sleep(0.1)
    if status != "Completed":
        raise RuntimeError(f"benchmark job ended {status}")
    return name


@benchmark(
    "metric_collection", "collect one 1,000-epoch job's series from the local engine (calls, wall time)"
)
def metric_collection(settings: Settings) -> dict[str, Any]:
    from airflow_sm_provider.hooks.metrics import SageMakerMetricsHook
    from airflow_sm_provider.local import LocalEngine

    epochs = 100 if settings.quick else 1000
    saved = dict(os.environ)
    with LocalEngine() as engine:
        os.environ.update(engine.environ())
        try:
            job = run_job(engine, epochs)
            cold, warm, cpu, calls, points = [], [], [], {}, {}
            for _ in range(settings.runs):
                hook = SageMakerMetricsHook(aws_conn_id=None)
                started = time.perf_counter()
                hook.collect(hook.describe_runs([job]))
                cold.append(time.perf_counter() - started)
                calls = dict(hook.calls)
                started, cpu_started = time.perf_counter(), time.process_time()
                frame = hook.collect(hook.describe_runs([job]))
                warm.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
                points = frame.groupby("metric").size().to_dict()
        finally:
            os.environ.clear()
            os.environ.update(saved)
    if any(count != epochs for count in points.values()) or len(points) != len(DEFINITIONS):
        raise RuntimeError(f"expected {epochs} points per metric, got {points}")
    collect = summarize(warm, target_ms=TARGET_MS)
    cpu_summary = summarize(cpu)
    return {
        "rows": [
            row(
                f"Collect one {epochs:,}-epoch job's series from the engine ({len(DEFINITIONS)} metrics)",
                f"{in_seconds(collect)}, {cpu_summary['median_ms'] / 1000:.2f} s CPU, "
                f"{sum(calls.values())} API calls",
                "TrainingJobAnalytics: 1 GetMetricStatistics per metric, 1 point per minute (see fidelity)",
                target=f"<= {TARGET_MS / 1000:g} s",
                met=collect["within_target"],
                note="" if collect["within_target"] else "the engine answering shares this machine's cores",
            )
        ],
        "epochs": epochs,
        "points_per_metric": points,
        "calls": calls,
        "calls_total": sum(calls.values()),
        "collect_new_hook": summarize(cold),
        "collect": collect,
        "collect_cpu_seconds_of_this_process": cpu_summary,
        "note": (
            "collect_new_hook includes building the boto3 clients; collect reuses them. The rest of "
            "the wall time is the engine answering (it shares this machine's 2 cores)."
        ),
    }
