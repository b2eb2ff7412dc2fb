"""A job's log says when the engine's Python is not its image's, and what the script uses that
the image's Python lacks; the job still runs (a warning, not a failure)."""

from __future__ import annotations

import time
import uuid

import pytest
from jobs_support import training_config, upload_script

pytestmark = pytest.mark.integration

SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def test_the_log_of_a_scikit_learn_job_warns_of_features_newer_than_python_3_9(engine, s3_bucket):
    s3, sagemaker = engine.client("s3"), engine.client("sagemaker")
    code = upload_script(
        s3, s3_bucket, "import sys\nmatch sys.argv:\n    case _:\n        print('trained')\n"
    )
    name = f"py39-{uuid.uuid4().hex[:12]}"
    config = training_config(s3_bucket, code, name=name)
    config["AlgorithmSpecification"]["TrainingImage"] = SKLEARN
    sagemaker.create_training_job(**config)
    deadline = time.monotonic() + 120
    while (job := sagemaker.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    logs, group = engine.client("logs"), "/aws/sagemaker/TrainingJobs"
    (stream,) = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/")["logStreams"]
    events = logs.get_log_events(
        logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True
    )["events"]
    lines = [e["message"] for e in events]
    assert any(
        line.startswith(f"[local engine] image {SKLEARN} runs Python 3.9; this job runs with")
        for line in lines
    )
    assert (
        "[local engine] warning: train.py line 2: pattern matching requires Python 3.10; "
        "the image runs Python 3.9, so it would fail in the real container"
    ) in lines
    assert lines.index("trained") > max(
        i for i, line in enumerate(lines) if line.startswith("[local engine]")
    )
