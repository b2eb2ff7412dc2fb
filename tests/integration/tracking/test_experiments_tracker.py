"""The SageMaker Experiments tracker against the local engine, through the real SDK.

The tracker's clients come from the Airflow AWS connection (``AIRFLOW_CONN_AWS_DEFAULT`` with
the engine's ``endpoint_url``); ``AWS_ENDPOINT_URL`` is removed, so a client that ignored the
connection would not reach the engine.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from airflow_sm_provider.naming import JobIdentity
from airflow_sm_provider.tracking import experiments
from airflow_sm_provider.tracking.base import RunRef, TrackingConfig, open_tracker
from airflow_sm_provider.tracking.records import RunStatus, run_end, run_start

pytestmark = pytest.mark.integration

REQUEST = {
    "TrainingJobName": "digits",
    "HyperParameters": {"lr": "0.01", "optimizer": '"adam"', "sagemaker_program": '"train.py"'},
    "AlgorithmSpecification": {"TrainingImage": "local-python:latest", "TrainingInputMode": "File"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
    "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://b/train/"}}}],
}


@pytest.fixture
def tracker(aws_env: Any, monkeypatch: pytest.MonkeyPatch) -> experiments.ExperimentsTracker:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return open_tracker("experiments")


def _unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns() % 10**12}"


def _identity(run_id: str, map_index: int = -1, task_id: str = "train") -> JobIdentity:
    return JobIdentity("default", "tracking-dag", run_id, task_id, map_index)


def _describe(tracker: Any, ref: RunRef) -> dict[str, Any]:
    return tracker.session.sagemaker_client.describe_trial_component(TrialComponentName=ref.record)


def test_start_creates_the_run_with_its_tags_parameters_and_inputs(tracker: Any):
    config = TrackingConfig(experiment=_unique("Exp"))
    ref = tracker.start_run(config, _identity("manual__a", 0), "Digits", run_start(REQUEST))

    assert ref.experiment == config.experiment and ref.record == f"{ref.experiment}-{ref.run_name}"
    assert ref.job_fields == {
        "ExperimentConfig": {
            "ExperimentName": config.experiment,
            "TrialName": f"Default-Run-Group-{config.experiment}",
            "RunName": ref.record,
        }
    }
    described = _describe(tracker, ref)
    assert described["TrialComponentArn"] == ref.arn
    assert described["Status"]["PrimaryStatus"] == "InProgress" and "StartTime" in described
    assert described["Parameters"]["lr"] == {"NumberValue": 0.01}
    assert described["Parameters"]["optimizer"] == {"StringValue": "adam"}
    assert "sagemaker_program" not in described["Parameters"]
    assert described["InputArtifacts"] == {"train": {"Value": "s3://b/train/"}}
    client = tracker.session.sagemaker_client
    tags = {t["Key"]: t["Value"] for t in client.list_tags(ResourceArn=ref.arn)["Tags"]}
    assert tags["sagemaker:trial-component-source"] == "run"
    assert (tags["airflow-sm:dag-id"], tags["airflow-sm:run-id"], tags["airflow-sm:map-index"]) == (
        "tracking-dag",
        "manual__a",
        "0",
    )
    # the identity tags are on the run's record only, not on the shared experiment
    experiment_arn = client.describe_experiment(ExperimentName=config.experiment)["ExperimentArn"]
    assert not any(
        t["Key"].startswith("airflow-sm:") for t in client.list_tags(ResourceArn=experiment_arn)["Tags"]
    )


def test_a_retry_continues_the_run_and_clears_the_last_outcome(tracker: Any):
    config = TrackingConfig(experiment=_unique("retry"))
    identity = _identity("manual__b")
    ref = tracker.start_run(config, identity, "digits", run_start(REQUEST))
    tracker.end_run(
        ref,
        run_end(
            {
                "TrainingJobName": "digits-1",
                "TrainingJobStatus": "Failed",
                "FailureReason": "AlgorithmError: out of memory",
                "FinalMetricDataList": [{"MetricName": "loss", "Value": 9.0}],
                "ModelArtifacts": {"S3ModelArtifacts": "s3://b/failed/model.tar.gz"},
            }
        ),
    )
    failed = _describe(tracker, ref)
    assert failed["Status"] == {"PrimaryStatus": "Failed", "Message": "AlgorithmError: out of memory"}
    assert failed["Parameters"]["final.loss"] == {"NumberValue": 9.0} and "EndTime" in failed

    again = tracker.start_run(config, identity, "digits", run_start(REQUEST))
    assert again == ref
    retried = _describe(tracker, ref)
    assert retried["Status"]["PrimaryStatus"] == "InProgress"
    assert retried["StartTime"] == failed["StartTime"]  # the run started with the first try
    assert not any(key.startswith(("final.", "job.status", "job.name")) for key in retried["Parameters"])
    assert retried["OutputArtifacts"] == {}
    assert retried["Parameters"]["lr"] == {"NumberValue": 0.01}

    tracker.end_run(ref, run_end({"TrainingJobName": "digits-2", "TrainingJobStatus": "Completed"}))
    summaries = tracker.session.sagemaker_client.list_trial_components(ExperimentName=config.experiment)
    assert [s["TrialComponentName"] for s in summaries["TrialComponentSummaries"]] == [ref.record]
    assert _describe(tracker, ref)["Status"]["PrimaryStatus"] == "Completed"


def test_mapped_tasks_racing_share_one_experiment(tracker: Any):
    config = TrackingConfig(experiment=_unique("race"))
    refs: dict[int, RunRef] = {}
    errors: list[BaseException] = []

    def start(index: int) -> None:
        try:
            refs[index] = open_tracker().start_run(
                config, _identity("manual__c", index), "d", run_start(REQUEST)
            )
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    client = tracker.session.sagemaker_client
    assert [e["ExperimentName"] for e in client.list_experiments()["ExperimentSummaries"]].count(
        config.experiment
    ) == 1
    found = tracker.find_runs("default", "tracking-dag", "manual__c", experiment=config.experiment)
    assert [run.ref.record for run in found] == sorted(ref.record for ref in refs.values())


def test_lookup_returns_the_runs_of_one_dag_run_over_every_page(
    tracker: Any, monkeypatch: pytest.MonkeyPatch
):
    config = TrackingConfig(experiment=_unique("lookup"))
    mine = [tracker.start_run(config, _identity("manual__d", i), "d", run_start(REQUEST)) for i in range(3)]
    tracker.start_run(config, _identity("manual__e", 0), "d", run_start(REQUEST))  # another DAG run
    # a trial component of the same experiment carrying the tags but not made by Run
    client = tracker.session.sagemaker_client
    stray = _unique("stray")
    client.create_trial_component(
        TrialComponentName=stray,
        Tags=[
            {"Key": "airflow-sm:dag-id", "Value": "tracking-dag"},
            {"Key": "airflow-sm:run-id", "Value": "manual__d"},
        ],
    )
    monkeypatch.setattr(experiments, "SEARCH_PAGE_SIZE", 2)  # three runs take two pages

    found = tracker.find_runs("default", "tracking-dag", "manual__d")
    assert [run.ref for run in found] == sorted(mine, key=lambda ref: ref.record)
    assert all(run.status == "InProgress" and run.parameters["lr"] == 0.01 for run in found)
    assert tracker.find_runs("default", "tracking-dag", "manual__d", experiment="other") == []
    by_record = {run.ref.record: run for run in found}
    assert tracker.get_runs(list(reversed(mine))) == [by_record[ref.record] for ref in reversed(mine)]


def test_get_runs_splits_long_name_lists_and_names_the_missing(tracker: Any, monkeypatch: pytest.MonkeyPatch):
    config = TrackingConfig(experiment=_unique("get"))
    refs = [tracker.start_run(config, _identity("manual__f", i), "d", run_start(REQUEST)) for i in range(3)]
    monkeypatch.setattr(experiments, "MAX_FILTER_VALUE_LENGTH", 80)  # one name per Search
    assert [run.ref for run in tracker.get_runs(refs)] == refs
    missing = RunRef("experiments", config.experiment, "nope", f"{config.experiment}-nope")
    with pytest.raises(KeyError, match=missing.record):
        tracker.get_runs([refs[0], missing])


def test_metrics_logged_with_load_run_come_back_per_step(tracker: Any):
    from sagemaker.core.experiments.run import load_run

    config = TrackingConfig(experiment=_unique("metrics"))
    ref = tracker.start_run(config, _identity("manual__g"), "d", run_start(REQUEST))
    with load_run(
        experiment_name=ref.experiment, run_name=ref.run_name, sagemaker_session=tracker.session
    ) as run:
        for step in range(15):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metric("acc", 0.5, step=0)
        run.log_metric("acc", 0.75, step=0)  # a step logged again: the last value counts
    (tracked,) = tracker.get_runs([ref])
    series = {s.metric: s for s in tracker.metric_series([tracked])}
    assert set(series) == {"loss", "acc"}
    assert series["loss"].steps == tuple(range(15))
    assert series["loss"].values == pytest.approx([1.0 / (s + 1) for s in range(15)])
    assert (series["acc"].steps, series["acc"].values) == ((0,), (0.75,))


def test_artifacts_replace_by_name_within_the_sdk_limit(tracker: Any):
    config = TrackingConfig(experiment=_unique("artifacts"))
    ref = tracker.start_run(config, _identity("manual__h"), "d", run_start(REQUEST))
    plots = {f"plot-{i}": f"s3://b/plots/{i}.png" for i in range(30)}
    tracker.log_artifacts(ref, plots)
    tracker.log_artifacts(ref, {"plot-0": "s3://b/plots/0-v2.png"})  # republished: same name
    outputs = _describe(tracker, ref)["OutputArtifacts"]
    assert len(outputs) == 30 and outputs["plot-0"] == {"Value": "s3://b/plots/0-v2.png"}
    with pytest.raises(ValueError, match="31 output artifacts, above the SDK's 30"):
        tracker.log_artifacts(ref, {"one-more": "s3://b/x"})
    assert _describe(tracker, ref)["Status"]["PrimaryStatus"] == RunStatus.IN_PROGRESS.value  # not closed
