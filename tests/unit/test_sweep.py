"""The runs of a sweep: job names from XComs, run records from describe responses."""

from __future__ import annotations

from collections.abc import Sequence
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


# ---------------------------------------------------------------- gather


RUN_XCOM = {"backend": "experiments", "experiment": "sweep", "run_name": "a-run", "record": "sweep-a-run"}
ARN = "arn:aws:sagemaker:us-east-1:123456789012:experiment-trial-component/sweep-a-run"


class Reader:
    """The hook's side of gather(): describes and series from memory, calls recorded."""

    def describe_runs(self, names):
        return [sweep_run({"TrainingJobName": name, "TrainingJobStatus": "Completed"}) for name in names]

    def collect(self, runs, *, step_regex, metrics_json):
        return series_frame([(run.run, "loss", 0, 1.0, "logs") for run in runs])


def series_frame(rows):
    import pandas as pd

    from airflow_sm_provider.metrics.series import merge

    frame = pd.DataFrame(rows, columns=["run", "metric", "step", "value", "source"])
    frame["job"], frame["finite"] = frame["run"], True
    frame["timestamp"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    return merge([frame])


class Tracker:
    def __init__(self, runs) -> None:
        self.runs = runs
        self.found_with = None
        self.series_of: list[list[str]] = []

    def get_runs(self, refs):
        return [self.runs[ref.record] for ref in refs]

    def find_runs(self, namespace, dag_id, run_id, *, experiment=None):
        self.found_with = (namespace, dag_id, run_id, experiment)
        return list(self.runs.values())

    def metric_series(self, runs):
        from airflow_sm_provider.tracking.base import MetricSeries

        self.series_of.append([run.ref.record for run in runs])
        return [MetricSeries(run.ref, metric, (0,), (9.0,)) for run in runs for metric in run.metrics]


def tracked(job: str | None, metrics=("loss", "lr")):
    from airflow_sm_provider.tracking.base import RunRef, TrackedRun

    params = {"job.name": job} if job else {}
    return TrackedRun(
        RunRef.from_xcom({**RUN_XCOM, "arn": ARN}), "Completed", "", params, {}, {}, {}, metrics
    )


def test_gather_merges_the_runs_points_under_the_logs():
    from airflow_sm_provider.sweep import gather

    reader, tracker = Reader(), Tracker({"sweep-a-run": tracked("a-1")})
    jobs = [{"kind": "training", "name": "a-1", "run": {**RUN_XCOM, "arn": ARN}}, {"name": "b-2"}]
    sweep = gather(reader, jobs, tracker=lambda backend, uri: tracker, step_regex=None)
    assert [run.job for run in sweep.runs] == ["a-1", "b-2"]
    assert sweep.tracked["a-1"].record == "sweep-a-run" and "b-2" not in sweep.tracked
    assert tracker.series_of == [["sweep-a-run"]]
    points = {(r.run, r.metric): (r.value, r.source) for r in sweep.series.itertuples()}
    assert points == {
        ("a-1", "loss"): (1.0, "logs"),
        ("a-1", "lr"): (9.0, "run"),
        ("b-2", "loss"): (1.0, "logs"),
    }


def test_gather_without_jobs_takes_the_dag_runs_ended_tracked_runs():
    from airflow_sm_provider.sweep import DagRunRuns, gather

    tracker = Tracker({"sweep-a-run": tracked("a-1"), "running": tracked(None)})
    lookup = DagRunRuns("default", "dag", "manual__1", "sweep")
    sweep = gather(Reader(), None, tracker=lambda backend, uri: tracker, step_regex=None, lookup=lookup)
    assert [run.job for run in sweep.runs] == ["a-1"] and tracker.found_with == (
        "default",
        "dag",
        "manual__1",
        "sweep",
    )
    with pytest.raises(ValueError, match="no ended tracked run found for DAG run manual__1"):
        gather(Reader(), None, tracker=lambda backend, uri: Tracker({}), step_regex=None, lookup=lookup)
    with pytest.raises(ValueError, match="jobs: required"):
        gather(Reader(), None, tracker=lambda backend, uri: tracker, step_regex=None)


class _LazyXComs(Sequence):
    """Stands in for Airflow 3's lazy XCom sequence: each item read is a request, logged."""

    def __init__(self, items: list) -> None:
        self.items, self.requests = items, []

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        self.requests.append(index)
        return self.items[index]


def test_a_mapped_output_is_read_in_one_slice_never_past_its_end():
    """Iterating asked for item len(...) too, which Airflow logs as "XCom not found" each run."""
    xcoms = _LazyXComs([{"name": "job-a"}, {"name": "job-b"}])
    assert job_names(xcoms) == ["job-a", "job-b"]
    assert xcoms.requests == [slice(None)]
