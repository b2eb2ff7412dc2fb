from __future__ import annotations

import threading
import time

import pytest

from airflow_sm_provider.local import lifecycle
from airflow_sm_provider.local.context import EngineContext
from airflow_sm_provider.local.control import Control
from airflow_sm_provider.local.errors import ResourceInUse, ValidationException
from airflow_sm_provider.local.job_experiments import run_component_name
from airflow_sm_provider.local.job_records import PROCESSING, TRAINING, to_describe_training
from airflow_sm_provider.local.jobs import JobsBackend
from airflow_sm_provider.local.responses import list_page
from airflow_sm_provider.local.scheduler import ActiveJob, Slots
from airflow_sm_provider.local.store import Store


@pytest.fixture
def backend(tmp_path):
    return JobsBackend(EngineContext(store=Store(), data_dir=tmp_path), mount_namespace=False)


def test_recover_fails_jobs_that_were_running_and_keeps_the_rest(backend):
    store = backend.ctx.store
    running = {
        "TrainingJobName": "a",
        "ResourceConfig": {"InstanceCount": 1},
        **lifecycle.new_training_state(1.0),
    }
    running = lifecycle.advance_training(running, lifecycle.Event.DOWNLOAD, 2.0)
    done = lifecycle.advance_training(running, lifecycle.Event.FAIL, 3.0, failure_reason="own")
    store.insert(TRAINING, "a", running)
    store.insert(TRAINING, "b", {**done, "TrainingJobName": "b"})
    store.insert(PROCESSING, "p", {"ProcessingJobName": "p", **lifecycle.new_processing_state(1.0)})
    backend.recover()
    a, b, p = store.get(TRAINING, "a"), store.get(TRAINING, "b"), store.get(PROCESSING, "p")
    assert (a["TrainingJobStatus"], a["SecondaryStatus"]) == ("Failed", "Failed")
    assert "engine restarted" in a["FailureReason"] and "TrainingEndTime" in a
    assert b["FailureReason"] == "own"
    assert p["ProcessingJobStatus"] == "Failed" and "engine restarted" in p["FailureReason"]


def test_describe_is_built_from_model_fields_only():
    record = {"TrainingJobName": "a", "Tags": [{"Key": "k", "Value": "v"}], "internal": 1}
    assert to_describe_training(record) == {"TrainingJobName": "a"}


@pytest.mark.parametrize(
    ("config", "run_name"),
    [
        ({"ExperimentName": "Exp", "RunName": "exp-run-1"}, "exp-run-1"),
        ({"ExperimentName": "Exp", "RunName": "Run-1"}, "exp-run-1"),
        ({"ExperimentName": "exp", "TrialName": "t"}, None),
    ],
)
def test_run_name_is_the_runs_trial_component(config, run_name):
    assert run_component_name(config).get("RunName") == run_name


def test_slots_are_fifo_and_bounded():
    slots = Slots(1)
    order: list[str] = []
    assert slots.acquire("a", Control(), lambda: None)
    queued = threading.Event()

    def take(name: str) -> None:
        slots.acquire(name, Control(), queued.set)
        order.append(name)
        slots.release(name)

    waiters = [threading.Thread(target=take, args=(n,)) for n in ("b", "c")]
    waiters[0].start()
    assert queued.wait(2)
    time.sleep(0.05)
    waiters[1].start()
    time.sleep(0.1)
    assert order == []
    slots.release("a")
    for t in waiters:
        t.join(2)
    assert order == ["b", "c"]


def test_waiting_for_a_slot_ends_on_stop():
    slots = Slots(1)
    slots.acquire("a", Control(), lambda: None)
    control = Control()
    control.stop.set()
    assert slots.acquire("b", control, lambda: None) is False


def test_job_credentials_need_the_jobs_token(backend):
    backend._active["TrainingJob/job"] = ActiveJob(Control(), "secret-token", {"AccessKeyId": "ASIA1"})
    assert backend.job_credentials("JOB", "secret-token") == {"AccessKeyId": "ASIA1"}
    assert backend.job_credentials("job", "wrong") is None
    assert backend.job_credentials("other", "secret-token") is None


def test_paging_tokens_round_trip_and_reject_garbage():
    items = [{"n": i} for i in range(5)]
    first = list_page(items, {"MaxResults": 2}, "X")
    second = list_page(items, {"MaxResults": 2, "NextToken": first["NextToken"]}, "X")
    assert [i["n"] for i in first["X"] + second["X"]] == [0, 1, 2, 3]
    with pytest.raises(ValidationException):
        list_page(items, {"NextToken": "garbage"}, "X")


class _Experiments:
    """Records the trial components a backend links; refuses the trial named "missing"."""

    def __init__(self) -> None:
        self.linked: list[str] = []

    def link_job(self, job_type, name, arn, config, parameters, inputs, outputs) -> None:
        if config.get("TrialName") == "missing":
            raise ValidationException("Trial missing does not exist")
        self.linked.append(name)


def _training_params(name: str, **extra) -> dict:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "local/python", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/R",
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        **extra,
    }


def test_a_duplicate_create_links_no_trial_component_and_a_refused_link_stores_no_job(tmp_path, monkeypatch):
    experiments = _Experiments()
    backend = JobsBackend(
        EngineContext(store=Store(), data_dir=tmp_path), experiments=experiments, mount_namespace=False
    )
    monkeypatch.setattr(backend, "_start", lambda *args: None)
    backend.create_training_job(_training_params("job"))
    with monkeypatch.context() as race:  # the first create had not stored its job when this one looked
        race.setattr(backend.ctx.store, "get", lambda kind, name: None)
        with pytest.raises(ResourceInUse):
            backend.create_training_job(_training_params("job"))
    assert experiments.linked == ["job"]
    with pytest.raises(ValidationException, match="missing"):
        backend.create_training_job(_training_params("other", ExperimentConfig={"TrialName": "missing"}))
    assert backend.ctx.store.get(TRAINING, "other") is None
