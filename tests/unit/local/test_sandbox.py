"""What a local job cannot reach past: its output is kept whole, its regexes are bounded, its
uploads stay in its directory, its processes end with it. Real moto backends (in-process) and
real processes; no mocks."""

from __future__ import annotations

import datetime
import math
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from airflow_sm_provider.local import container, process, transfer
from airflow_sm_provider.local.cloudwatch import METRICS_NAMESPACE, LogSink, MetricCollector
from airflow_sm_provider.local.control import Control, EndReason, RunSettings
from airflow_sm_provider.local.errors import JobFailure

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="processes are found in /proc")


@pytest.fixture
def aws():
    with mock_aws():
        yield lambda service: boto3.client(
            service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
        )


def _settings(tmp_path: Path, **kw) -> RunSettings:
    return RunSettings(endpoint_url="http://127.0.0.1:1", region="us-east-1", data_dir=tmp_path, **kw)


def _messages(logs, stream: str) -> list[str]:
    """Every event of a stream, following the pages."""
    out, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        page = logs.get_log_events(logGroupName="/test", logStreamName=stream, startFromHead=True, **kw)
        out += [e["message"] for e in page["events"]]
        if not page["events"] or page["nextForwardToken"] == token:
            return out
        token = page["nextForwardToken"]


def _run(aws, tmp_path, script: str, *, metrics=None, control=None, namespaces=False, grace=0.5):
    sink = LogSink(aws("logs"), "/test", "s")
    prefix = container.init_prefix(grace)
    if namespaces:
        prefix = container.namespace_prefix(str(tmp_path)) + prefix
    end = process.run_process(
        [*prefix, sys.executable, "-c", script],
        env=os.environ,
        cwd=tmp_path,
        control=control or Control(),
        settings=_settings(tmp_path, stop_grace_seconds=grace),
        sink=sink,
        metrics=metrics,
    )
    return end, _messages(aws("logs"), "s")


# -- every line, in order, and the final metrics --------------------------------------------
BURST = """
import sys
out = sys.stdout
for i in range(20000):
    out.write(f"line {i} " + "x" * 60 + "\\n")
out.write("acc=0.99\\n")
"""


def test_a_burst_before_exit_keeps_every_line_and_the_final_metric(aws, tmp_path):
    """Used to keep ~6,000-10,000 of the 20,001 lines and no acc: reading stopped 2 s after exit."""
    metrics = MetricCollector([{"Name": "acc", "Regex": r"acc=(\S+)"}], aws("cloudwatch"), "burst")
    end, lines = _run(aws, tmp_path, BURST, metrics=metrics)
    assert end.returncode == 0
    assert len(lines) == 20001
    assert lines[:2] == [f"line {i} " + "x" * 60 for i in range(2)] and lines[-1] == "acc=0.99"
    assert [int(line.split()[1]) for line in lines[:-1]] == list(range(20000))
    assert [(m["MetricName"], m["Value"]) for m in metrics.final()] == [("acc", 0.99)]


def test_log_batches_stay_within_cloudwatch_limits(aws):
    sent: list[list[dict]] = []
    logs = aws("logs")
    sink = LogSink(logs, "/test", "big")
    real = logs.put_log_events
    logs.put_log_events = lambda **kw: sent.append(kw["logEvents"]) or real(**kw)
    sink.write([(1.0, "y" * 200_000)] * 12 + [(2.0, "z")] * 15_000 + [(3.0, "é" * 200_000)])
    assert sum(map(len, sent)) == 12 + 15_000 + 1
    for batch in sent:
        assert len(batch) <= 10_000
        assert sum(len(e["message"].encode()) + 26 for e in batch) <= 1_048_576


# -- bounded regexes -----------------------------------------------------------------------
CATASTROPHIC = {"Name": "stall", "Regex": r"x=((a|aa)+)$"}


def test_a_catastrophic_definition_is_disabled_named_once_and_the_others_go_on(aws):
    """``re`` took minutes on this line, holding the interpreter (every API call waited)."""
    metrics = MetricCollector(
        [CATASTROPHIC, {"Name": "loss", "Regex": r"loss=([\d.]+)"}], aws("cloudwatch"), "j", timeout=0.1
    )
    started = time.monotonic()
    notices = metrics.feed([(1.0, "x=" + "a" * 60 + "!"), (2.0, "loss=0.5")])
    notices += metrics.feed([(3.0, "x=" + "a" * 60 + "!"), (4.0, "loss=0.25")])
    assert time.monotonic() - started < 2
    assert len(notices) == 1 and "'stall'" in notices[0] and "time budget" in notices[0]
    assert [(m["MetricName"], m["Value"]) for m in metrics.final()] == [("loss", 0.25)]


def test_a_definition_that_breaks_the_rules_is_skipped_and_named(aws):
    metrics = MetricCollector(
        [{"Name": "nogroup", "Regex": r"loss=\d+"}, {"Name": "loss", "Regex": r"loss=(\d+)"}],
        aws("cloudwatch"),
        "j",
    )
    notices = metrics.feed([(1.0, "loss=3")])
    assert len(notices) == 1 and "'nogroup'" in notices[0] and "capture group" in notices[0]
    assert metrics.final()[0]["Value"] == 3.0


# -- final values and CloudWatch's one point per minute ----------------------------------------
def test_final_metric_is_the_last_value_printed_even_nan(aws):
    """It used to be the last finite value: a run that diverged looked healthy."""
    metrics = MetricCollector([{"Name": "loss", "Regex": r"loss=(\S+)"}], aws("cloudwatch"), "j")
    metrics.feed([(1.0, "loss=0.5"), (2.0, "loss=0.25"), (3.0, "loss=nan")])
    metrics.flush()
    (final,) = metrics.final()
    assert math.isnan(final["Value"]) and final["Timestamp"] == 3.0
    assert [p["Value"] for p in metrics.points] == [0.5, 0.25]  # CloudWatch refuses non-finite values


def test_cloudwatch_answers_one_aggregated_point_per_minute_per_dimension(aws):
    cloudwatch = aws("cloudwatch")
    metrics = MetricCollector([{"Name": "loss", "Regex": r"loss=(\S+)"}], cloudwatch, "job-m")
    start = 1_800_000_000  # a minute boundary (divisible by 60)
    # 600 epochs over two minutes, flushed in several parts as the engine does
    lines = [(start + i * 0.2, f"loss={i}") for i in range(600)]
    for part in range(0, 600, 50):
        metrics.feed(lines[part : part + 50])
        metrics.flush(final=False)
    metrics.flush()
    for dimension in (
        {"Name": "TrainingJobName", "Value": "job-m"},
        {"Name": "Host", "Value": "job-m/algo-1"},
    ):
        points = cloudwatch.get_metric_statistics(
            Namespace=METRICS_NAMESPACE,
            MetricName="loss",
            Dimensions=[dimension],
            StartTime=datetime.datetime.fromtimestamp(start - 60, datetime.UTC),
            EndTime=datetime.datetime.fromtimestamp(start + 300, datetime.UTC),
            Period=60,
            Statistics=["Average", "SampleCount", "Maximum"],
        )["Datapoints"]
        points.sort(key=lambda p: p["Timestamp"])
        assert [p["Timestamp"].timestamp() for p in points] == [start + 59, start + 119]
        assert [(p["SampleCount"], p["Average"], p["Maximum"]) for p in points] == [
            (300, 149.5, 299),
            (300, 449.5, 599),
        ]


# -- uploads stay in the job directory -------------------------------------------------------
def _job_dir(tmp_path: Path) -> Path:
    root = tmp_path / "job"
    (root / "model/sub").mkdir(parents=True)
    (root / "model/weights.bin").write_bytes(b"w")
    (root / "model/sub/more.txt").write_text("m")
    return root


@linux_only
def test_links_inside_an_output_are_skipped_and_named(aws, tmp_path):
    """A link to /etc (file or directory) used to put host files in model.tar.gz."""
    s3 = aws("s3")
    s3.create_bucket(Bucket="bkt")
    root = _job_dir(tmp_path)
    (root / "model/etc").symlink_to("/etc")
    (root / "model/passwd").symlink_to("/etc/passwd")
    (root / "model/inside").symlink_to(root / "model/weights.bin")
    os.mkfifo(root / "model/fifo")  # reading it would block the upload
    skipped = transfer.upload_tar(
        s3, root / "model", "s3://bkt/out/model.tar.gz", root / ".upload", root=root
    )
    assert sorted(skipped) == ["etc", "fifo", "inside", "passwd"]
    (tmp_path / "m.tgz").write_bytes(s3.get_object(Bucket="bkt", Key="out/model.tar.gz")["Body"].read())
    with tarfile.open(tmp_path / "m.tgz") as tar:
        assert sorted(tar.getnames()) == ["sub/more.txt", "weights.bin"]
    skipped = transfer.upload_dir(s3, root / "model", "s3://bkt/dir", {}, root=root)
    assert sorted(skipped) == ["etc", "fifo", "inside", "passwd"]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="bkt", Prefix="dir/")["Contents"])
    assert keys == ["dir/sub/more.txt", "dir/weights.bin"]


@linux_only
@pytest.mark.parametrize("linked", ["model", "output"])
def test_an_output_directory_that_is_or_lies_behind_a_link_fails_the_job(aws, tmp_path, linked):
    """SM_MODEL_DIR replaced by a link to /etc; a processing output behind a linked parent."""
    s3 = aws("s3")
    s3.create_bucket(Bucket="bkt")
    root = _job_dir(tmp_path)
    (tmp_path / "elsewhere/data").mkdir(parents=True)
    (tmp_path / "elsewhere/data/host.txt").write_text("host")
    if linked == "model":
        os.rename(root / "model", tmp_path / "old-model")
        (root / "model").symlink_to("/etc")
        src = root / "model"
    else:
        (root / "output").symlink_to(tmp_path / "elsewhere")
        src = root / "output/data"
    with pytest.raises(JobFailure, match="symbolic link"):
        transfer.upload_dir(s3, src, "s3://bkt/p", {}, root=root)
    with pytest.raises(JobFailure, match="symbolic link"):
        transfer.upload_tar(s3, src, "s3://bkt/m.tar.gz", root / ".upload", root=root)
    assert "Contents" not in s3.list_objects_v2(Bucket="bkt")


# -- no process outlives its job -------------------------------------------------------------
DETACHING = """
import subprocess, sys, time
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
daemon = subprocess.Popen([sys.executable, "-c", code, "MARKER"], start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("started", flush=True)
%s
"""


def _marked(marker: str) -> list[int]:
    """Live processes whose command line holds ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and marker.encode() in (entry / "cmdline").read_bytes()
                and (entry / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
            ):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@linux_only
@pytest.mark.parametrize("namespaces", [False, True], ids=["subreaper", "pid-namespace"])
@pytest.mark.parametrize("how", ["exit", "stop"])
def test_a_detached_grandchild_ends_with_its_job(aws, tmp_path, namespaces, how):
    """A ``setsid`` daemon used to survive both the job's end and StopTrainingJob."""
    if namespaces and not container.namespaces_available():
        pytest.skip("no mount and PID namespaces here")
    marker = f"MARKER-{how}-{namespaces}-{os.getpid()}"
    control = Control()
    detached: list[int] = []

    def stop_once_detached() -> None:
        deadline = time.monotonic() + 30
        while not (seen := _marked(marker)) and time.monotonic() < deadline:
            time.sleep(0.05)
        detached.extend(seen)
        control.stop.set()

    if how == "stop":
        threading.Thread(target=stop_once_detached, daemon=True).start()
    started = time.monotonic()
    end, lines = _run(
        aws,
        tmp_path,
        DETACHING.replace("MARKER", marker) % ("time.sleep(60)" if how == "stop" else ""),
        control=control,
        namespaces=namespaces,
    )
    assert detached if how == "stop" else "started" in lines
    assert end.reason is (EndReason.STOPPED if how == "stop" else None)
    assert time.monotonic() - started < 30
    deadline = time.monotonic() + 2
    while _marked(marker):
        assert time.monotonic() < deadline, "the detached grandchild outlived its job"
        time.sleep(0.05)


@linux_only
def test_jobinit_passes_sigterm_on_and_exits_with_the_commands_status(tmp_path):
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
        "print('up', flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen(
        [*container.init_prefix(5), sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "up"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 7
    missing = subprocess.run(
        [*container.init_prefix(1), "no-such-command-here"], capture_output=True, text=True
    )
    assert missing.returncode == 127 and "no-such-command-here" in missing.stderr


@linux_only
def test_in_its_namespaces_a_job_sees_only_its_own_processes(aws, tmp_path):
    """A job used to read ``/proc/<engine pid>/environ`` (the engine's secrets)."""
    if not container.namespaces_available():
        pytest.skip("no mount and PID namespaces here")
    engine = os.getpid()  # the engine's process is this test's
    assert engine > 3
    script = (
        "import os\n"
        "print('pids', *sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
        "try:\n"
        f"    open('/proc/{engine}/environ', 'rb').read()\n"
        "    print('engine environ read')\n"
        "except OSError as err:\n"
        "    print('engine environ', type(err).__name__)\n"
        "print('ppid', os.getppid())\n"
    )
    end, lines = _run(aws, tmp_path, script, namespaces=True)
    assert end.returncode == 0, lines
    pids = [int(p) for p in next(line for line in lines if line.startswith("pids")).split()[1:]]
    assert pids[0] == 1 and len(pids) <= 3  # jobinit, the job, maybe a process being reaped
    assert "engine environ FileNotFoundError" in lines
    assert "ppid 1" in lines  # the job's parent is jobinit, PID 1 of its namespace


def test_a_large_output_goes_up_in_one_streamed_put(aws, tmp_path):
    """boto3's default (8 MiB parts, ten threads) left ~200 MB of a 300 MB model in the engine's
    heap (its S3 is moto, in-process); one streamed PUT measured 60-80 MB (see transfer.py)."""
    s3 = aws("s3")
    s3.create_bucket(Bucket="bkt")
    root = tmp_path / "job"
    (root / "model").mkdir(parents=True)
    (root / "model/big.bin").write_bytes(os.urandom(20 * 1024 * 1024))
    calls: list[str] = []
    s3.meta.events.register("before-call.s3.*", lambda model, **kw: calls.append(model.name))
    transfer.upload_tar(s3, root / "model", "s3://bkt/m/model.tar.gz", root / ".upload", root=root)
    transfer.upload_dir(s3, root / "model", "s3://bkt/d", {}, root=root)
    assert calls == ["PutObject", "PutObject"]
    assert s3.head_object(Bucket="bkt", Key="d/big.bin")["ContentLength"] == 20 * 1024 * 1024
