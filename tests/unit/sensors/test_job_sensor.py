"""JobSensor's pure parts: which jobs it waits on, its defaults, execute_complete."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_sm_provider._compat import AirflowException
from airflow_sm_provider.errors import SageMakerApiError
from airflow_sm_provider.job_kinds import JobKind
from airflow_sm_provider.sensors.jobs import DEFAULT_TIMEOUT, JobSensor, job_refs


def test_accepts_summaries_mapped_lists_and_plain_names():
    mapped = [[{"kind": "training", "name": "a", "arn": "x"}], {"kind": "training", "name": "b"}]
    assert job_refs(mapped) == [(JobKind.TRAINING, "a"), (JobKind.TRAINING, "b")]
    assert job_refs({"kind": "processing", "name": "p"}) == [(JobKind.PROCESSING, "p")]
    assert job_refs(["x", "x", "y"], "training") == [(JobKind.TRAINING, "x"), (JobKind.TRAINING, "y")]


@pytest.mark.parametrize("jobs", [[], "name-without-kind", [{"kind": "training"}], [3]])
def test_rejects_what_it_cannot_wait_on(jobs):
    with pytest.raises(ValueError):
        job_refs(jobs)


def test_defaults_outlast_28_days_pending_plus_28_running_and_all_arguments_are_templated():
    sensor = JobSensor(task_id="s", jobs="x", job_kind="training")
    assert sensor.timeout == DEFAULT_TIMEOUT > (28 + 28) * 86400
    assert sensor.deferrable and not sensor.stop_on_kill
    assert {"jobs", "job_kind", "botocore_config", "stopped_ok"} <= set(sensor.template_fields)
    assert "hook" not in sensor.__dict__


class FailingHook:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def job_states(self, refs):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        SageMakerApiError("Search", "ThrottlingException", "Rate exceeded", 400),
        SageMakerApiError("Search", "InternalFailure", "oops", 500),
        "connection",
    ],
)
def test_a_transient_poke_error_pokes_again(error):
    from botocore.exceptions import EndpointConnectionError

    if error == "connection":
        error = EndpointConnectionError(endpoint_url="https://api.sagemaker.example")
    sensor = JobSensor(task_id="s", jobs="x", job_kind="training", deferrable=False)
    sensor.__dict__["hook"] = FailingHook(error)
    assert sensor.poke({}) is False


def test_a_lasting_poke_error_fails():
    sensor = JobSensor(task_id="s", jobs="x", job_kind="training", deferrable=False)
    denied = SageMakerApiError("DescribeTrainingJob", "AccessDeniedException", "no", 400)
    sensor.__dict__["hook"] = FailingHook(denied)
    with pytest.raises(SageMakerApiError, match="AccessDenied"):
        sensor.poke({})


def test_execute_complete_raises_listing_failures_and_returns_summaries():
    sensor = JobSensor(task_id="s", jobs="x", job_kind="training")
    with pytest.raises(AirflowException, match="b ended Failed: boom"):
        sensor.execute_complete(
            {}, {"status": "error", "jobs": [], "message": "1 of 2: training job b ended Failed: boom"}
        )
    jobs = [{"kind": "training", "name": "a", "status": "Completed"}]
    assert sensor.execute_complete({}, {"status": "success", "jobs": jobs, "message": ""}) == jobs
    with pytest.raises(AirflowException, match="Stopped"):  # a success event that hides a stop
        sensor.execute_complete(
            {}, {"status": "success", "jobs": [{"kind": "training", "name": "a", "status": "Stopped"}]}
        )
    for bad in (None, {}, {"status": "maybe"}, {"status": "success", "jobs": []}):
        with pytest.raises(AirflowException):
            sensor.execute_complete({}, bad)


def test_module_imports_no_aws_sdk():
    code = (
        "import sys, airflow_sm_provider.sensors.jobs; "
        "heavy = [m for m in ('botocore', 'aiobotocore', 'airflow.providers.amazon.aws.hooks.base_aws') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_tracked_runs_come_from_the_summaries_that_carry_one():
    from airflow_sm_provider.sensors.jobs import tracked_runs
    from airflow_sm_provider.tracking.base import RunRef

    run = {"backend": "experiments", "experiment": "e", "run_name": "r", "record": "e-r", "arn": "arn:tc"}
    mapped = [[{"kind": "training", "name": "a", "run": run}], {"kind": "training", "name": "b"}, "c"]
    assert tracked_runs(mapped) == {"a": RunRef("experiments", "e", "r", "e-r", "arn:tc")}
    with pytest.raises(ValueError, match="without record"):
        tracked_runs([{"kind": "training", "name": "a", "run": {**run, "record": ""}}])
