"""SageMaker managed MLflow on the local engine: tracking servers are real MLflow servers, and a
training job with ``MlflowConfig`` logs onto its linked run (read back with ``MlflowClient``)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from jobs_support import training_config, upload_script

pytestmark = pytest.mark.integration

SCRIPT = """
import os
import mlflow

print("run", os.environ["MLFLOW_RUN_ID"], "experiment", os.environ["MLFLOW_EXPERIMENT_NAME"])
for epoch in range(5):  # MLflow's client takes MLFLOW_RUN_ID out of the environment when it resumes
    mlflow.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
"""


def _wait(sagemaker: Any, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while (job := sagemaker.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline, job["SecondaryStatus"]
        time.sleep(0.2)
    return job


def test_tracking_servers_are_created_described_and_listed(engine: Any, mlflow_tracking_server: dict):
    import urllib.request

    sagemaker = engine.client("sagemaker")
    described = mlflow_tracking_server
    assert described["TrackingServerArn"].endswith(":mlflow-tracking-server/tests")
    assert described["IsActive"] == "Active" and described["MlflowVersion"]
    assert described["TrackingServerUrl"].startswith("http://127.0.0.1:")
    health = f"{described['TrackingServerUrl']}/health"
    with urllib.request.urlopen(health, timeout=10) as response:  # noqa: S310 (http on 127.0.0.1)
        assert response.status == 200  # a real MLflow server answers there
    summaries = sagemaker.list_mlflow_tracking_servers()["TrackingServerSummaries"]
    assert described["TrackingServerArn"] in [s["TrackingServerArn"] for s in summaries]

    with pytest.raises(ClientError) as taken:
        sagemaker.create_mlflow_tracking_server(
            TrackingServerName="tests", ArtifactStoreUri="s3://b/x", RoleArn=described["RoleArn"]
        )
    assert taken.value.response["Error"]["Code"] == "ResourceInUse"
    with pytest.raises(ClientError) as missing:
        sagemaker.describe_mlflow_tracking_server(TrackingServerName="nope")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFound"


def test_a_job_with_mlflow_config_logs_onto_its_linked_run(
    engine: Any, s3_bucket: str, mlflow_tracking_server: dict
):
    from mlflow.tracking import MlflowClient

    sagemaker = engine.client("sagemaker")
    code = upload_script(engine.client("s3"), s3_bucket, SCRIPT)
    name = f"mlflow-{uuid.uuid4().hex[:8]}"
    experiment = f"engine-{uuid.uuid4().hex[:8]}"
    config = training_config(s3_bucket, code, name=name)
    config["MlflowConfig"] = {
        "MlflowResourceArn": mlflow_tracking_server["TrackingServerArn"],
        "MlflowExperimentName": experiment,
        "MlflowRunName": "candidate-1",
    }
    sagemaker.create_training_job(**config)
    job = _wait(sagemaker, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    details = job["MlflowDetails"]
    assert job["MlflowConfig"] == config["MlflowConfig"] and "Environment" not in job

    client = MlflowClient(mlflow_tracking_server["TrackingServerUrl"])
    run = client.get_run(details["MlflowRunId"])
    assert run.info.run_name == "candidate-1" and run.info.experiment_id == details["MlflowExperimentId"]
    assert client.get_experiment(details["MlflowExperimentId"]).name == experiment
    assert run.data.tags["sagemaker.training_job_name"] == name
    history = client.get_metric_history(details["MlflowRunId"], "loss")
    assert sorted(point.step for point in history) == list(range(5))


def test_a_job_naming_its_run_in_the_environment_is_linked_to_that_run(
    engine: Any, s3_bucket: str, mlflow_tracking_server: dict
):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_tracking_server["TrackingServerUrl"])
    experiment = f"engine-{uuid.uuid4().hex[:8]}"
    run_id = client.create_run(client.create_experiment(experiment), run_name="mine").info.run_id
    sagemaker = engine.client("sagemaker")
    name = f"mlflow-{uuid.uuid4().hex[:8]}"
    config = training_config(s3_bucket, upload_script(engine.client("s3"), s3_bucket, SCRIPT), name=name)
    config["MlflowConfig"] = {
        "MlflowResourceArn": mlflow_tracking_server["TrackingServerArn"],
        "MlflowExperimentName": experiment,
    }
    config["Environment"] = {"MLFLOW_RUN_ID": run_id, "MLFLOW_TRACKING_URI": "ignored-by-the-engine"}
    sagemaker.create_training_job(**config)
    job = _wait(sagemaker, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["MlflowDetails"]["MlflowRunId"] == run_id
    assert job["Environment"] == config["Environment"]  # as created
    assert len(client.get_metric_history(run_id, "loss")) == 5


@pytest.mark.parametrize(
    ("arn", "message"),
    [
        ("arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/none", "does not exist"),
        ("arn:aws:sagemaker:us-east-1:123456789012:mlflow-app/app-1", "not an MLflow tracking server ARN"),
    ],
)
def test_a_bad_mlflow_arn_is_refused_before_the_job_exists(
    engine: Any, s3_bucket: str, mlflow_tracking_server: dict, arn: str, message: str
):
    sagemaker = engine.client("sagemaker")
    name = f"mlflow-bad-{uuid.uuid4().hex[:8]}"
    config = training_config(s3_bucket, "s3://b/code.tar.gz", name=name)
    config["MlflowConfig"] = {"MlflowResourceArn": arn}
    with pytest.raises(ClientError) as refused:
        sagemaker.create_training_job(**config)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert message in refused.value.response["Error"]["Message"]
    with pytest.raises(ClientError):
        sagemaker.describe_training_job(TrainingJobName=name)


@pytest.fixture
def process_tracking_uri() -> Any:
    """The process's MLflow tracking URI (which the sagemaker-mlflow plugin signs for), reset after."""
    pytest.importorskip("sagemaker_mlflow", reason="needs the mlflow-sagemaker extra")
    import mlflow

    yield mlflow.set_tracking_uri
    mlflow.set_tracking_uri(None)


def test_the_plugins_signed_calls_reach_the_tracking_server_named_by_its_arn(
    engine: Any, aws_env: Any, mlflow_tracking_server: dict, process_tracking_uri: Any
):
    """``sagemaker-mlflow`` with the engine's exports: the ARN is the tracking URI, signed by the
    engine's key; an unsigned call is refused like any other."""
    import urllib.error
    import urllib.request

    from mlflow.tracking import MlflowClient

    assert aws_env["SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT"] == engine.endpoint_url
    arn = mlflow_tracking_server["TrackingServerArn"]
    process_tracking_uri(arn)
    signed = MlflowClient(tracking_uri=arn)
    run = signed.create_run(signed.create_experiment(f"signed-{uuid.uuid4().hex[:8]}"))
    signed.log_metric(run.info.run_id, "loss", 0.5, step=3)
    plain = MlflowClient(mlflow_tracking_server["TrackingServerUrl"])
    assert [(m.step, m.value) for m in plain.get_metric_history(run.info.run_id, "loss")] == [(3, 0.5)]

    unsigned = urllib.request.Request(  # noqa: S310 (http on 127.0.0.1)
        f"{engine.endpoint_url}/api/2.0/mlflow/experiments/search",
        data=b"{}",
        headers={"x-mlflow-sm-tracking-server-arn": arn, "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unsigned, timeout=30)  # noqa: S310 (http on 127.0.0.1)
    assert refused.value.code == 400  # as AWS answers an unsigned request
    assert b"MissingAuthenticationToken" in refused.value.read()


def test_a_task_tracked_on_an_arn_gets_its_job_linked_to_the_trackers_run(
    engine: Any, aws_env: Any, s3_bucket: str, mlflow_tracking_server: dict, process_tracking_uri: Any
):
    """The tracker on the tracking server's ARN (as on AWS): the job is created with MlflowConfig
    and the engine links it to the tracker's run, where the script's metrics land."""
    from mlflow.tracking import MlflowClient

    from airflow_sm_provider.naming import JobIdentity
    from airflow_sm_provider.tracking.base import TrackingConfig, open_tracker, with_job_fields
    from airflow_sm_provider.tracking.records import run_start

    arn = mlflow_tracking_server["TrackingServerArn"]
    name = f"mlflow-arn-{uuid.uuid4().hex[:8]}"
    config = training_config(s3_bucket, upload_script(engine.client("s3"), s3_bucket, SCRIPT), name=name)
    tracking = TrackingConfig(f"arn-{uuid.uuid4().hex[:8]}", backend="mlflow", tracking_uri=arn)
    tracker = open_tracker("mlflow", tracking_uri=arn)
    ref = tracker.start_run(tracking, JobIdentity("default", "d", "r", "t"), name, run_start(config))
    request = with_job_fields(config, ref)
    assert request["MlflowConfig"]["MlflowResourceArn"] == arn
    assert request["Environment"]["MLFLOW_TRACKING_URI"] == arn

    engine.client("sagemaker").create_training_job(**request)
    job = _wait(engine.client("sagemaker"), name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["MlflowDetails"]["MlflowRunId"] == ref.record
    history = MlflowClient(mlflow_tracking_server["TrackingServerUrl"]).get_metric_history(ref.record, "loss")
    assert sorted(point.step for point in history) == list(range(5))
