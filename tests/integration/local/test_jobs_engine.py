"""Engine-level job behaviour: the concurrency limit and records that survive a restart."""

from __future__ import annotations

import io
import json
import tarfile
import time

import pytest

from airflow_sm_provider.local import LocalEngine

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def _start_job(engine: LocalEngine, bucket: str, name: str, script: str) -> None:
    s3 = engine.client("s3")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = len(script)
        tar.addfile(info, io.BytesIO(script.encode()))
    s3.put_object(Bucket=bucket, Key=f"{name}.tar.gz", Body=buf.getvalue())
    engine.client("sagemaker").create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": "local/python", "TrainingInputMode": "File"},
        HyperParameters={
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(f"s3://{bucket}/{name}.tar.gz"),
        },
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/out"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 120},
    )


def _describe_until(engine: LocalEngine, name: str, done, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = engine.client("sagemaker").describe_training_job(TrainingJobName=name)
        if done(job):
            return job
        assert time.monotonic() < deadline, job["SecondaryStatus"]
        time.sleep(0.05)


def test_jobs_over_the_limit_wait_pending_in_order(tmp_path):
    with LocalEngine(data_dir=tmp_path, max_concurrent_jobs=1) as engine:
        engine.client("s3").create_bucket(Bucket="jobs")
        _start_job(engine, "jobs", "first", "import time\ntime.sleep(1.5)\n")
        _describe_until(engine, "first", lambda j: j["SecondaryStatus"] == "Training")
        _start_job(engine, "jobs", "second", "print('second ran')\n")
        assert _describe_until(engine, "second", lambda j: j["SecondaryStatus"] == "Pending")
        assert engine.client("sagemaker").describe_training_job(TrainingJobName="first")[
            "SecondaryStatus"
        ] == ("Training")
        second = _describe_until(engine, "second", lambda j: j["TrainingJobStatus"] == "Completed")
        first = engine.client("sagemaker").describe_training_job(TrainingJobName="first")
        assert first["TrainingJobStatus"] == "Completed"
        assert second["TrainingStartTime"] >= first["TrainingEndTime"]
        assert [t["Status"] for t in second["SecondaryStatusTransitions"]][:3] == [
            "Starting",
            "Pending",
            "Downloading",
        ]


def test_records_survive_a_restart_and_running_jobs_fail_with_a_reason(tmp_path):
    with LocalEngine(data_dir=tmp_path) as engine:
        engine.client("s3").create_bucket(Bucket="jobs")
        _start_job(engine, "jobs", "done", "print('ok')\n")
        _describe_until(engine, "done", lambda j: j["TrainingJobStatus"] == "Completed")
        _start_job(engine, "jobs", "cut-short", "import time\ntime.sleep(60)\n")
        _describe_until(engine, "cut-short", lambda j: j["SecondaryStatus"] == "Training")
    with LocalEngine(data_dir=tmp_path) as engine:
        sm = engine.client("sagemaker")
        names = {
            s["TrainingJobName"]: s["TrainingJobStatus"]
            for s in sm.list_training_jobs()["TrainingJobSummaries"]
        }
        assert names == {"done": "Completed", "cut-short": "Failed"}
        reason = sm.describe_training_job(TrainingJobName="cut-short")["FailureReason"]
        assert "local engine" in reason and ("restarted" in reason or "shut down" in reason)
