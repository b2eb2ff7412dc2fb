"""The main job's own safety rules: it never deletes a folder it did not write."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from jobs_support import ROLE

from airflow_sm_provider.demo import _collect, run_demo


def test_refuses_a_non_empty_folder_that_is_not_a_demo_output(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    with pytest.raises(SystemExit, match="not empty"):
        run_demo(tmp_path, tmp_path / "dags")
    assert precious.read_text() == "keep me"


def test_outside_a_clone_it_says_where_the_dag_is_missing(tmp_path: Path, capsys) -> None:
    assert run_demo(tmp_path / "artifacts", tmp_path / "no-dags") == 2
    out = capsys.readouterr().out
    assert "sagemaker_training_pipeline not found" in out and "--dags-folder" in out
    assert not (tmp_path / "artifacts").exists()


def _start_noop_processing(sagemaker, name: str, **extra) -> None:
    sagemaker.create_processing_job(
        ProcessingJobName=name,
        RoleArn=ROLE,
        AppSpecification={"ImageUri": "local/python:3", "ContainerEntrypoint": ["python3", "-c", "pass"]},
        ProcessingResources={
            "ClusterConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1}
        },
        StoppingCondition={"MaxRuntimeInSeconds": 60},
        **extra,
    )


def test_collect_reads_every_list_page(engine, tmp_path: Path) -> None:
    """12 jobs: more than the engine's List page of 10, so the run summary must paginate."""
    sagemaker = engine.client("sagemaker")
    names = [f"demo-page-{uuid.uuid4().hex[:8]}-{i}" for i in range(12)]
    for name in names:
        _start_noop_processing(sagemaker, name)
    first_page = sagemaker.list_processing_jobs()["ProcessingJobSummaries"]
    assert len(first_page) < len(names)  # the engine pages: one call would miss some
    collected = [job["name"] for job in _collect(engine, tmp_path) if job["kind"] == "processing"]
    assert set(names) <= set(collected)
    assert len(collected) == len(set(collected))


def test_collect_keeps_a_job_whose_output_bucket_is_gone(engine, tmp_path: Path) -> None:
    """The engine outlives buckets (other runs, other tests): their jobs are listed, not fatal."""
    sagemaker, s3 = engine.client("sagemaker"), engine.client("s3")
    bucket, name = f"gone-{uuid.uuid4().hex[:12]}", f"demo-gone-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    _start_noop_processing(
        sagemaker,
        name,
        ProcessingOutputConfig={
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
    )
    sagemaker.get_waiter("processing_job_completed_or_stopped").wait(
        ProcessingJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)

    collected = {job["name"]: job for job in _collect(engine, tmp_path)}
    assert collected[name]["status"] == "Completed"
    assert not (tmp_path / "jobs" / name / "out").exists()
