"""Bad input outside a job's config: code folders and archives, log bytes, command-line JSON.

Each is refused with an error naming what is wrong before anything is uploaded or started,
or (for what only a running job can meet) handled without losing the job or its lines.
"""

from __future__ import annotations

import io
import tarfile
import time
import uuid
from pathlib import Path

import pytest
from jobs_support import training_config, upload_script

from airflow_sm_provider.cli import build_parser
from airflow_sm_provider.hooks.code import CodeStager
from airflow_sm_provider.local import transfer
from airflow_sm_provider.local.errors import JobFailure


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A source folder with a script, next to a file it must never carry (a fake credential)."""
    (tmp_path / "credentials").write_text("aws_secret_access_key = FAKESECRETdoNotLeak0123456789\n")
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "train.py").write_text("print('hello')\n")
    return folder


@pytest.mark.integration
@pytest.mark.parametrize("link", ["file", "dir"])
def test_source_dir_with_a_symlink_is_refused_and_nothing_uploaded(engine, aws_env, s3_bucket, source, link):
    """Before, the link was followed: the file outside the folder went into sourcedir.tar.gz."""
    if link == "file":
        (source / "config.txt").symlink_to(source.parent / "credentials")
    else:
        (source / "lib").symlink_to(source.parent, target_is_directory=True)
    name = "config.txt" if link == "file" else "lib"
    with pytest.raises(ValueError, match=rf"{name} is a symbolic link"):
        CodeStager(s3_bucket, "code", aws_conn_id=None).source_dir(source)
    assert engine.client("s3").list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0


def test_archive_member_that_is_a_hard_link_is_refused(tmp_path: Path):
    """A hard link member would make the extracted file an alias of another path."""
    path = tmp_path / "src.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        target = tarfile.TarInfo("train.py")
        target.size = 1
        tar.addfile(target, io.BytesIO(b"x"))
        link = tarfile.TarInfo("alias.py")
        link.type, link.linkname = tarfile.LNKTYPE, "train.py"
        tar.addfile(link)
    with pytest.raises(JobFailure, match=r"'alias\.py' is not a plain file"):
        transfer.extract_archive(path, tmp_path / "code")
    assert not (tmp_path / "code" / "alias.py").exists()


@pytest.mark.parametrize(
    ("conf", "message"),
    [("{grid: [0.1]", "not valid JSON"), ('["grid"]', "must be a JSON object"), ("", "not valid JSON")],
)
def test_demo_conf_that_does_not_parse_is_an_error_naming_the_option(capsys, conf, message):
    """Before, a traceback from json.loads; now argparse's usage error, before anything starts."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["demo", "--conf", conf])
    assert exit_info.value.code == 2
    assert f"argument --conf: {message}" in capsys.readouterr().err


NON_UTF8_SCRIPT = """
import sys
for epoch in range(3):
    sys.stdout.buffer.write(b"epoch=%d loss=0.5 \\xff\\xfe bad bytes \\xc3\\x28\\n" % epoch)
    sys.stdout.buffer.flush()
"""


@pytest.mark.integration
def test_non_utf8_log_lines_keep_the_job_its_lines_and_its_metrics(engine, s3_bucket):
    s3, sm, logs = engine.client("s3"), engine.client("sagemaker"), engine.client("logs")
    name = f"nonutf8-{uuid.uuid4().hex[:8]}"
    config = training_config(s3_bucket, upload_script(s3, s3_bucket, NON_UTF8_SCRIPT), name=name)
    config["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "loss", "Regex": r"loss=([0-9.]+)"}]
    sm.create_training_job(**config)
    deadline = time.monotonic() + 120
    while (job := sm.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=name)
    lines = [
        event["message"]
        for stream in streams["logStreams"]
        for event in logs.get_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream["logStreamName"]
        )["events"]
    ]
    bad = [line for line in lines if "bad bytes" in line]
    assert len(bad) == 3 and all("\ufffd" in line for line in bad)  # replaced, not dropped
    assert [m["MetricName"] for m in job["FinalMetricDataList"]] == ["loss"]
