"""A spot interruption resumes from the last checkpoint and the metric series has no repeated step.

The script checkpoints every second epoch, so the resumed attempt prints epochs 2 and 3 again
(with other values, as a real restart from an older checkpoint does). The series the plots and
the report read (``SageMakerMetricsHook.log_series``: every log stream, matched with the job's
``MetricDefinitions``) must hold each step once, with the resumed attempt's value.
"""

from __future__ import annotations

import time
import uuid

import pytest
from jobs_support import training_config, upload_script

from airflow_sm_provider.hooks.metrics import SageMakerMetricsHook
from airflow_sm_provider.sweep import sweep_run

pytestmark = pytest.mark.integration

SCRIPT = """
import pathlib, time
state = pathlib.Path("/opt/ml/checkpoints/epoch.txt")
start = int(state.read_text()) if state.exists() else 0
attempt = 2 if start else 1
for epoch in range(start, 6):
    print(f"epoch={epoch} loss={attempt}.{epoch}", flush=True)
    if epoch % 2 == 1:
        state.write_text(str(epoch - 1))
    if attempt == 1 and epoch == 3:
        print("waiting to be interrupted", flush=True)
        time.sleep(600)
"""


def test_spot_resume_repeats_no_step_in_the_metric_series(engine, aws_env, s3_bucket):
    s3, sm = engine.client("s3"), engine.client("sagemaker")
    name = f"spot-{uuid.uuid4().hex[:8]}"
    config = training_config(s3_bucket, upload_script(s3, s3_bucket, SCRIPT), name=name)
    config.update(
        EnableManagedSpotTraining=True,
        StoppingCondition={"MaxRuntimeInSeconds": 120, "MaxWaitTimeInSeconds": 240},
        CheckpointConfig={"S3Uri": f"s3://{s3_bucket}/checkpoints/{name}"},
    )
    config["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "loss", "Regex": r"loss=([0-9.]+)"}]
    sm.create_training_job(**config)
    hook = SageMakerMetricsHook(aws_conn_id=None)
    deadline = time.monotonic() + 120
    while True:  # interrupt once the first attempt printed epoch 3 (its checkpoint says 2)
        run = sweep_run(sm.describe_training_job(TrainingJobName=name))
        if len(hook.log_series(run)) == 4:
            break
        assert time.monotonic() < deadline
        time.sleep(0.3)
    engine.jobs.interrupt(name)
    while (job := sm.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert "Interrupted" in [t["Status"] for t in job["SecondaryStatusTransitions"]]

    frame = hook.log_series(sweep_run(job))
    assert not frame.duplicated(["metric", "step"]).any()
    assert frame.sort_values("step")["step"].tolist() == [0, 1, 2, 3, 4, 5]
    # the steps printed twice keep the resumed attempt's value
    assert frame.set_index("step")["value"].to_dict() == {0: 1.0, 1: 1.1, 2: 2.2, 3: 2.3, 4: 2.4, 5: 2.5}
