"""What the engine accepted outlives a restart with the same data dir: S3, logs, metrics.

The first engine of each test runs as a separate process (so its moto memory really is gone
when it ends: once killed with SIGKILL, once stopped with SIGTERM); the restarted engine runs in
this process, on the same data dir, and is read with real boto3 clients over HTTP.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from jobs_support import training_config, upload_script

from airflow_sm_provider.local import LocalEngine, credentials
from airflow_sm_provider.local.experiment_records import job_component_name
from airflow_sm_provider.local.persistence import BODIES_DIR

pytestmark = pytest.mark.integration

ENGINE_PROCESS = """
import signal, sys, threading
from airflow_sm_provider.local import LocalEngine
engine = LocalEngine(data_dir=sys.argv[1]).start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
print(engine.endpoint_url, flush=True)
stop.wait(600)
engine.stop()
"""

TRAIN = """
import os
for epoch in range(40):
    print(f"epoch={epoch} loss={1.0 / (epoch + 1):.5f}", flush=True)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "weights.bin"), "wb") as out:
    out.write(os.urandom(300_000))
"""


@contextmanager
def engine_process(data_dir: Path) -> Iterator[tuple[subprocess.Popen, SimpleNamespace]]:
    """An engine in its own process on ``data_dir``, and a way to make clients of it."""
    process = subprocess.Popen(
        [sys.executable, "-c", ENGINE_PROCESS, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://"), "the engine did not start"
        key = credentials.read_file(data_dir / credentials.FILE_NAME)
        yield (
            process,
            SimpleNamespace(
                client=lambda service: boto3.client(
                    service,
                    endpoint_url=url,
                    region_name="us-east-1",
                    aws_access_key_id=key.access_key_id,
                    aws_secret_access_key=key.secret_access_key,
                )
            ),
        )
    finally:
        process.kill()
        process.wait()


def _log_messages(logs, group: str, stream: str) -> list[str]:
    """Every event of a stream, oldest first, across pages."""
    messages, token = [], None
    while True:
        page = logs.get_log_events(
            logGroupName=group,
            logStreamName=stream,
            startFromHead=True,
            **({"nextToken": token} if token else {}),
        )
        messages += [event["message"] for event in page["events"]]
        if page["nextForwardToken"] == token:
            return messages
        token = page["nextForwardToken"]


def _wait_completed(sagemaker, name: str) -> dict:
    deadline = time.monotonic() + 120
    while (job := sagemaker.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline, job["SecondaryStatus"]
        time.sleep(0.2)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    return job


def test_a_job_artifact_logs_and_metrics_outlive_a_killed_engine(tmp_path, monkeypatch):
    data_dir, bucket, name = tmp_path / "data", f"persist-{uuid.uuid4().hex[:12]}", "persisted-train"
    with engine_process(data_dir) as (process, remote):
        s3, sagemaker = remote.client("s3"), remote.client("sagemaker")
        s3.create_bucket(Bucket=bucket)
        config = training_config(bucket, upload_script(s3, bucket, TRAIN), name=name)
        config["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "loss", "Regex": r"loss=([0-9.]+)"}]
        sagemaker.create_training_job(**config)
        job = _wait_completed(sagemaker, name)
        artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
        _, _, artifact_bucket, artifact_key = artifact.split("/", 3)
        model_bytes = s3.get_object(Bucket=artifact_bucket, Key=artifact_key)["Body"].read()
        logs = remote.client("logs")
        stream = logs.describe_log_streams(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=name
        )["logStreams"][0]["logStreamName"]
        messages = _log_messages(logs, "/aws/sagemaker/TrainingJobs", stream)
        remote.client("sagemaker-metrics").batch_put_metrics(
            TrialComponentName=job_component_name(name, "training"),
            MetricData=[
                {"MetricName": "acc", "Timestamp": time.time(), "Step": s, "Value": s / 10} for s in range(5)
            ],
        )
        s3.put_object(Bucket=bucket, Key="deleted", Body=b"soon gone")
        s3.delete_object(Bucket=bucket, Key="deleted")
        process.send_signal(signal.SIGKILL)  # no shutdown: only what was written through is left
        process.wait()

    assert [f"epoch={e} loss={1.0 / (e + 1):.5f}" for e in range(40)] == [
        m for m in messages if m.startswith("epoch=")
    ]
    with LocalEngine(data_dir=data_dir) as engine:
        s3 = engine.client("s3")
        assert s3.get_object(Bucket=artifact_bucket, Key=artifact_key)["Body"].read() == model_bytes
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket=bucket, Key="deleted")
        assert _log_messages(engine.client("logs"), "/aws/sagemaker/TrainingJobs", stream) == messages

        # The Run's metrics, by step (BatchGetMetrics, as the trackers read them), and the job's
        # curve as the provider's hook reads it from the kept log.
        monkeypatch.setenv(
            "AIRFLOW_CONN_AWS_DEFAULT",
            json.dumps({"conn_type": "aws", "extra": {"endpoint_url": engine.endpoint_url}}),
        )
        for env_key, value in engine.environ().items():
            monkeypatch.setenv(env_key, value)
        from airflow_sm_provider.hooks.metrics import SageMakerMetricsHook

        hook = SageMakerMetricsHook(aws_conn_id="aws_default", region_name=engine.region)
        component = engine.client("sagemaker").describe_trial_component(
            TrialComponentName=job_component_name(name, "training")
        )
        (series,) = engine.client("sagemaker-metrics").batch_get_metrics(
            MetricQueries=[
                {
                    "MetricName": "acc",
                    "ResourceArn": component["TrialComponentArn"],
                    "MetricStat": "Avg",
                    "Period": "IterationNumber",
                    "XAxisType": "IterationNumber",
                }
            ]
        )["MetricQueryResults"]
        assert (series["XAxisValues"], series["MetricValues"]) == (list(range(5)), [s / 10 for s in range(5)])
        curve = hook.log_series(hook.describe_runs([name])[0])  # the job's log, through its definitions
        assert curve["value"].tolist() == pytest.approx([1.0 / (e + 1) for e in range(40)], abs=1e-5)
        points = engine.client("cloudwatch").get_metric_statistics(
            Namespace="/aws/sagemaker/TrainingJobs",
            MetricName="loss",
            Dimensions=[{"Name": "TrainingJobName", "Value": name}],
            StartTime=job["TrainingStartTime"].timestamp() - 120,
            EndTime=time.time() + 120,
            Period=60,
            Statistics=["SampleCount", "Minimum"],
        )["Datapoints"]
        assert sum(p["SampleCount"] for p in points) == 40
        assert min(p["Minimum"] for p in points) == pytest.approx(1 / 40, abs=1e-5)
        described = engine.client("sagemaker").describe_training_job(TrainingJobName=name)
        assert described["TrainingJobStatus"] == "Completed"


WEIRD_KEYS = [
    "../../escaped.txt",
    "/etc/absolute",
    "a/../../../b",
    "..",
    "nul\x00byte",
    "é/ü/日本",
    "k" * 1024,
]


def test_objects_deletions_and_odd_keys_outlive_a_stopped_engine(tmp_path):
    data_dir = tmp_path / "data"
    bucket, gone_bucket = f"persist-{uuid.uuid4().hex[:12]}", f"persist-gone-{uuid.uuid4().hex[:8]}"
    versioned = f"persist-versioned-{uuid.uuid4().hex[:8]}"
    multipart = os.urandom(6 * 1024 * 1024)
    with engine_process(data_dir) as (process, remote):
        s3 = remote.client("s3")
        s3.create_bucket(Bucket=bucket)
        for key in WEIRD_KEYS:
            s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        s3.put_object(
            Bucket=bucket, Key="doc.json", Body=b"{}", ContentType="application/json", Metadata={"run": "r1"}
        )
        s3.put_object(Bucket=bucket, Key="overwritten", Body=b"first")
        s3.put_object(Bucket=bucket, Key="overwritten", Body=b"second")
        s3.put_object(Bucket=bucket, Key="batch-deleted", Body=b"x")
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "batch-deleted"}]})
        s3.upload_fileobj(
            io.BytesIO(multipart),
            bucket,
            "multipart.bin",
            Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024),
        )
        s3.put_object_tagging(Bucket=bucket, Key="doc.json", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
        s3.create_bucket(Bucket=versioned)
        s3.put_bucket_versioning(Bucket=versioned, VersioningConfiguration={"Status": "Enabled"})
        first_version = s3.put_object(Bucket=versioned, Key="v", Body=b"one")["VersionId"]
        s3.create_bucket(Bucket=gone_bucket)
        s3.put_object(Bucket=gone_bucket, Key="x", Body=b"x")
        s3.delete_object(Bucket=gone_bucket, Key="x")
        s3.delete_bucket(Bucket=gone_bucket)
        before = {
            key: s3.head_object(Bucket=bucket, Key=key)
            for key in ["doc.json", "multipart.bin", "overwritten"]
        }
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0

    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing written beside the data dir
    bodies = [p for p in (data_dir / BODIES_DIR).rglob("*") if p.is_file()]
    assert all(
        re.fullmatch(r"[0-9a-f]{32}", p.name) and p.parent.parent == data_dir / BODIES_DIR for p in bodies
    )
    assert len(bodies) == len(WEIRD_KEYS) + 4  # one body per live object: overwritten bodies removed
    orphan = data_dir / BODIES_DIR / "ff" / ("f" * 32)  # a body whose row a crash kept from being written
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"orphan")

    with LocalEngine(data_dir=data_dir) as engine:
        s3 = engine.client("s3")
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        assert sorted(listed) == sorted([*WEIRD_KEYS, "doc.json", "overwritten", "multipart.bin"])
        assert s3.get_object(Bucket=versioned, Key="v")["VersionId"] == first_version
        for key in WEIRD_KEYS:
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
        doc = s3.get_object(Bucket=bucket, Key="doc.json")
        assert (doc["ContentType"], doc["Metadata"], doc["Body"].read()) == (
            "application/json",
            {"run": "r1"},
            b"{}",
        )
        for key, head in before.items():
            after = s3.head_object(Bucket=bucket, Key=key)
            assert (after["ETag"], after["LastModified"], after["ContentLength"]) == (
                head["ETag"],
                head["LastModified"],
                head["ContentLength"],
            )
        assert before["multipart.bin"]["ETag"].endswith('-2"')
        assert (
            s3.get_object(Bucket=bucket, Key="multipart.bin", Range="bytes=5242870-5242889")["Body"].read()
            == (multipart[5242870:5242890])
        )
        assert s3.get_object(Bucket=bucket, Key="overwritten")["Body"].read() == b"second"
        assert s3.get_object_tagging(Bucket=bucket, Key="doc.json")["TagSet"] == [{"Key": "t", "Value": "1"}]
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket=bucket, Key="batch-deleted")
        assert gone_bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        # A restored object overwritten and deleted after the restart: written through as before.
        s3.put_object(Bucket=bucket, Key="overwritten", Body=b"third")
        s3.delete_object(Bucket=bucket, Key="doc.json")
        # Only the current version is kept on disk; the older one moto holds stays readable.
        assert s3.get_bucket_versioning(Bucket=versioned)["Status"] == "Enabled"
        s3.put_object(Bucket=versioned, Key="v", Body=b"two")
        assert s3.get_object(Bucket=versioned, Key="v")["Body"].read() == b"two"
        assert s3.get_object(Bucket=versioned, Key="v", VersionId=first_version)["Body"].read() == b"one"
    bodies = [p for p in (data_dir / BODIES_DIR).rglob("*") if p.is_file()]
    assert not orphan.exists() and len(bodies) == len(WEIRD_KEYS) + 3


def test_a_write_the_mirror_cannot_keep_is_refused_and_the_kept_object_stays_whole(tmp_path, monkeypatch):
    """The disk failing (simulated: the body copy raises) fails the request; the object kept
    before stays on disk whole, and the next write goes through."""
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from airflow_sm_provider.local.persistence import DB_NAME, AwsMirror

    bucket = f"persist-{uuid.uuid4().hex[:12]}"
    with LocalEngine(data_dir=tmp_path) as engine:
        s3 = engine.client("s3")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
        copy_body = AwsMirror._copy_body

        def disk_full(self, fake_key):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(AwsMirror, "_copy_body", disk_full)
        once = boto3.client(
            "s3",
            endpoint_url=engine.endpoint_url,
            region_name=engine.region,
            aws_access_key_id=engine.credentials.access_key_id,
            aws_secret_access_key=engine.credentials.secret_access_key,
            config=Config(retries={"max_attempts": 1}),
        )
        with pytest.raises(ClientError):  # the server's 500
            once.put_object(Bucket=bucket, Key="k", Body=b"lost")
        db = sqlite3.connect(tmp_path / DB_NAME)
        (file,) = db.execute(
            "SELECT file FROM s3_objects WHERE bucket = ? AND key = 'k'", (bucket,)
        ).fetchone()
        assert (tmp_path / BODIES_DIR / file[:2] / file).read_bytes() == b"kept"
        monkeypatch.setattr(AwsMirror, "_copy_body", copy_body)
        s3.put_object(Bucket=bucket, Key="k", Body=b"written")
        (file,) = db.execute(
            "SELECT file FROM s3_objects WHERE bucket = ? AND key = 'k'", (bucket,)
        ).fetchone()
        assert (tmp_path / BODIES_DIR / file[:2] / file).read_bytes() == b"written"
        db.close()
