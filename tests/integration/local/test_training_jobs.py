"""Training jobs through the engine over HTTP, with boto3 as a user's code would call it."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from jobs_support import upload_script
from sandbox_support import job_pids

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
TERMINAL = {"Completed", "Failed", "Stopped"}


def _name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _config(name: str, bucket: str, code_uri: str, **overrides) -> dict:
    config = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": "local/python:3", "TrainingInputMode": "File"},
        "HyperParameters": {
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(code_uri),
        },
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }
    config.update(overrides)
    return config


def _wait(sm, name: str, timeout: float = 60, until=TERMINAL) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = sm.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] in until or job["SecondaryStatus"] in until:
            return job
        assert time.monotonic() < deadline, f"{name} still {job['SecondaryStatus']}"
        time.sleep(0.05)


def _log_lines(logs, name: str) -> list[str]:
    streams = logs.describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=name + "/"
    )
    lines: list[str] = []
    for stream in streams["logStreams"]:
        events = logs.get_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs",
            logStreamName=stream["logStreamName"],
            startFromHead=True,
        )["events"]
        lines += [e["message"] for e in events]
    return lines


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] == "Z"


CONTRACT_SCRIPT = """
import argparse, json, os, pathlib, sys
import boto3
p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int)
p.add_argument("--optimizer")
args = p.parse_args()
env = os.environ
assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
train = pathlib.Path(env["SM_CHANNEL_TRAIN"])
print("files", sorted(f.name for f in train.iterdir()))
print("hps", env["SM_HPS"], env["SM_HP_EPOCHS"], env["SM_CHANNELS"], env["SM_CURRENT_HOST"], env["SM_HOSTS"])
config = pathlib.Path(env["SM_INPUT_CONFIG_DIR"])
print("resource", json.loads((config / "resourceconfig.json").read_text())["current_host"])
print("inputs", sorted(json.loads((config / "inputdataconfig.json").read_text())))
print("arn", env["TRAINING_JOB_ARN"], env["TRAINING_JOB_NAME"])
for epoch in range(args.epochs):
    print(f"epoch={epoch} loss={1.0 / (epoch + 1):.4f}")
pathlib.Path(env["SM_MODEL_DIR"], "model.json").write_text(json.dumps({"optimizer": args.optimizer}))
pathlib.Path(env["SM_OUTPUT_DATA_DIR"], "report.txt").write_text("done")
# the job's own AWS access: engine endpoint, container credentials scoped to this job
s3 = boto3.client("s3")
bucket = env["RESULT_BUCKET"]
s3.put_object(Bucket=bucket, Key="from-job.txt", Body=b"hello")
creds = boto3.Session().get_credentials()
print("credential method", creds.method)
print("stderr line", file=sys.stderr)
"""


def test_training_job_follows_the_sagemaker_contract(engine, s3_bucket):
    s3, sm, logs = engine.client("s3"), engine.client("sagemaker"), engine.client("logs")
    s3.put_object(Bucket=s3_bucket, Key="data/train/a.csv", Body=b"1,2\n")
    s3.put_object(Bucket=s3_bucket, Key="data/train/sub/b.csv", Body=b"3,4\n")
    name = _name()
    config = _config(
        name,
        s3_bucket,
        upload_script(s3, s3_bucket, CONTRACT_SCRIPT),
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{s3_bucket}/data/train"}
                },
            }
        ],
        Environment={"RESULT_BUCKET": s3_bucket},
        Tags=[{"Key": "team", "Value": "ml"}],
    )
    config["HyperParameters"].update({"epochs": "3", "optimizer": json.dumps("adam")})
    config["AlgorithmSpecification"]["MetricDefinitions"] = [
        {"Name": "train:loss", "Regex": r"loss=([0-9.]+)"}
    ]
    arn = sm.create_training_job(**config)["TrainingJobArn"]
    job = _wait(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert job["TrainingStartTime"] <= job["TrainingEndTime"]
    assert job["TrainingTimeInSeconds"] >= 1 and job["BillableTimeInSeconds"] >= 1
    assert job["FinalMetricDataList"][0]["MetricName"] == "train:loss"
    assert job["FinalMetricDataList"][0]["Value"] == pytest.approx(0.3333)
    model_uri = f"s3://{s3_bucket}/output/{name}/output/model.tar.gz"
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == model_uri
    model = s3.get_object(Bucket=s3_bucket, Key=f"output/{name}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(model)) as tar:
        assert json.load(tar.extractfile("model.json")) == {"optimizer": "adam"}
    s3.head_object(Bucket=s3_bucket, Key=f"output/{name}/output/output.tar.gz")
    assert s3.get_object(Bucket=s3_bucket, Key="from-job.txt")["Body"].read() == b"hello"

    lines = _log_lines(logs, name)
    assert "files ['a.csv', 'sub']" in lines
    assert f"arn {arn} {name}" in lines
    assert "resource algo-1" in lines and "inputs ['train']" in lines
    assert 'hps {"epochs": 3, "optimizer": "adam"} 3 ["train"] algo-1 ["algo-1"]' in lines
    assert "credential method container-role" in lines
    assert "stderr line" in lines
    stream = logs.describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=name + "/"
    )
    assert stream["logStreams"][0]["logStreamName"].startswith(f"{name}/algo-1-")

    points = engine.client("cloudwatch").get_metric_statistics(
        Namespace="/aws/sagemaker/TrainingJobs",
        MetricName="train:loss",
        Dimensions=[{"Name": "TrainingJobName", "Value": name}],
        StartTime=job["TrainingStartTime"].timestamp() - 120,
        EndTime=job["TrainingEndTime"].timestamp() + 120,
        Period=60,
        Statistics=["Average"],
    )["Datapoints"]
    assert points

    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "ml"}]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "stage", "Value": "dev"}])
    sm.delete_tags(ResourceArn=arn, TagKeys=["team"])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "stage", "Value": "dev"}]


STUBBORN_SCRIPT = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
child = subprocess.Popen([sys.executable, "-c", code])
print("pids", __import__("os").getpid(), child.pid, flush=True)
time.sleep(120)
"""


def test_stop_ends_a_sigterm_ignoring_job_and_its_children(engine, s3_bucket):
    """The outcome is asserted (Stopped, every process gone); the time bound is only a timeout."""
    s3, sm, logs = engine.client("s3"), engine.client("sagemaker"), engine.client("logs")
    name = _name()
    sm.create_training_job(**_config(name, s3_bucket, upload_script(s3, s3_bucket, STUBBORN_SCRIPT)))
    _wait(sm, name, until={"Training"})
    deadline = time.monotonic() + 10
    while not any(line.startswith("pids") for line in _log_lines(logs, name)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    pids = job_pids(name)  # host ids: inside its PID namespace the job sees others
    assert len(pids) >= 2
    sm.stop_training_job(TrainingJobName=name)
    assert sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] in {"Stopping", "Stopped"}
    job = _wait(sm, name, timeout=60)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert all(_pid_gone(pid) for pid in pids)
    with pytest.raises(ClientError) as err:
        sm.stop_training_job(TrainingJobName=name)
    assert err.value.response["Error"]["Code"] == "ValidationException"


@pytest.mark.parametrize(
    ("overrides", "secondary"),
    [
        ({"StoppingCondition": {"MaxRuntimeInSeconds": 1}}, "MaxRuntimeExceeded"),
        (
            {
                "EnableManagedSpotTraining": True,
                "StoppingCondition": {"MaxRuntimeInSeconds": 1, "MaxWaitTimeInSeconds": 1},
            },
            "MaxWaitTimeExceeded",
        ),
    ],
)
def test_time_limits_are_enforced(engine, s3_bucket, overrides, secondary):
    s3, sm = engine.client("s3"), engine.client("sagemaker")
    name = _name()
    code = upload_script(s3, s3_bucket, "import time\ntime.sleep(60)\n")
    sm.create_training_job(**_config(name, s3_bucket, code, **overrides))
    job = _wait(sm, name, timeout=15)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", secondary)


def test_experiment_config_links_the_job_to_its_run(engine, s3_bucket):
    s3, sm = engine.client("s3"), engine.client("sagemaker")
    code = upload_script(s3, s3_bucket, "print('ok')\n")
    experiment = _name("exp")
    sm.create_experiment(ExperimentName=experiment)
    name = _name()
    config = {"ExperimentName": experiment, "RunName": "Run-1"}
    arn = sm.create_training_job(**_config(name, s3_bucket, code, ExperimentConfig=config))["TrainingJobArn"]
    job = _wait(sm, name)
    assert job["ExperimentConfig"]["RunName"] == f"{experiment}-run-1"
    components = sm.list_trial_components(SourceArn=arn)["TrialComponentSummaries"]
    assert [c["TrialComponentName"] for c in components] == [f"{name}-aws-training-job"]
    component = sm.describe_trial_component(TrialComponentName=f"{name}-aws-training-job")
    assert component["Status"]["PrimaryStatus"] == "Completed"
    assert (
        component["OutputArtifacts"]["SageMaker.ModelArtifact"]["Value"]
        == job["ModelArtifacts"]["S3ModelArtifacts"]
    )

    missing = _name()
    bad = {"ExperimentName": experiment, "TrialName": "no-such-trial"}
    assert _error(lambda: sm.create_training_job(**_config(missing, s3_bucket, code, ExperimentConfig=bad)))[
        0
    ] == ("ResourceNotFound")
    assert _error(lambda: sm.describe_training_job(TrainingJobName=missing))[0] == "ValidationException"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            "import sys\nprint('about to fail', file=sys.stderr)\nsys.exit(3)\n",
            ["ExitCode 3", "about to fail"],
        ),
        (
            "import os\nopen('/opt/ml/output/failure' if os.path.isdir('/opt/ml/output') and "
            "os.environ['SM_OUTPUT_DIR'] == '/opt/ml/output' else os.path.join(os.environ['SM_OUTPUT_DIR'], "
            "'failure'), 'w').write('bad hyperparameter: lr')\nraise SystemExit(1)\n",
            ["bad hyperparameter: lr"],
        ),
    ],
)
def test_failure_reason_says_why(engine, s3_bucket, script, expected):
    s3, sm = engine.client("s3"), engine.client("sagemaker")
    name = _name()
    sm.create_training_job(**_config(name, s3_bucket, upload_script(s3, s3_bucket, script)))
    job = _wait(sm, name)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Failed", "Failed")
    for fragment in expected:
        assert fragment in job["FailureReason"]
    assert "TrainingStartTime" in job and "TrainingEndTime" in job


def test_empty_s3_prefix_is_accepted_then_fails_while_downloading(engine, s3_bucket):
    s3, sm = engine.client("s3"), engine.client("sagemaker")
    name = _name()
    channel = {
        "ChannelName": "train",
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{s3_bucket}/nothing/here"}},
    }
    code = upload_script(s3, s3_bucket, "print('never')\n")
    sm.create_training_job(**_config(name, s3_bucket, code, InputDataConfig=[channel]))
    job = _wait(sm, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]][-2:] == ["Downloading", "Failed"]
    assert f'No S3 objects found under S3 URL "s3://{s3_bucket}/nothing/here"' in job["FailureReason"]


def _error(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def test_a_taken_name_is_resource_in_use(engine, s3_bucket):
    s3, sm = engine.client("s3"), engine.client("sagemaker")
    code = upload_script(s3, s3_bucket, "print('ok')\n")
    name = _name()
    sm.create_training_job(**_config(name, s3_bucket, code))
    code_, message = _error(lambda: sm.create_training_job(**_config(name, s3_bucket, code)))
    assert code_ == "ResourceInUse"
    assert "Training job names must be unique" in message and name.lower() in message
    _wait(sm, name)


SERVICE_RULE_BREAKS = {
    "too long runtime": {"StoppingCondition": {"MaxRuntimeInSeconds": 28 * 24 * 3600 + 1}},
    "wait without spot": {"StoppingCondition": {"MaxRuntimeInSeconds": 10, "MaxWaitTimeInSeconds": 20}},
    "spot wait below runtime": {
        "EnableManagedSpotTraining": True,
        "StoppingCondition": {"MaxRuntimeInSeconds": 100, "MaxWaitTimeInSeconds": 20},
    },
    "pipe mode": {"AlgorithmSpecification": {"TrainingImage": "x", "TrainingInputMode": "Pipe"}},
    "bad metric regex": {
        "AlgorithmSpecification": {
            "TrainingImage": "x",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "m", "Regex": "(["}],
        }
    },
}


@pytest.mark.parametrize("label", list(SERVICE_RULE_BREAKS))
def test_service_rules_refuse_bad_requests_and_create_nothing(engine, s3_bucket, label):
    sm = engine.client("sagemaker")
    name = _name("bad")
    config = _config(name, s3_bucket, f"s3://{s3_bucket}/code.tar.gz", **SERVICE_RULE_BREAKS[label])
    code_, _ = _error(lambda: sm.create_training_job(**config))
    assert code_ == "ValidationException"
    code_, _ = _error(lambda: sm.describe_training_job(TrainingJobName=name))
    assert code_ == "ValidationException"


def test_missing_role_and_negative_runtime_without_client_validation(engine, s3_bucket):
    sm = engine.client("sagemaker")
    unchecked = boto3.client(
        "sagemaker",
        endpoint_url=engine.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=engine.credentials.access_key_id,
        aws_secret_access_key=engine.credentials.secret_access_key,
        config=Config(parameter_validation=False),
    )
    config = _config(_name(), s3_bucket, f"s3://{s3_bucket}/code.tar.gz")
    del config["RoleArn"]
    assert _error(lambda: unchecked.create_training_job(**config))[0] == "ValidationException"
    config = _config(
        _name(), s3_bucket, f"s3://{s3_bucket}/code.tar.gz", StoppingCondition={"MaxRuntimeInSeconds": -1}
    )
    assert _error(lambda: unchecked.create_training_job(**config))[0] == "ValidationException"
    assert (
        _error(lambda: sm.describe_training_job(TrainingJobName=config["TrainingJobName"]))[0]
        == "ValidationException"
    )


def test_list_filters_sorts_and_pages(engine, s3_bucket):
    s3, sm = engine.client("s3"), engine.client("sagemaker")
    code = upload_script(s3, s3_bucket, "print('ok')\n")
    tag = uuid.uuid4().hex[:8]
    names = [f"list-{tag}-{i}" for i in range(3)]
    for name in names:
        sm.create_training_job(**_config(name, s3_bucket, code))
    for name in names:
        _wait(sm, name)
    page = sm.list_training_jobs(NameContains=tag, MaxResults=2, SortBy="Name", SortOrder="Descending")
    assert [s["TrainingJobName"] for s in page["TrainingJobSummaries"]] == names[::-1][:2]
    rest = sm.list_training_jobs(
        NameContains=tag, MaxResults=2, SortBy="Name", SortOrder="Descending", NextToken=page["NextToken"]
    )
    assert [s["TrainingJobName"] for s in rest["TrainingJobSummaries"]] == names[:1]
    assert "NextToken" not in rest
    assert sm.list_training_jobs(NameContains=tag, StatusEquals="Failed")["TrainingJobSummaries"] == []
    sm.delete_training_job(TrainingJobName=names[0])
    assert len(sm.list_training_jobs(NameContains=tag)["TrainingJobSummaries"]) == 2


SPOT_SCRIPT = """
import os, pathlib, time
ckpt = pathlib.Path("/opt/ml/checkpoints")
state = ckpt / "epoch.txt"
start = int(state.read_text()) if state.exists() else 0
print("resumed from", start, flush=True)
for epoch in range(start, 6):
    state.write_text(str(epoch + 1))
    print("epoch", epoch, flush=True)
    if start == 0 and epoch == 2:
        print("waiting to be interrupted", flush=True)
        time.sleep(600)  # the first run never finishes by itself: the interrupt always lands mid-run
"""


def test_spot_interruption_resumes_from_s3_checkpoints(engine, s3_bucket):
    s3, sm, logs = engine.client("s3"), engine.client("sagemaker"), engine.client("logs")
    name = _name()
    config = _config(
        name,
        s3_bucket,
        upload_script(s3, s3_bucket, SPOT_SCRIPT),
        EnableManagedSpotTraining=True,
        StoppingCondition={"MaxRuntimeInSeconds": 60, "MaxWaitTimeInSeconds": 120},
        CheckpointConfig={"S3Uri": f"s3://{s3_bucket}/checkpoints/{name}"},
    )
    sm.create_training_job(**config)
    _wait(sm, name, until={"Training"})
    deadline = time.monotonic() + 10
    while "waiting to be interrupted" not in _log_lines(logs, name):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    engine.jobs.interrupt(name)
    job = _wait(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert statuses[statuses.index("Interrupted") :] == [
        "Interrupted",
        "Restarting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    resumed = [ln for ln in _log_lines(logs, name) if ln.startswith("resumed from")]
    assert resumed == ["resumed from 0", "resumed from 3"]
    body = s3.get_object(Bucket=s3_bucket, Key=f"checkpoints/{name}/epoch.txt")["Body"].read()
    assert body == b"6"


SECRETS_SCRIPT = """
import json, os
import boto3
print("env", json.dumps(sorted(os.environ)))
print("sdk config", os.environ.get("SAGEMAKER_USER_CONFIG_OVERRIDE"))
creds = boto3.Session().get_credentials()
print("credentials", creds.method, creds.access_key)
"""


def test_host_secrets_and_boto_config_do_not_reach_the_job(engine, s3_bucket, tmp_path, monkeypatch):
    """Only allowlisted host variables pass; botocore finds the job's container credentials only."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", "aws://AKIAHOSTCONNKEY:secret@")
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://u:p@db/airflow")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".boto").write_text(
        "[Credentials]\naws_access_key_id = AKIAHOSTBOTOKEY\naws_secret_access_key = host-secret\n"
    )
    sm, name = engine.client("sagemaker"), _name("secrets")
    code = upload_script(engine.client("s3"), s3_bucket, SECRETS_SCRIPT, key=f"{name}.tar.gz")
    sm.create_training_job(**_config(name, s3_bucket, code))
    assert _wait(sm, name)["TrainingJobStatus"] == "Completed"
    lines = _log_lines(engine.client("logs"), name)
    names = json.loads(next(line for line in lines if line.startswith("env "))[4:])
    assert not [n for n in names if n.startswith("AIRFLOW")]
    method, key = next(line for line in lines if line.startswith("credentials ")).split()[1:]
    assert (method, key[:4]) == ("container-role", "ASIA")
    # the same telemetry opt-out file clients of the engine are given
    assert f"sdk config {engine.environ()['SAGEMAKER_USER_CONFIG_OVERRIDE']}" in lines
