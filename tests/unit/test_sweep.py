"""The runs of a sweep: job names from XComs, run records from describe responses."""

from __future__ import annotations

from datetime import datetime

import pytest

from airflow_sm_provider.sweep import job_names, sweep_run, user_hyperparameters


def test_names_from_summaries_names_and_nested_mapped_outputs_each_once():
    mapped = [{"kind": "training", "name": "a-1"}, {"kind": "training", "name": "b-2"}]
    assert job_names(mapped) == ["a-1", "b-2"]
    assert job_names("a-1") == ["a-1"]
    assert job_names([mapped, ["c-3", "a-1"]]) == ["a-1", "b-2", "c-3"]
    assert job_names(iter(mapped)) == ["a-1", "b-2"]  # Airflow hands mapped XComs as lazy sequences


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        (None, r"jobs: required"),
        ([], r"jobs: no jobs given"),
        (["ok", 3], r"jobs\[1\]: must be a job name"),
        ([{"name": "bad_name"}], r"jobs\[0\]: 'bad_name' is not a SageMaker job name"),
        ([{"status": "Completed"}], r"jobs\[0\]: a job summary needs a 'name'"),
        ([{"kind": "processing", "name": "prep"}], r"jobs\[0\]: a processing job"),
    ],
)
def test_bad_jobs_are_refused_naming_the_entry(jobs, message):
    with pytest.raises(ValueError, match=message):
        job_names(jobs)


def test_user_hyperparameters_drop_sdk_keys_and_json_quotes():
    given = {"sagemaker_program": '"train.py"', "optimizer": '"adam"', "lr": "0.1", "note": '"a"b"'}
    assert user_hyperparameters(given) == {"optimizer": "adam", "lr": "0.1", "note": '"a"b"'}


def test_run_from_a_failed_spot_job_describe():
    run = sweep_run(
        {
            "TrainingJobName": "lr-01-abc",
            "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/lr-01-abc",
            "TrainingJobStatus": "Failed",
            "SecondaryStatus": "Failed",
            "FailureReason": "AlgorithmError: out of memory",
            "HyperParameters": {"lr": "0.1", "sagemaker_program": "train.py"},
            "AlgorithmSpecification": {"MetricDefinitions": [{"Name": "loss", "Regex": "loss=(\\S+)"}]},
            "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 2},
            "EnableManagedSpotTraining": True,
            "TrainingTimeInSeconds": 100,
            "BillableTimeInSeconds": 40,
            "FinalMetricDataList": [{"MetricName": "loss", "Value": 0.5, "Timestamp": datetime(2026, 1, 1)}],
            "ExperimentConfig": {"ExperimentName": "sweep", "RunName": "lr-01"},
        }
    )
    assert run.failed and not run.running
    assert run.metric_definitions == [{"Name": "loss", "Regex": "loss=(\\S+)"}]
    record = run.record(links={"job": "https://console/x"})
    assert record["name"] == record["job_name"] == "lr-01-abc"
    assert record["hyperparameters"] == {"lr": "0.1"}
    assert (record["instance_type"], record["instance_count"], record["spot"]) == ("ml.g5.xlarge", 2, True)
    assert (record["training_seconds"], record["billable_seconds"]) == (100.0, 40.0)
    assert record["final_metrics"] == {"loss": 0.5}
    assert record["failure_reason"] == "AlgorithmError: out of memory"
    assert (run.experiment_name, run.run_name) == ("sweep", "lr-01")


def test_a_job_seen_before_it_has_a_status_counts_as_running():
    run = sweep_run({"TrainingJobName": "new-job"})
    assert run.running and not run.failed and run.record()["status"] == "Unknown"
    with pytest.raises(ValueError, match="TrainingJobName"):
        sweep_run({})
