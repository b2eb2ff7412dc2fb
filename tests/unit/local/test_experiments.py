from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from airflow_sm_provider.local.context import EngineContext
from airflow_sm_provider.local.errors import ResourceNotFound, ValidationException
from airflow_sm_provider.local.experiments import ExperimentsBackend
from airflow_sm_provider.local.metrics import MetricsBackend
from airflow_sm_provider.local.store import Store

ACCOUNT_ARN = "arn:aws:sagemaker:us-east-1:123456789012"


@pytest.fixture
def backend(tmp_path: Path) -> ExperimentsBackend:
    return ExperimentsBackend(EngineContext(Store(), tmp_path))


def call(backend: ExperimentsBackend, op: str, **params) -> dict:
    return backend.operations()[op](params)


def metric(backend: ExperimentsBackend, op: str, **params) -> dict:
    return MetricsBackend(backend.ctx).operations()[op](params)


def make_run(backend: ExperimentsBackend, experiment="Exp", trial="exp-group", component="exp-run") -> None:
    call(backend, "CreateExperiment", ExperimentName=experiment)
    call(backend, "CreateTrial", TrialName=trial, ExperimentName=experiment)
    call(backend, "CreateTrialComponent", TrialComponentName=component)
    call(backend, "AssociateTrialComponent", TrialComponentName=component, TrialName=trial)


def test_create_describe_experiment(backend: ExperimentsBackend) -> None:
    arn = call(backend, "CreateExperiment", ExperimentName="My-Exp", Description="d")["ExperimentArn"]
    assert arn == f"{ACCOUNT_ARN}:experiment/my-exp"
    described = call(backend, "DescribeExperiment", ExperimentName="my-exp")
    assert described["ExperimentName"] == "My-Exp"
    assert described["DisplayName"] == "My-Exp"
    assert described["Description"] == "d"
    assert isinstance(described["CreationTime"], float)
    assert "Tags" not in described  # DescribeExperiment has no Tags member


@pytest.mark.parametrize(
    ("op", "params"),
    [
        ("CreateExperiment", {"ExperimentName": "EXP"}),
        ("CreateTrial", {"TrialName": "EXP-GROUP", "ExperimentName": "exp"}),
        ("CreateTrialComponent", {"TrialComponentName": "Exp-Run"}),
    ],
)
def test_creating_an_existing_entity_is_an_already_exists_validation_error(
    backend: ExperimentsBackend, op: str, params: dict
) -> None:
    """The SDK's load-or-create relies on ValidationException + "already exists"."""
    make_run(backend)
    call(backend, "UpdateTrialComponent", TrialComponentName="exp-run", Parameters={"a": {"NumberValue": 1}})
    with pytest.raises(ValidationException, match="already exists"):
        call(backend, op, **params)
    # nothing was overwritten
    assert call(backend, "DescribeTrialComponent", TrialComponentName="exp-run")["Parameters"] == {
        "a": {"NumberValue": 1}
    }


@pytest.mark.parametrize(
    ("op", "params", "message"),
    [
        (
            "DescribeExperiment",
            {"ExperimentName": "nope"},
            f"Experiment '{ACCOUNT_ARN}:experiment/nope' does not",
        ),
        ("DescribeTrial", {"TrialName": "nope"}, "experiment-trial/nope' does not exist"),
        ("DescribeTrialComponent", {"TrialComponentName": "nope"}, "experiment-trial-component/nope'"),
        ("CreateTrial", {"TrialName": "t", "ExperimentName": "nope"}, "experiment/nope"),
        ("AssociateTrialComponent", {"TrialComponentName": "nope", "TrialName": "nope"}, "nope"),
        ("UpdateTrialComponent", {"TrialComponentName": "nope"}, "nope"),
        ("ListTrials", {"ExperimentName": "nope"}, "nope"),
    ],
)
def test_missing_entities_are_resource_not_found(
    backend: ExperimentsBackend, op: str, params: dict, message: str
) -> None:
    with pytest.raises(ResourceNotFound, match=message):
        call(backend, op, **params)


def test_describe_trial_component_by_arn(backend: ExperimentsBackend) -> None:
    arn = call(backend, "CreateTrialComponent", TrialComponentName="tc-1")["TrialComponentArn"]
    assert call(backend, "DescribeTrialComponent", TrialComponentName=arn)["TrialComponentName"] == "tc-1"


def test_deletes_are_refused_while_children_remain(backend: ExperimentsBackend) -> None:
    make_run(backend)
    with pytest.raises(ValidationException, match="trials associated with the experiment"):
        call(backend, "DeleteExperiment", ExperimentName="exp")
    with pytest.raises(ValidationException, match="trial components"):
        call(backend, "DeleteTrial", TrialName="exp-group")
    with pytest.raises(ValidationException, match="disassociated"):
        call(backend, "DeleteTrialComponent", TrialComponentName="exp-run")
    call(backend, "DisassociateTrialComponent", TrialComponentName="exp-run", TrialName="exp-group")
    call(backend, "DeleteTrialComponent", TrialComponentName="exp-run")
    call(backend, "DeleteTrial", TrialName="exp-group")
    assert call(backend, "DeleteExperiment", ExperimentName="exp")["ExperimentArn"].endswith("/exp")
    assert call(backend, "ListExperiments")["ExperimentSummaries"] == []


def test_disassociating_an_unassociated_component_is_not_found(backend: ExperimentsBackend) -> None:
    make_run(backend)
    call(backend, "CreateTrialComponent", TrialComponentName="other")
    with pytest.raises(ResourceNotFound, match="not associated"):
        call(backend, "DisassociateTrialComponent", TrialComponentName="other", TrialName="exp-group")


def test_update_trial_component_merges_and_removes(backend: ExperimentsBackend) -> None:
    call(
        backend,
        "CreateTrialComponent",
        TrialComponentName="tc",
        Parameters={"a": {"NumberValue": 1.0}, "b": {"StringValue": "x"}},
        InputArtifacts={"data": {"Value": "s3://b/in"}},
    )
    call(
        backend,
        "UpdateTrialComponent",
        TrialComponentName="TC",
        Parameters={"c": {"NumberValue": 3.0}},
        ParametersToRemove=["b"],
        OutputArtifacts={"model": {"Value": "s3://b/model.tar.gz", "MediaType": "application/x-tar"}},
        InputArtifactsToRemove=["data"],
        Status={"PrimaryStatus": "Completed"},
        StartTime=1_700_000_000.0,
        EndTime="2023-11-14T22:15:00Z",
        DisplayName="Shown",
    )
    described = call(backend, "DescribeTrialComponent", TrialComponentName="tc")
    assert described["Parameters"] == {"a": {"NumberValue": 1.0}, "c": {"NumberValue": 3.0}}
    assert described["InputArtifacts"] == {}
    assert described["OutputArtifacts"]["model"]["MediaType"] == "application/x-tar"
    assert described["Status"] == {"PrimaryStatus": "Completed"}
    assert described["EndTime"] == 1_700_000_100.0
    assert described["DisplayName"] == "Shown"


def test_parameter_limit_applies_after_merging(backend: ExperimentsBackend) -> None:
    call(
        backend,
        "CreateTrialComponent",
        TrialComponentName="tc",
        Parameters={f"p{i}": {"NumberValue": i} for i in range(300)},
    )
    with pytest.raises(ValidationException, match="at most 300 parameters"):
        call(backend, "UpdateTrialComponent", TrialComponentName="tc", Parameters={"x": {"NumberValue": 1}})


def test_list_trial_components_filters_sorts_and_pages(backend: ExperimentsBackend) -> None:
    make_run(backend)
    call(backend, "CreateTrialComponent", TrialComponentName="b-loose")
    call(
        backend,
        "CreateTrialComponent",
        TrialComponentName="a-job",
        Source={"SourceArn": f"{ACCOUNT_ARN}:training-job/job", "SourceType": "SageMakerTrainingJob"},
    )

    def listed(**params) -> list[str]:
        response = call(backend, "ListTrialComponents", **params)
        return [s["TrialComponentName"] for s in response["TrialComponentSummaries"]]

    assert listed(TrialName="EXP-GROUP") == ["exp-run"]
    assert listed(ExperimentName="exp") == ["exp-run"]
    assert listed(SourceArn=f"{ACCOUNT_ARN}:training-job/JOB") == ["a-job"]
    assert listed(SortBy="Name", SortOrder="Ascending") == ["a-job", "b-loose", "exp-run"]
    assert listed() == ["a-job", "b-loose", "exp-run"]  # CreationTime, Descending
    first = call(backend, "ListTrialComponents", MaxResults=2, SortBy="Name", SortOrder="Ascending")
    rest = call(
        backend,
        "ListTrialComponents",
        MaxResults=2,
        SortBy="Name",
        SortOrder="Ascending",
        NextToken=first["NextToken"],
    )
    assert [s["TrialComponentName"] for s in rest["TrialComponentSummaries"]] == ["exp-run"]
    assert "NextToken" not in rest
    with pytest.raises(ValidationException, match="SourceArn"):
        call(backend, "ListTrialComponents", SourceArn="x", TrialName="exp-group")


def test_list_trials_by_component(backend: ExperimentsBackend) -> None:
    make_run(backend)
    call(backend, "CreateTrial", TrialName="other", ExperimentName="exp")
    summaries = call(backend, "ListTrials", TrialComponentName="exp-run")["TrialSummaries"]
    assert [s["TrialName"] for s in summaries] == ["exp-group"]
    assert len(call(backend, "ListTrials", ExperimentName="exp")["TrialSummaries"]) == 2


def test_batch_put_metrics_and_summaries(backend: ExperimentsBackend) -> None:
    call(backend, "CreateTrialComponent", TrialComponentName="tc")
    now = time.time()
    values = [3.0, 1.0, 2.0]
    response = metric(
        backend,
        "BatchPutMetrics",
        TrialComponentName="tc",
        MetricData=[
            {"MetricName": "loss", "Timestamp": now - 2 + i, "Step": i, "Value": v}
            for i, v in enumerate(values)
        ],
    )
    assert response == {}
    summary = call(backend, "DescribeTrialComponent", TrialComponentName="tc")["Metrics"][0]
    assert summary["MetricName"] == "loss"
    assert summary["SourceArn"].endswith("experiment-trial-component/tc")
    assert (summary["Max"], summary["Min"], summary["Last"], summary["Count"]) == (3.0, 1.0, 2.0, 3)
    assert summary["Avg"] == pytest.approx(2.0)
    assert summary["StdDev"] == pytest.approx(statistics.stdev(values))
    assert summary["TimeStamp"] == pytest.approx(now)


def test_batch_put_metrics_reports_bad_points_per_index(backend: ExperimentsBackend) -> None:
    call(backend, "CreateTrialComponent", TrialComponentName="tc")
    now = time.time()
    response = metric(
        backend,
        "BatchPutMetrics",
        TrialComponentName="tc",
        MetricData=[
            {"MetricName": "ok", "Timestamp": now, "Value": 1.0},
            {"MetricName": "old", "Timestamp": now - 15 * 24 * 3600, "Value": 1.0},
            {"MetricName": "future", "Timestamp": now + 3 * 3600, "Value": 1.0},
        ],
    )
    assert response == {
        "Errors": [
            {"Code": "VALIDATION_ERROR", "MetricIndex": 1},
            {"Code": "VALIDATION_ERROR", "MetricIndex": 2},
        ]
    }
    metrics = call(backend, "DescribeTrialComponent", TrialComponentName="tc")["Metrics"]
    assert [m["MetricName"] for m in metrics] == ["ok"]
    missing = metric(
        backend,
        "BatchPutMetrics",
        TrialComponentName="nope",
        MetricData=[{"MetricName": "m", "Timestamp": now, "Value": 1.0}],
    )
    assert missing == {"Errors": [{"Code": "VALIDATION_ERROR", "MetricIndex": 0}]}


def test_batch_get_metrics_per_step_and_per_period(backend: ExperimentsBackend) -> None:
    arn = call(backend, "CreateTrialComponent", TrialComponentName="tc")["TrialComponentArn"]
    base = (int(time.time()) // 3600 - 1) * 3600  # an hour boundary in the accepted window
    points = [(0, base + 1, 1.0), (0, base + 2, 3.0), (1, base + 61, 0.5), (None, base + 62, 9.0)]
    metric(
        backend,
        "BatchPutMetrics",
        TrialComponentName="tc",
        MetricData=[
            {"MetricName": "loss", "Timestamp": ts, "Value": v, **({"Step": s} if s is not None else {})}
            for s, ts, v in points
        ],
    )

    def query(**overrides) -> dict:
        q = {"MetricName": "loss", "ResourceArn": arn, "MetricStat": "Avg", "Period": "IterationNumber"}
        q["XAxisType"] = "IterationNumber"
        q.update(overrides)
        return metric(backend, "BatchGetMetrics", MetricQueries=[q])["MetricQueryResults"][0]

    assert query() == {"Status": "Complete", "XAxisValues": [0, 1], "MetricValues": [2.0, 0.5]}
    assert query(MetricStat="Last")["MetricValues"] == [3.0, 0.5]
    assert query(MetricStat="Count")["MetricValues"] == [2.0, 1.0]
    by_minute = query(Period="OneMinute", XAxisType="Timestamp", MetricStat="Max")
    assert by_minute["XAxisValues"] == [base, base + 60]
    assert by_minute["MetricValues"] == [3.0, 9.0]
    assert query(Start=base + 2, End=base + 61)["XAxisValues"] == [0, 1]
    assert query(Start=base + 3)["MetricValues"] == [0.5]
    assert query(Period="OneHour")["Status"] == "ValidationError"
    unknown = query(ResourceArn=f"{ACCOUNT_ARN}:experiment-trial-component/nope")
    assert unknown["Status"] == "ValidationError"
    assert "not found" in unknown["Message"]


def test_search_experiments_trials_components(backend: ExperimentsBackend) -> None:
    make_run(backend)
    call(backend, "CreateExperiment", ExperimentName="other", Tags=[{"Key": "team", "Value": "ml"}])
    metric(
        backend,
        "BatchPutMetrics",
        TrialComponentName="exp-run",
        MetricData=[{"MetricName": "loss", "Timestamp": time.time(), "Step": 0, "Value": 0.25}],
    )
    experiments = call(
        backend,
        "Search",
        Resource="Experiment",
        SearchExpression={"Filters": [{"Name": "Tags.team", "Operator": "Equals", "Value": "ml"}]},
    )
    assert [r["Experiment"]["ExperimentName"] for r in experiments["Results"]] == ["other"]
    trials = call(backend, "Search", Resource="ExperimentTrial")["Results"]
    assert trials[0]["Trial"]["TrialComponentSummaries"][0]["TrialComponentName"] == "exp-run"
    components = call(
        backend,
        "Search",
        Resource="ExperimentTrialComponent",
        SearchExpression={
            "Filters": [
                {"Name": "Parents.TrialName", "Operator": "Equals", "Value": "exp-group"},
                {"Name": "Metrics.loss.Max", "Operator": "LessThan", "Value": "0.5"},
            ]
        },
    )["Results"]
    assert [r["TrialComponent"]["TrialComponentName"] for r in components] == ["exp-run"]
    assert components[0]["TrialComponent"]["Parents"] == [{"TrialName": "exp-group", "ExperimentName": "Exp"}]


def test_search_training_jobs_from_a_registered_provider(backend: ExperimentsBackend) -> None:
    job = {"TrainingJobName": "j", "LastModifiedTime": 1.0, "ProfilingStatus": "Disabled", "Tags": []}
    backend.register_search_resource("TrainingJob", lambda: [job])
    results = call(backend, "Search", Resource="TrainingJob")["Results"]
    assert results == [{"TrainingJob": {"TrainingJobName": "j", "LastModifiedTime": 1.0, "Tags": []}}]
    assert call(backend, "Search", Resource="Endpoint")["Results"] == []


def test_link_job_creates_the_job_component_in_the_trial(backend: ExperimentsBackend) -> None:
    make_run(backend)
    job_arn = f"{ACCOUNT_ARN}:training-job/job-1"
    backend.link_job(
        "training",
        "job-1",
        job_arn,
        {"ExperimentName": "exp", "TrialName": "exp-group", "RunName": "exp-run"},
        {"lr": "0.1", "epochs": 3},
        {"train": "s3://b/train"},
        {},
    )
    described = call(backend, "DescribeTrialComponent", TrialComponentName="job-1-aws-training-job")
    assert described["Source"] == {"SourceArn": job_arn, "SourceType": "SageMakerTrainingJob"}
    assert described["Parameters"] == {"lr": {"StringValue": "0.1"}, "epochs": {"NumberValue": 3.0}}
    assert described["InputArtifacts"] == {"train": {"Value": "s3://b/train"}}
    listed = call(
        backend,
        "ListTrialComponents",
        SourceArn=job_arn.replace("job-1", "JOB-1"),
    )
    assert [s["TrialComponentName"] for s in listed["TrialComponentSummaries"]] == ["job-1-aws-training-job"]
    in_trial = call(backend, "ListTrialComponents", TrialName="exp-group")["TrialComponentSummaries"]
    assert {s["TrialComponentName"] for s in in_trial} == {"exp-run", "job-1-aws-training-job"}

    now = time.time()
    backend.update_job_component(
        "job-1",
        "training",
        status={"PrimaryStatus": "Completed", "Message": "done"},
        start_time=now - 5,
        end_time=now,
        metrics=[{"MetricName": "acc", "Value": 0.5, "Timestamp": now - 1, "Step": 0}],
        output_artifacts={"SageMaker.ModelArtifact": "s3://b/out/model.tar.gz"},
    )
    described = call(backend, "DescribeTrialComponent", TrialComponentName="job-1-aws-training-job")
    assert described["Status"] == {"PrimaryStatus": "Completed", "Message": "done"}
    assert described["Metrics"][0]["SourceArn"] == job_arn
    assert described["OutputArtifacts"]["SageMaker.ModelArtifact"]["Value"] == "s3://b/out/model.tar.gz"
    by_job_arn = metric(
        backend,
        "BatchGetMetrics",
        MetricQueries=[
            {
                "MetricName": "acc",
                "ResourceArn": job_arn,
                "MetricStat": "Last",
                "Period": "IterationNumber",
                "XAxisType": "IterationNumber",
            }
        ],
    )
    assert by_job_arn["MetricQueryResults"][0]["MetricValues"] == [0.5]


def test_link_job_with_a_missing_trial_creates_nothing(backend: ExperimentsBackend) -> None:
    with pytest.raises(ResourceNotFound):
        backend.link_job(
            "processing", "p", f"{ACCOUNT_ARN}:processing-job/p", {"TrialName": "nope"}, {}, {}, {}
        )
    assert call(backend, "ListTrialComponents")["TrialComponentSummaries"] == []


def test_link_job_with_only_an_experiment_creates_a_trial(backend: ExperimentsBackend) -> None:
    call(backend, "CreateExperiment", ExperimentName="exp")
    backend.link_job(
        "processing", "p", f"{ACCOUNT_ARN}:processing-job/p", {"ExperimentName": "exp"}, {}, {}, {}
    )
    trials = call(backend, "ListTrials", ExperimentName="exp")["TrialSummaries"]
    assert [t["TrialName"] for t in trials] == ["p-aws-processing-job"]
    assert trials[0]["TrialSource"]["SourceType"] == "SageMakerProcessingJob"


def test_link_job_without_experiment_config_still_creates_the_component(backend: ExperimentsBackend) -> None:
    backend.link_job("training", "solo", f"{ACCOUNT_ARN}:training-job/solo", None, {}, {}, {})
    assert call(backend, "DescribeTrialComponent", TrialComponentName="solo-aws-training-job")["Status"] == {
        "PrimaryStatus": "InProgress"
    }
    backend.update_job_component("unknown", "training", status={"PrimaryStatus": "Failed"})  # no-op


def test_records_survive_a_store_reopen(tmp_path: Path) -> None:
    path = tmp_path / "engine.sqlite3"
    first = ExperimentsBackend(EngineContext(Store(path), tmp_path))
    make_run(first)
    first.store.close()
    second = ExperimentsBackend(EngineContext(Store(path), tmp_path))
    assert call(second, "DescribeTrial", TrialName="exp-group")["ExperimentName"] == "Exp"


def test_tags_on_experiment_entities(backend: ExperimentsBackend) -> None:
    arn = call(backend, "CreateTrialComponent", TrialComponentName="tc", Tags=[{"Key": "a", "Value": "1"}])[
        "TrialComponentArn"
    ]
    assert backend.owns_arn(arn)
    assert not backend.owns_arn(f"{ACCOUNT_ARN}:training-job/j")
    backend.add_tags(arn, [{"Key": "a", "Value": "2"}, {"Key": "b", "Value": "3"}])
    backend.delete_tags(arn, ["b"])
    assert backend.list_tags(arn) == [{"Key": "a", "Value": "2"}]
    with pytest.raises(ResourceNotFound):
        backend.list_tags(f"{ACCOUNT_ARN}:experiment/nope")
    with pytest.raises(ValidationException, match="at most 50 tags"):
        backend.add_tags(arn, [{"Key": f"k{i}", "Value": ""} for i in range(50)])
