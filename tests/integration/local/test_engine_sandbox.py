"""What a job cannot reach past, through the engine over HTTP with boto3 (and the SageMaker SDK).

Each test names the behaviour it replaces: lost output lines, an engine stalled by a regex,
host files uploaded through links, processes that outlived their job, the engine's environment
readable by a job, CloudWatch metrics unlike CloudWatch's.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import tarfile
import threading
import time
import uuid
from typing import Any

import boto3
import pytest
from jobs_support import ROLE, upload_script
from sandbox_support import job_pids

from airflow_sm_provider.local.container import namespaces_available

pytestmark = pytest.mark.integration
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="processes are found in /proc")
TERMINAL = {"Completed", "Failed", "Stopped"}


def _name(prefix: str = "sbx") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _train(engine, bucket: str, script: str, metrics: list[dict] | None = None, **extra: Any) -> str:
    s3, sm = engine.client("s3"), engine.client("sagemaker")
    name = _name()
    algo = {"TrainingImage": "local/python:3", "TrainingInputMode": "File"}
    if metrics:
        algo["MetricDefinitions"] = metrics
    sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification=algo,
        HyperParameters={
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(upload_script(s3, bucket, script)),
        },
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
        **extra,
    )
    return name


def _wait(engine, name: str, until=TERMINAL, timeout: float = 120) -> dict:
    sm = engine.client("sagemaker")
    deadline = time.monotonic() + timeout
    while True:
        job = sm.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] in until or job["SecondaryStatus"] in until:
            return job
        assert time.monotonic() < deadline, f"{name} still {job['SecondaryStatus']}"
        time.sleep(0.1)


def _log_lines(engine, name: str, group: str = "/aws/sagemaker/TrainingJobs") -> list[str]:
    """Every line of a job's log streams, following the pages."""
    logs = engine.client("logs")
    lines: list[str] = []
    try:
        streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=name + "/")["logStreams"]
    except logs.exceptions.ResourceNotFoundException:  # no job has logged yet
        return lines
    for stream in streams:
        token = None
        while True:
            kw = {"nextToken": token} if token else {}
            page = logs.get_log_events(
                logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True, **kw
            )
            lines += [e["message"] for e in page["events"]]
            if not page["events"] or page["nextForwardToken"] == token:
                break
            token = page["nextForwardToken"]
    return lines


class _Latency:
    """Times DescribeTrainingJob in a thread while something else happens."""

    def __init__(self, engine, name: str) -> None:
        self._sm = engine.client("sagemaker")
        self._name = name
        self.samples: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._done.is_set():
            started = time.monotonic()
            self._sm.describe_training_job(TrainingJobName=self._name)
            self.samples.append(time.monotonic() - started)
            time.sleep(0.02)

    def __enter__(self) -> _Latency:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


# -- defect 2: every line, in order, and the final metrics ------------------------------------
BURST = """
import sys
for i in range(20000):
    sys.stdout.write(f"line {i} " + "x" * 60 + "\\n")
sys.stdout.write("acc=0.99\\n")
"""


def test_a_burst_before_exit_reaches_the_logs_and_the_final_metrics(engine, s3_bucket):
    """Used to keep ~6,000-10,000 of the 20,001 lines, no acc, Describe up to 3 s meanwhile."""
    name = _train(engine, s3_bucket, BURST, [{"Name": "acc", "Regex": r"acc=(\S+)"}])
    _wait(engine, name, until={"Training"} | TERMINAL)
    with _Latency(engine, name) as latency:
        job = _wait(engine, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    lines = [line for line in _log_lines(engine, name) if line.startswith(("line ", "acc="))]
    assert len(lines) == 20001 and lines[-1] == "acc=0.99"
    assert [int(line.split()[1]) for line in lines[:-1]] == list(range(20000))
    assert [(m["MetricName"], m["Value"]) for m in job["FinalMetricDataList"]] == [("acc", 0.99)]
    # Before, calls took up to 3 s; the second worst leaves room for one spike of a loaded machine.
    assert sorted(latency.samples)[-2] < 1.5, sorted(latency.samples)[-5:]


# -- defect 3: a catastrophic regex stalls nothing ---------------------------------------------
CATASTROPHIC_JOB = """
import time
print("x=" + "a" * 60 + "!", flush=True)
print("loss=0.5", flush=True)
time.sleep(60)
"""


def test_a_catastrophic_regex_blocks_neither_the_api_nor_a_stop(engine, s3_bucket):
    """``(a|aa)+$`` over 60 ``a``s used to hold the interpreter for minutes: no call answered."""
    metrics = [{"Name": "stall", "Regex": r"x=((a|aa)+)$"}, {"Name": "loss", "Regex": r"loss=(\S+)"}]
    name = _train(engine, s3_bucket, CATASTROPHIC_JOB, metrics)
    _wait(engine, name, until={"Training"} | TERMINAL)
    with _Latency(engine, name) as latency:
        deadline = time.monotonic() + 30
        while not any("loss=0.5" in line for line in _log_lines(engine, name)):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.5)
    # Before, no call was answered for minutes; 5 s leaves room for a machine under load.
    assert max(latency.samples) < 5, sorted(latency.samples)[-5:]
    engine.client("sagemaker").stop_training_job(TrainingJobName=name)
    # The job sleeps 60 s: Stopped within the 30 s wait means the stop was not held up.
    job = _wait(engine, name, timeout=30)
    assert job["TrainingJobStatus"] == "Stopped"
    notices = [line for line in _log_lines(engine, name) if "'stall'" in line]
    assert len(notices) == 1 and "time budget" in notices[0]
    assert [(m["MetricName"], m["Value"]) for m in job["FinalMetricDataList"]] == [("loss", 0.5)]


# -- issue 8, smaller: a final nan is reported as printed ---------------------------------------
def test_a_final_nan_is_reported_not_hidden_behind_the_last_finite_value(engine, s3_bucket):
    script = 'for v in ("0.5", "0.25", "nan"):\n    print(f"loss={v}")\n'
    name = _train(engine, s3_bucket, script, [{"Name": "loss", "Regex": r"loss=(\S+)"}])
    job = _wait(engine, name)
    (final,) = job["FinalMetricDataList"]
    assert final["MetricName"] == "loss" and math.isnan(final["Value"])


# -- defect 5: uploads stay in the job directory -------------------------------------------------
LINKED_MODEL_DIR = """
import os, shutil
shutil.rmtree(os.environ["SM_MODEL_DIR"])
os.symlink("/etc", os.environ["SM_MODEL_DIR"])
"""

LINK_INSIDE_MODEL_DIR = """
import os, pathlib
model = pathlib.Path(os.environ["SM_MODEL_DIR"])
(model / "weights.bin").write_bytes(b"w")
os.symlink("/etc/passwd", model / "passwd")
os.symlink("/etc", model / "etc")
"""


def test_a_model_dir_replaced_by_a_link_fails_the_job_and_uploads_nothing(engine, s3_bucket):
    """Used to put the host's /etc into model.tar.gz."""
    name = _train(engine, s3_bucket, LINKED_MODEL_DIR)
    job = _wait(engine, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert "symbolic link" in job["FailureReason"] and "model" in job["FailureReason"]
    listed = engine.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix=f"output/{name}/")
    assert "Contents" not in listed


def test_links_inside_the_model_dir_are_left_out_and_named_in_the_log(engine, s3_bucket):
    name = _train(engine, s3_bucket, LINK_INSIDE_MODEL_DIR)
    job = _wait(engine, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    body = engine.client("s3").get_object(Bucket=s3_bucket, Key=f"output/{name}/output/model.tar.gz")["Body"]
    with tarfile.open(fileobj=io.BytesIO(body.read())) as tar:
        assert tar.getnames() == ["weights.bin"]
    notes = [line for line in _log_lines(engine, name) if "not uploaded" in line]
    assert sorted(note.rsplit(" ", 1)[1] for note in notes) == ["model/etc", "model/passwd"]


def test_a_processing_output_linked_to_etc_fails_and_uploads_nothing(engine, s3_bucket):
    """Used to upload 293 host files to S3."""
    s3, sm = engine.client("s3"), engine.client("sagemaker")
    s3.put_object(Bucket=s3_bucket, Key="in/x.txt", Body=b"x")
    script = (
        "import os, shutil\n"
        "shutil.rmtree('/opt/ml/processing/out')\n"
        "os.symlink('/etc', '/opt/ml/processing/out')\n"
    )
    s3.put_object(Bucket=s3_bucket, Key="code/link.py", Body=script.encode())
    name = _name("proc")
    sm.create_processing_job(
        ProcessingJobName=name,
        RoleArn=ROLE,
        AppSpecification={
            "ImageUri": "local/python:3",
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/code/link.py"],
        },
        ProcessingResources={
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}
        },
        ProcessingInputs=[
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": f"s3://{s3_bucket}/code/link.py",
                    "LocalPath": "/opt/ml/processing/code",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        ],
        ProcessingOutputConfig={
            "Outputs": [
                {
                    "OutputName": "out",
                    "S3Output": {
                        "S3Uri": f"s3://{s3_bucket}/out",
                        "LocalPath": "/opt/ml/processing/out",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
    )
    deadline = time.monotonic() + 60
    while (job := sm.describe_processing_job(ProcessingJobName=name))["ProcessingJobStatus"] not in TERMINAL:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["ProcessingJobStatus"] == "Failed" and "symbolic link" in job["FailureReason"]
    assert "Contents" not in s3.list_objects_v2(Bucket=s3_bucket, Prefix="out")


# -- defects 6 and 7: no process outlives its job; the engine's process is out of sight ------------
DETACHING_JOB = """
import subprocess, sys, time
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("detached", flush=True)
%s
"""


@linux_only
@pytest.mark.parametrize("how", ["stop", "exit"])
def test_a_detached_grandchild_does_not_outlive_its_job(engine, s3_bucket, how):
    """A ``setsid`` grandchild used to survive StopTrainingJob (and the job's own end)."""
    name = _train(
        engine, s3_bucket, DETACHING_JOB % ("time.sleep(120)" if how == "stop" else "time.sleep(4)")
    )
    deadline = time.monotonic() + 30
    while "detached" not in _log_lines(engine, name):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert len(job_pids(name)) >= 2
    if how == "stop":
        engine.client("sagemaker").stop_training_job(TrainingJobName=name)
    job = _wait(engine, name)
    assert job["TrainingJobStatus"] == ("Stopped" if how == "stop" else "Completed")
    deadline = time.monotonic() + 3
    while job_pids(name):
        assert time.monotonic() < deadline, "a process of the job outlived it"
        time.sleep(0.05)


@linux_only
def test_a_job_cannot_see_the_engine_process_or_read_its_environment(engine, s3_bucket):
    """A job used to read ``/proc/<engine pid>/environ``: the engine's secrets, one read away."""
    if not namespaces_available():
        pytest.skip("no mount and PID namespaces here: the README says what a job sees then")
    engine_pid = os.getpid()  # the engine runs in this test process
    script = f"""
import os
print("pids", *sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
for pid in ({engine_pid}, 1):
    try:
        environ = open(f"/proc/{{pid}}/environ", "rb").read()
        print("environ", pid, b"TRAINING_JOB_NAME" not in environ)
    except OSError as err:
        print("environ", pid, type(err).__name__)
"""
    name = _train(engine, s3_bucket, script)
    job = _wait(engine, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    lines = _log_lines(engine, name)
    pids = [int(p) for p in next(line for line in lines if line.startswith("pids")).split()[1:]]
    assert pids[0] == 1 and len(pids) <= 3 and engine_pid not in pids
    assert f"environ {engine_pid} FileNotFoundError" in lines
    assert "environ 1 False" in lines  # PID 1 is the job's own first process, not the engine


# -- issue 11 item 5: CloudWatch metrics as TrainingJobAnalytics sees them on AWS -------------------
EPOCHS_JOB = """
for epoch in range(600):
    print(f"epoch={epoch} loss={1 / (epoch + 1):.5f} acc={epoch / 600:.4f}")
"""


def test_training_job_analytics_sees_one_point_per_minute(engine, s3_bucket, aws_env):
    """600 epochs in a few seconds: the SDK sees 1 point per metric (2 if a minute turns)."""
    from sagemaker.core.analytics import TrainingJobAnalytics
    from sagemaker.core.helper.session_helper import Session

    metrics = [{"Name": "loss", "Regex": r"loss=(\S+)"}, {"Name": "acc", "Regex": r"acc=(\S+)"}]
    name = _train(engine, s3_bucket, EPOCHS_JOB, metrics)
    job = _wait(engine, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    boto_session = boto3.Session()
    session = Session(
        boto_session=boto_session,
        sagemaker_client=boto_session.client("sagemaker"),
        sagemaker_config={
            "SchemaVersion": "1.0",
            "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
        },
    )
    frame = TrainingJobAnalytics(name, sagemaker_session=session).dataframe()
    counts = frame.groupby("metric_name").size().to_dict()
    assert set(counts) == {"loss", "acc"} and all(1 <= n <= 2 for n in counts.values()), counts
    if counts["acc"] == 1:  # one minute: its average is the mean of the 600 values printed
        mean = sum(round(e / 600, 4) for e in range(600)) / 600
        assert frame[frame.metric_name == "acc"].value.iloc[0] == pytest.approx(mean)
    cloudwatch = engine.client("cloudwatch")
    stats = cloudwatch.get_metric_statistics(
        Namespace="/aws/sagemaker/TrainingJobs",
        MetricName="loss",
        Dimensions=[{"Name": "Host", "Value": f"{name}/algo-1"}],
        StartTime=job["TrainingStartTime"].replace(second=0, microsecond=0),
        EndTime=job["TrainingEndTime"].replace(second=0, microsecond=0)
        + __import__("datetime").timedelta(minutes=2),
        Period=60,
        Statistics=["SampleCount"],
    )["Datapoints"]
    assert 1 <= len(stats) <= 2 and sum(p["SampleCount"] for p in stats) == 600
    assert all(p["Timestamp"].second == 59 for p in stats)  # see cloudwatch.py: moto's periods
