"""Engine-level job behaviour: the concurrency limit, records that survive a restart, and
processes that do not survive a crash of the engine."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from types import SimpleNamespace

import boto3
import pytest
from sandbox_support import job_pids

from airflow_sm_provider.local import LocalEngine, credentials

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
        release = tmp_path / "release-first"  # the first job runs until the test releases it
        wait_for_release = (
            f"import os, time\nwhile not os.path.exists({str(release)!r}):\n    time.sleep(0.05)\n"
        )
        _start_job(engine, "jobs", "first", wait_for_release)
        _describe_until(engine, "first", lambda j: j["SecondaryStatus"] == "Training")
        _start_job(engine, "jobs", "second", "print('second ran')\n")
        assert _describe_until(engine, "second", lambda j: j["SecondaryStatus"] == "Pending")
        assert engine.client("sagemaker").describe_training_job(TrainingJobName="first")[
            "SecondaryStatus"
        ] == ("Training")
        release.touch()
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


ENGINE_PROCESS = """
import sys, time
from airflow_sm_provider.local import LocalEngine, credentials
engine = LocalEngine(data_dir=sys.argv[1]).start()
print(engine.endpoint_url, flush=True)
time.sleep(600)
"""

STUBBORN_JOB = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
child = subprocess.Popen([sys.executable, "-c", STUBBORN])
detached = subprocess.Popen([sys.executable, "-c", STUBBORN], start_new_session=True)  # setsid
with open(%r + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
os.rename(%r + ".tmp", %r)
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the engine finds its jobs' processes in /proc"
)
def test_a_restart_ends_the_job_processes_a_crashed_engine_left_running(tmp_path):
    data_dir, pid_file = tmp_path / "data", str(tmp_path / "pids")
    crashed = subprocess.Popen(
        [sys.executable, "-c", ENGINE_PROCESS, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    pids: list[int] = []
    try:
        url = crashed.stdout.readline().strip()
        key = credentials.read_file(data_dir / credentials.FILE_NAME)  # generated for the data dir
        remote = SimpleNamespace(
            client=lambda service: boto3.client(
                service,
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id=key.access_key_id,
                aws_secret_access_key=key.secret_access_key,
            )
        )
        remote.client("s3").create_bucket(Bucket="jobs")
        _start_job(remote, "jobs", "orphan", STUBBORN_JOB % (pid_file, pid_file, pid_file))
        deadline = time.monotonic() + 30
        while not os.path.exists(pid_file):
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.05)
        pids = job_pids("orphan")  # host ids: inside its PID namespace the job sees others
        assert len(pids) >= 3  # the job, its child and its detached (setsid) child
        crashed.kill()  # kill -9: no shutdown, no chance to stop the job
        crashed.wait()
        time.sleep(0.2)
        assert not any(_gone(pid) for pid in pids), "the job should outlive the crashed engine"
        with LocalEngine(data_dir=data_dir, stop_grace_seconds=0.5) as engine:
            deadline = time.monotonic() + 5
            while not all(_gone(pid) for pid in pids):
                assert time.monotonic() < deadline, "the restart left the job's processes running"
                time.sleep(0.05)
            job = engine.client("sagemaker").describe_training_job(TrainingJobName="orphan")
            assert job["TrainingJobStatus"] == "Failed" and "restarted" in job["FailureReason"]
    finally:
        crashed.kill()
        crashed.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
