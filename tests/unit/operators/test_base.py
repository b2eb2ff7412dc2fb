"""The operator's flow (validate -> start -> return / defer / poll, execute_complete, on_kill).

A recording hook stands in for SageMakerJobsHook here so each branch runs in milliseconds;
the same flows run against the real hook and the local engine in
tests/integration/operators/test_job_operators.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from airflow_sm_provider._compat import AirflowException, AirflowFailException
from airflow_sm_provider.job_kinds import JobKind, Outcome
from airflow_sm_provider.operators.jobs import ProcessingJobOperator, TrainingJobOperator
from airflow_sm_provider.validation import ConfigValidationError

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
ARN = "arn:aws:sagemaker:eu-west-1:123456789012:training-job/train-abc"


def training_config(**overrides: Any) -> dict:
    config = {
        "TrainingJobName": "train",
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/models", "KmsKeyId": "alias/k"},
        "ResourceConfig": {
            "InstanceCount": "{{ params.count }}",
            "InstanceType": "ml.m5.large",
            "VolumeSizeInGB": 5,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": "{{ params.runtime }}", "MaxWaitTimeInSeconds": 7200},
        "EnableManagedSpotTraining": True,
        "VpcConfig": {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]},
    }
    config.update(overrides)
    return config


class RecordingHook:
    """Stands in for SageMakerJobsHook: records calls, replays a list of job states."""

    def __init__(self, states: list[tuple[str, str | None, Outcome]] | None = None, final: str = "Completed"):
        self.calls: list[tuple[str, Any]] = []
        self.states = list(states or [])
        self.final = final

    def start_job(self, kind, config, identity, *, force_new=False):
        self.calls.append(("start_job", (kind, config, identity, force_new)))
        return SimpleNamespace(name="train-abc", arn=ARN, action="created")

    def describe_job(self, kind, name):
        self.calls.append(("describe_job", name))
        return {
            "TrainingJobName": name,
            "TrainingJobArn": ARN,
            "TrainingJobStatus": self.final,
            "SecondaryStatus": "Completed" if self.final == "Completed" else "Failed",
            "FailureReason": None if self.final == "Completed" else "AlgorithmError: boom",
        }

    def job_states(self, jobs):
        self.calls.append(("job_states", list(jobs)))
        status, secondary, outcome = self.states.pop(0)
        return {jobs[0][1]: SimpleNamespace(status=status, secondary_status=secondary, outcome=outcome)}

    def stop_job(self, kind, name):
        self.calls.append(("stop_job", name))
        return True


class Ti:
    """The few task-instance attributes the operator reads, plus XCom recording."""

    dag_id, run_id, task_id, map_index = "dag", "manual__1", "train", -1

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def make(hook: RecordingHook, **kwargs: Any) -> TrainingJobOperator:
    kwargs.setdefault("config", training_config())
    kwargs.setdefault("check_inputs_exist", False)
    kwargs.setdefault("print_log", False)
    op = TrainingJobOperator(task_id="train", params={"count": 2, "runtime": 3600}, **kwargs)
    op.__dict__["hook"] = hook
    return op


def render(op: TrainingJobOperator) -> dict:
    context = {"params": {"count": 2, "runtime": 3600}, "ti": Ti()}
    op.render_template_fields(context)
    return context


def test_hook_is_not_built_at_construction():
    op = TrainingJobOperator(task_id="t", config=training_config())
    assert "hook" not in op.__dict__
    assert "config" in op.template_fields


def test_rendered_integers_converted_and_settings_pass_through():
    hook = RecordingHook()
    op = make(hook, wait_for_completion=False)
    context = render(op)
    op.execute(context)
    kind, config, identity, _ = hook.calls[0][1]
    assert kind == JobKind.TRAINING
    assert config["ResourceConfig"]["InstanceCount"] == 2
    assert config["StoppingCondition"]["MaxRuntimeInSeconds"] == 3600
    assert config["OutputDataConfig"]["KmsKeyId"] == "alias/k"
    assert config["VpcConfig"] == {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]}
    assert config["EnableManagedSpotTraining"] is True
    assert (identity.dag_id, identity.run_id, identity.task_id, identity.map_index) == (
        "dag",
        "manual__1",
        "train",
        -1,
    )
    assert context["ti"].xcoms["sagemaker_training_job_link"]["region_name"] == "eu-west-1"


def test_bad_config_makes_no_aws_call():
    hook = RecordingHook()
    op = make(hook, config=training_config(S3Operations={"S3Upload": []}, RoleArn="role"))
    with pytest.raises(AirflowFailException) as info:  # fails without retries: a retry cannot fix it
        op.execute(render(op))
    assert isinstance(info.value.__cause__, ConfigValidationError)
    assert "config.S3Operations" in str(info.value) and "config.RoleArn" in str(info.value)
    assert hook.calls == []


def test_not_waiting_returns_summary_not_describe():
    hook = RecordingHook(final="InProgress")
    op = make(hook, wait_for_completion=False)
    summary = op.execute(render(op))
    assert summary["name"] == "train-abc" and summary["arn"] == ARN
    assert "TrainingJobStatus" not in summary
    assert [c[0] for c in hook.calls] == ["start_job", "describe_job"]


def test_deferrable_defers_to_job_status_trigger():
    from airflow_sm_provider._compat import TaskDeferred
    from airflow_sm_provider.triggers.jobs import JobStatusTrigger

    op = make(RecordingHook(), deferrable=True, stopped_ok=True)
    with pytest.raises(TaskDeferred) as info:
        op.execute(render(op))
    trigger = info.value.trigger
    assert isinstance(trigger, JobStatusTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs["jobs"] == [{"kind": "training", "name": "train-abc"}]
    assert kwargs["stop_on_kill"] is True and kwargs["stopped_ok"] is True
    assert info.value.method_name == "execute_complete"


def test_execute_complete_raises_with_every_reason():
    op = make(RecordingHook())
    event = {
        "status": "error",
        "message": "1 job failed",
        "jobs": [
            {
                "kind": "training",
                "name": "train-abc",
                "status": "Stopped",
                "secondary_status": "MaxRuntimeExceeded",
                "failure_reason": "ran out of time",
            }
        ],
    }
    with pytest.raises(
        AirflowException, match=r"train-abc ended Stopped / MaxRuntimeExceeded: ran out of time"
    ):
        op.execute_complete({}, event)


@pytest.mark.parametrize("event", [None, {}, {"status": "weird"}, {"status": "success", "jobs": []}])
def test_execute_complete_rejects_malformed_events(event):
    with pytest.raises(AirflowException):
        make(RecordingHook()).execute_complete({}, event)


def test_execute_complete_returns_summary():
    summary = {"kind": "training", "name": "train-abc", "status": "Completed"}
    assert make(RecordingHook()).execute_complete({}, {"status": "success", "jobs": [summary]}) == summary


def test_polling_backs_off_logs_status_changes_and_raises_on_failure(monkeypatch, capsys):
    sleeps: list[float] = []
    monkeypatch.setattr("airflow_sm_provider.operators.base.time.sleep", sleeps.append)
    hook = RecordingHook(
        states=[
            ("InProgress", "Starting", Outcome.RUNNING),
            ("InProgress", "Starting", Outcome.RUNNING),
            ("InProgress", "Training", Outcome.RUNNING),
            ("Failed", "Failed", Outcome.FAILED),
        ],
        final="Failed",
    )
    op = make(hook, deferrable=False, poll_interval=10, max_poll_interval=12)
    with pytest.raises(AirflowException, match="AlgorithmError: boom"):
        op.execute(render(op))
    assert sleeps == [10, 12, 10]  # backoff capped, reset when the status changes
    assert "InProgress / Training" in capsys.readouterr().out  # Airflow 3 logs through structlog
    assert ("stop_job", "train-abc") not in hook.calls
    op.on_kill()  # the job already ended: nothing to stop
    assert ("stop_job", "train-abc") not in hook.calls


def test_on_kill_stops_running_job(monkeypatch):
    hook = RecordingHook(states=[("InProgress", "Training", Outcome.RUNNING)])
    op = make(hook, deferrable=False)

    def killed(_seconds: float) -> None:
        op.on_kill()
        raise KeyboardInterrupt

    monkeypatch.setattr("airflow_sm_provider.operators.base.time.sleep", killed)
    with pytest.raises(KeyboardInterrupt):
        op.execute(render(op))
    assert ("stop_job", "train-abc") in hook.calls


def test_processing_operator_kind_and_link():
    op = ProcessingJobOperator(task_id="p", config={})
    assert op.job_kind == JobKind.PROCESSING
    assert [link.name for link in op.operator_extra_links] == ["SageMaker Processing Job"]


def test_namespace_from_config(monkeypatch):
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__NAMESPACE", "staging")
    op = make(RecordingHook())
    assert op.identity({"ti": Ti()}).namespace == "staging"
    assert make(RecordingHook(), namespace="prod").identity({"ti": Ti()}).namespace == "prod"
