from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from airflow_sm_provider.local import cloudwatch, container, process, runner, transfer
from airflow_sm_provider.local.cloudwatch import LogSink, MetricCollector
from airflow_sm_provider.local.container import JobPaths
from airflow_sm_provider.local.control import Control, EndReason, RunSettings
from airflow_sm_provider.local.errors import JobFailure
from airflow_sm_provider.local.runtimes import Runtime, resolve_runtime


@pytest.fixture
def aws():
    """moto in-process: the real moto S3, CloudWatch Logs and CloudWatch backends."""
    with mock_aws():
        yield lambda service: boto3.client(
            service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
        )


def settings(tmp_path: Path, **kw) -> RunSettings:
    return RunSettings(endpoint_url="http://127.0.0.1:1", region="us-east-1", data_dir=tmp_path, **kw)


def test_hyperparameters_are_decoded_like_the_toolkit():
    decoded = {
        k: container.decode_hyperparameter(v) for k, v in {"p": '"train.py"', "n": "3", "s": "abc"}.items()
    }
    assert decoded == {"p": "train.py", "n": 3, "s": "abc"}
    args = container.to_cmd_args({"lr": 0.1, "b": True, "layers": [1, 2], "opt": {"a": 1}})
    assert args == ["--b", "True", "--layers", "1,2", "--lr", "0.1", "--opt", "a=1"]


def test_container_paths_are_rewritten_by_the_documented_rule(tmp_path):
    paths = JobPaths(tmp_path, in_namespace=False)
    assert paths.rewrite("/opt/ml/processing/input") == str(tmp_path / "processing/input")
    assert paths.rewrite("--out=/opt/ml/processing/out") == f"--out={tmp_path / 'processing/out'}"
    assert paths.rewrite("/opt/mlx/a") == "/opt/mlx/a"
    assert paths.rewrite("a=b") == "a=b"
    assert JobPaths(tmp_path, in_namespace=True).rewrite("/opt/ml/model") == "/opt/ml/model"
    with pytest.raises(JobFailure):
        paths.host("/opt/ml/../etc/passwd")


def _archive(members: list[tarfile.TarInfo], tmp_path: Path) -> Path:
    path = tmp_path / "src.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


@pytest.mark.parametrize(
    "member",
    [tarfile.TarInfo("../evil.py"), tarfile.TarInfo("/abs/evil.py"), tarfile.TarInfo("a/../../evil.py")],
)
def test_archives_cannot_escape_their_directory(tmp_path, member):
    member.size = 1
    with pytest.raises(JobFailure):
        transfer.extract_archive(_archive([member], tmp_path), tmp_path / "code")
    assert not (tmp_path / "evil.py").exists()


def test_archives_with_links_are_refused_and_plain_ones_extracted(tmp_path):
    link = tarfile.TarInfo("link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(JobFailure, match="not a plain file"):
        transfer.extract_archive(_archive([link], tmp_path), tmp_path / "code")
    good = tarfile.TarInfo("pkg/train.py")
    good.size = 3
    transfer.extract_archive(_archive([good], tmp_path), tmp_path / "code2")
    assert (tmp_path / "code2/pkg/train.py").read_bytes() == b"xxx"


@pytest.mark.parametrize(
    ("key", "prefix", "expected"),
    [
        ("data/train/a.csv", "data/train", "a.csv"),
        ("data/train/x/a.csv", "data/train/", "x/a.csv"),
        ("data/train.csv", "data/train.csv", "train.csv"),
        ("data/train2/a.csv", "data/train", "train2/a.csv"),
    ],
)
def test_s3_keys_land_relative_to_the_prefix(key, prefix, expected):
    assert transfer._relative_key(key, prefix) == expected


def test_empty_prefix_fails_with_a_clear_reason(aws, tmp_path):
    aws("s3").create_bucket(Bucket="bkt")
    with pytest.raises(JobFailure, match='No S3 objects found under S3 URL "s3://bkt/none"'):
        transfer.download_s3(aws("s3"), "s3://bkt/none", "S3Prefix", tmp_path, "arn:role", "us-east-1")


def test_environment_is_an_allowlist_of_the_hosts(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAHOSTKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret")
    monkeypatch.setenv("AWS_PROFILE", "prod")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", "aws://AKIAHOSTKEY:secret@")
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "fernet")
    monkeypatch.setenv("PYTHONPATH", "/host/modules")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("TZ", "UTC")
    sdk_config = tmp_path / "sdk.yaml"
    env = container.base_environment(
        settings(tmp_path, sdk_config=sdk_config),
        Runtime(env={"RUNTIME": "r"}),
        {"MY": "1", "BOTO_CONFIG": "/home/me/.boto"},
        "http://e/_engine/credentials/j",
        "tok",
    )
    engine_set = {
        "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
        "BOTO_CONFIG", "AWS_EC2_METADATA_DISABLED", "PYTHONUNBUFFERED", "SAGEMAKER_USER_CONFIG_OVERRIDE",
    }  # fmt: skip
    hosts = set(env) - engine_set - {"MY", "RUNTIME"}
    assert hosts <= container.HOST_ENV_ALLOWED | {"LC_ALL"} and {"PATH", "LC_ALL", "TZ"} <= hosts
    assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == "tok"
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "BOTO_CONFIG"):
        assert env[name] == os.devnull  # not even the job's Environment can point them at a file
    assert (env["MY"], env["RUNTIME"]) == ("1", "r")
    assert env["SAGEMAKER_USER_CONFIG_OVERRIDE"] == str(sdk_config)


def test_runtimes_map_images_to_interpreters():
    table = {
        "*pytorch*": {"python": "/opt/torch/bin/python", "env": {"A": "1"}},
        "*sklearn*": "/usr/bin/python3",
    }
    assert resolve_runtime(table, "123.dkr.ecr/pytorch-training:2.1").python == "/opt/torch/bin/python"
    assert resolve_runtime(table, "sklearn:1").python == "/usr/bin/python3"
    assert resolve_runtime(None, "anything").python == sys.executable
    assert container.python_command(["python3", "x.py"], Runtime("/p/python")) == ["/p/python", "x.py"]
    assert container.python_command(["bash", "x.sh"], Runtime("/p/python")) == ["bash", "x.sh"]


def test_metric_definitions_feed_final_values_and_cloudwatch(aws):
    collector = MetricCollector(
        [{"Name": "loss", "Regex": r"loss=([0-9.]+)"}, {"Name": "acc", "Regex": r"acc: ([0-9.]+)"}],
        aws("cloudwatch"),
        "job-1",
    )
    collector.feed([(100.0, "epoch 1 loss=0.5"), (101.0, "loss=0.25 acc: 0.9"), (102.0, "loss=n/a")])
    collector.flush()
    assert collector.final() == [
        {"MetricName": "acc", "Value": 0.9, "Timestamp": 101.0},
        {"MetricName": "loss", "Value": 0.25, "Timestamp": 101.0},
    ]
    metrics = aws("cloudwatch").list_metrics(Namespace=cloudwatch.METRICS_NAMESPACE)["Metrics"]
    assert {m["MetricName"] for m in metrics} == {"loss", "acc"}
    assert {m["Dimensions"][0]["Value"] for m in metrics} == {"job-1", "job-1/algo-1"}


def test_failure_reason_prefers_output_failure(tmp_path):
    failure = tmp_path / "failure"
    reason = runner.failure_reason(2, ["Traceback", "ValueError: bad"], ["python", "t.py"], failure)
    assert "ExitCode 2" in reason and "ValueError: bad" in reason
    failure.write_text("my own reason\n")
    assert runner.failure_reason(2, [], ["python"], failure) == "my own reason"


_STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
IGNORE = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
child = subprocess.Popen([sys.executable, "-c", IGNORE])
print("child", child.pid, flush=True)
print("ready", flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


@pytest.mark.parametrize(
    ("how", "expected"), [("stop", EndReason.STOPPED), ("deadline", EndReason.MAX_RUNTIME)]
)
def test_process_ignoring_sigterm_is_killed_with_its_children(aws, tmp_path, how, expected):
    sink = LogSink(aws("logs"), "/test", "job/algo-1-1")
    control = Control()
    if how == "deadline":
        control.runtime_deadline = time.monotonic() + 1.0
    else:
        threading.Timer(1.0, control.stop.set).start()
    started = time.monotonic()
    end = process.run_process(
        [sys.executable, "-c", _STUBBORN],
        env=os.environ,
        cwd=tmp_path,
        control=control,
        settings=settings(tmp_path, stop_grace_seconds=0.5),
        sink=sink,
        metrics=None,
    )
    assert end.reason is expected
    assert time.monotonic() - started < 4
    messages = [
        e["message"]
        for e in aws("logs").get_log_events(logGroupName="/test", logStreamName="job/algo-1-1")["events"]
    ]
    assert "ready" in messages
    child = int(next(m for m in messages if m.startswith("child")).split()[1])
    time.sleep(0.2)
    assert not _alive(child)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups are found in /proc")
def test_left_behind_groups_are_ended_by_escalation_but_only_if_still_the_jobs(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUBBORN], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        child = int(proc.stdout.readline().split()[1])
        assert proc.stdout.readline().strip() == "ready"  # SIGTERM is ignored from here on
        group = process.process_group_of(proc.pid)
        assert group.pgid == proc.pid and group.start_ticks is not None
        reused = process.ProcessGroup(proc.pid, group.start_ticks - 1)  # the pid, another process
        process.end_process_groups([reused, process.ProcessGroup(proc.pid, None)], grace_seconds=0.1)
        assert _alive(proc.pid) and _alive(child)
        started = time.monotonic()
        process.end_process_groups([group], grace_seconds=0.3)
        assert 0.3 <= time.monotonic() - started < 2
        proc.wait(timeout=2)
        time.sleep(0.1)
        assert not _alive(child)
    finally:
        proc.kill()
        proc.wait()


def test_run_process_reports_its_group_before_output(aws, tmp_path):
    groups: list[process.ProcessGroup] = []
    process.run_process(
        [sys.executable, "-c", "print('x')"],
        env=os.environ,
        cwd=tmp_path,
        control=Control(),
        settings=settings(tmp_path),
        sink=LogSink(aws("logs"), "/test", "g"),
        metrics=None,
        on_start=groups.append,
    )
    assert len(groups) == 1 and groups[0].pgid > 0


def test_process_output_streams_in_order_with_stderr_tail(aws, tmp_path):
    sink = LogSink(aws("logs"), "/test", "s")
    script = (
        "import sys\nfor i in range(3): print(i, flush=True)\nprint('boom', file=sys.stderr)\nsys.exit(3)"
    )
    end = process.run_process(
        [sys.executable, "-c", script],
        env=os.environ,
        cwd=tmp_path,
        control=Control(),
        settings=settings(tmp_path),
        sink=sink,
        metrics=None,
    )
    assert (end.returncode, end.reason, end.stderr_tail) == (3, None, ["boom"])
    events = aws("logs").get_log_events(logGroupName="/test", logStreamName="s")["events"]
    assert [e["message"] for e in events if e["message"] != "boom"] == ["0", "1", "2"]


def test_processing_without_a_mount_namespace_rewrites_container_paths(aws, tmp_path):
    """The fallback when the OS gives no private mount namespace: paths in arguments and env."""
    s3 = aws("s3")
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="in/data.txt", Body=b"abc")
    script = (
        "import os, pathlib, sys\n"
        "src, dst = sys.argv[1], os.environ['OUT']\n"
        "pathlib.Path(dst, 'copy.txt').write_text(pathlib.Path(src, 'data.txt').read_text().upper())\n"
        "print(sys.argv[1])\n"
    )
    (tmp_path / "script.py").write_text(script)
    request = {
        "ProcessingJobName": "p1",
        "RoleArn": "arn:aws:iam::123456789012:role/r",
        "AppSpecification": {
            "ImageUri": "img",
            "ContainerEntrypoint": ["python3", str(tmp_path / "script.py")],
            "ContainerArguments": ["/opt/ml/processing/input"],
        },
        "Environment": {"OUT": "/opt/ml/processing/output"},
        "ProcessingInputs": [
            {
                "InputName": "in",
                "S3Input": {
                    "S3Uri": "s3://bkt/in",
                    "LocalPath": "/opt/ml/processing/input",
                    "S3DataType": "S3Prefix",
                },
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "out",
                    "S3Output": {
                        "S3Uri": "s3://bkt/out",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
    }
    job_dir = tmp_path / "job"
    result = runner.ProcessingRun(
        request,
        arn="arn:aws:sagemaker:us-east-1:123456789012:processing-job/p1",
        job_dir=job_dir,
        settings=settings(tmp_path, mount_namespace=False),
        runtime=Runtime(),
        clients=aws,
        control=Control(),
        report=lambda event: None,
        credentials_uri="http://127.0.0.1:1/_engine/credentials/p1",
        token="t",
    ).run()
    assert result.outcome is EndReason.COMPLETED
    assert s3.get_object(Bucket="bkt", Key="out/copy.txt")["Body"].read() == b"ABC"
    config = json.loads((job_dir / "config/processingjobconfig.json").read_text())
    assert config["ProcessingJobArn"].endswith("processing-job/p1")
    events = aws("logs").get_log_events(
        logGroupName=cloudwatch.PROCESSING_LOG_GROUP, logStreamName=_only_stream(aws)
    )
    assert [e["message"] for e in events["events"]] == [str(job_dir / "processing/input")]


def _only_stream(aws) -> str:
    streams = aws("logs").describe_log_streams(logGroupName=cloudwatch.PROCESSING_LOG_GROUP)["logStreams"]
    assert len(streams) == 1 and streams[0]["logStreamName"].startswith("p1/algo-1-")
    return streams[0]["logStreamName"]
