"""The MLflow tracker against a real MLflow tracking server (``mlflow server``, SQLite store), read
back with MLflow's own ``MlflowClient``; plots come from the local engine's S3."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_sm_provider.naming import JobIdentity
from airflow_sm_provider.tracking.base import RunRef, TrackingConfig, open_tracker
from airflow_sm_provider.tracking.records import run_end, run_start

pytestmark = pytest.mark.integration

REQUEST = {
    "TrainingJobName": "digits",
    "HyperParameters": {"lr": "0.01", "optimizer": '"adam"', "sagemaker_program": '"train.py"'},
    "AlgorithmSpecification": {"TrainingImage": "local-python:latest", "TrainingInputMode": "File"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
    "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://b/train/"}}}],
}


@pytest.fixture
def tracker(mlflow_server: str) -> Any:
    return open_tracker("mlflow", tracking_uri=mlflow_server)


def _config(prefix: str, server: str) -> TrackingConfig:
    return TrackingConfig(f"{prefix}-{time.time_ns() % 10**12}", backend="mlflow", tracking_uri=server)


def _identity(run_id: str, map_index: int = -1) -> JobIdentity:
    return JobIdentity("default", "tracking-dag", run_id, "train", map_index)


def test_start_creates_the_run_with_its_tags_parameters_inputs_and_job_fields(
    tracker: Any, mlflow_server: str
):
    from mlflow.tracking import MlflowClient

    config = _config("start", mlflow_server)
    ref = tracker.start_run(config, _identity("manual__a", 0), "Digits", run_start(REQUEST))

    run = MlflowClient(mlflow_server).get_run(ref.record)
    assert run.info.run_name == ref.run_name and ref.run_name.startswith("digits-")
    assert run.info.status == "RUNNING" and ref.tracking_uri == mlflow_server
    assert run.data.params["lr"] == "0.01" and run.data.params["optimizer"] == "adam"
    assert run.data.params["job.instance_type"] == "ml.m5.large"
    assert "sagemaker_program" not in run.data.params
    tags = run.data.tags
    assert tags["input.train"] == "s3://b/train/"
    assert (tags["airflow-sm:dag-id"], tags["airflow-sm:run-id"], tags["airflow-sm:map-index"]) == (
        "tracking-dag",
        "manual__a",
        "0",
    )
    assert tags["airflow-sm:namespace"] == "default" and tags["airflow-sm:task-id"] == "train"
    assert ref.job_fields == {
        "Environment": {
            "MLFLOW_TRACKING_URI": mlflow_server,
            "MLFLOW_EXPERIMENT_NAME": config.experiment,
            "MLFLOW_RUN_ID": ref.record,
        }
    }


def test_a_retry_continues_the_run_found_by_its_identity_tags(tracker: Any, mlflow_server: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    config = _config("retry", mlflow_server)
    identity = _identity("manual__b")
    ref = tracker.start_run(config, identity, "digits", run_start(REQUEST))
    failed = {
        "TrainingJobName": "digits-1",
        "TrainingJobStatus": "Failed",
        "FailureReason": "AlgorithmError: out of memory\nTraceback ...",
        "FinalMetricDataList": [{"MetricName": "loss", "Value": 9.0}],
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/failed/model.tar.gz"},
    }
    tracker.end_run(ref, run_end(failed))
    run = client.get_run(ref.record)
    assert run.info.status == "FAILED" and run.info.end_time
    assert run.data.tags["status.message"] == "AlgorithmError: out of memory Traceback ..."
    assert run.data.tags["outcome.final.loss"] == "9.0" and run.data.tags["output.model"]

    # A second run with the same name but another identity must not be taken for this one.
    client.create_run(client.get_experiment_by_name(config.experiment).experiment_id, run_name=ref.run_name)
    changed = {**REQUEST, "HyperParameters": {**REQUEST["HyperParameters"], "lr": "0.02"}}
    again = tracker.start_run(config, identity, "digits", run_start(changed))
    assert again == ref
    retried = client.get_run(ref.record)
    assert retried.info.status == "RUNNING"
    assert not any(key.startswith(("outcome.", "output.model", "status.")) for key in retried.data.tags)
    assert retried.data.params["lr"] == "0.01"  # MLflow params keep their first value

    tracker.end_run(ref, run_end({"TrainingJobName": "digits-2", "TrainingJobStatus": "Completed"}))
    [tracked] = tracker.find_runs("default", "tracking-dag", "manual__b", experiment=config.experiment)
    assert tracked.ref == ref and tracked.status == "Completed"
    assert tracked.parameters["job.name"] == "digits-2" and tracked.parameters["lr"] == 0.01


def test_stopped_jobs_end_killed_and_lookups_name_what_is_missing(tracker: Any, mlflow_server: str):
    config = _config("stopped", mlflow_server)
    refs = [tracker.start_run(config, _identity("manual__c", i), "d", run_start(REQUEST)) for i in range(2)]
    tracker.end_run(
        refs[0],
        run_end({"TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxRuntimeExceeded"}),
    )
    found = tracker.find_runs("default", "tracking-dag", "manual__c")  # every experiment
    assert [run.ref.record for run in found] == sorted(ref.record for ref in refs)
    stopped = tracker.get_runs([refs[0]])[0]
    assert (stopped.status, stopped.message) == ("Stopped", "MaxRuntimeExceeded")
    assert tracker.find_runs("default", "tracking-dag", "manual__c", experiment="no-such-exp") == []
    missing = RunRef("mlflow", config.experiment, "x", "0" * 32, tracking_uri=mlflow_server)
    with pytest.raises(KeyError, match="no tracked run with id 0000"):
        tracker.get_runs([missing])


def test_metric_series_has_every_step_and_the_latest_value_of_a_repeated_one(
    tracker: Any, mlflow_server: str
):
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    config = _config("metrics", mlflow_server)
    ref = tracker.start_run(config, _identity("manual__d"), "d", run_start(REQUEST))
    now = int(time.time() * 1000)
    points = [Metric("loss", 1.0 / (epoch + 1), now + epoch, epoch) for epoch in range(1, 31)]
    points.append(Metric("loss", 0.5, now + 100, 1))  # epoch 1 again, after a spot restart
    MlflowClient(mlflow_server).log_batch(ref.record, metrics=points)

    [run] = tracker.get_runs([ref])
    assert run.metrics == ("loss",)
    [series] = tracker.metric_series([run])
    assert series.steps == tuple(range(1, 31))
    assert series.values[0] == 0.5 and series.values[-1] == pytest.approx(1 / 31)


def test_plots_are_recorded_and_copied_into_the_runs_artifacts(
    tracker: Any, mlflow_server: str, aws_env: Any, engine: Any, s3_bucket: str
):
    from mlflow.tracking import MlflowClient

    s3 = engine.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="plots/loss.png", Body=b"\x89PNG first")
    config = _config("plots", mlflow_server)
    ref = tracker.start_run(config, _identity("manual__e"), "d", run_start(REQUEST))
    uri = f"s3://{s3_bucket}/plots/loss.png"
    tracker.log_artifacts(ref, {"curve:loss": uri})
    s3.put_object(Bucket=s3_bucket, Key="plots/loss.png", Body=b"\x89PNG second")
    tracker.log_artifacts(ref, {"curve:loss": uri})  # republished: replaced

    client = MlflowClient(mlflow_server)
    assert [a.path for a in client.list_artifacts(ref.record, "plots")] == ["plots/curve-loss.png"]
    local = client.download_artifacts(ref.record, "plots/curve-loss.png")
    with open(local, "rb") as handle:
        assert handle.read() == b"\x89PNG second"
    assert tracker.get_runs([ref])[0].outputs == {"curve:loss": uri}
