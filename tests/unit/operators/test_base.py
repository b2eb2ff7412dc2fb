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
from airflow_sm_provider.errors import ConfigValidationError, SageMakerApiError
from airflow_sm_provider.job_kinds import JobKind, Outcome, job_summary
from airflow_sm_provider.operators.jobs import ProcessingJobOperator, TrainingJobOperator
from airflow_sm_provider.status_poll import JobState

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
    """Stands in for SageMakerJobsHook: records calls, replays a list of job states.

    An exception in ``states`` is raised by that poll instead. With ``confirmed``, a terminal
    state carries the job's summary, as the real poll's confirming Describe does.
    """

    def __init__(
        self,
        states: list[tuple[str, str | None, Outcome] | BaseException] | None = None,
        final: str = "Completed",
        confirmed: bool = False,
    ):
        self.calls: list[tuple[str, Any]] = []
        self.states = list(states or [])
        self.final = final
        self.confirmed = confirmed

    def start_job(self, kind, config, identity, *, force_new=False):
        self.calls.append(("start_job", (kind, config, identity, force_new)))
        return SimpleNamespace(name="train-abc", arn=ARN, action="created")

    def describe_job(self, kind, name):
        self.calls.append(("describe_job", name))
        return self._describe(name)

    def _describe(self, name):
        return {
            "TrainingJobName": name,
            "TrainingJobArn": ARN,
            "TrainingJobStatus": self.final,
            "SecondaryStatus": "Completed" if self.final == "Completed" else "Failed",
            "FailureReason": None if self.final == "Completed" else "AlgorithmError: boom",
        }

    def job_states(self, jobs):
        self.calls.append(("job_states", list(jobs)))
        state = self.states.pop(0)
        if isinstance(state, BaseException):
            raise state
        status, secondary, outcome = state
        kind, name = jobs[0]
        summary = None
        if self.confirmed and outcome.terminal:
            summary = job_summary(kind, {**self._describe(name), "TrainingJobStatus": status})
        return {name: JobState(kind, name, outcome, status, secondary, summary=summary)}

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


@pytest.mark.parametrize("event", [{}, {"status": "weird"}, {"status": "success", "jobs": []}])
def test_execute_complete_rejects_malformed_events(event):
    with pytest.raises(AirflowException):
        make(RecordingHook()).execute_complete({}, event)


def test_execute_complete_returns_summary():
    summary = {"kind": "training", "name": "train-abc", "status": "Completed"}
    assert make(RecordingHook()).execute_complete({}, {"status": "success", "jobs": [summary]}) == summary


class Clock:
    """``time.monotonic`` and ``time.sleep`` of the operator module: sleeping advances the clock."""

    def __init__(self, monkeypatch) -> None:
        self.now, self.sleeps = 1000.0, []
        monkeypatch.setattr("airflow_sm_provider.operators.base.time.monotonic", lambda: self.now)
        monkeypatch.setattr("airflow_sm_provider.operators.base.time.sleep", self.sleep)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_polling_backs_off_logs_status_changes_and_raises_on_failure(monkeypatch, capsys):
    delays: list[float] = []

    def delay(elapsed, poll_interval, max_poll_interval):  # the trigger's backoff, without jitter
        delays.append(elapsed)
        return min(max_poll_interval, max(poll_interval, elapsed / 10))

    monkeypatch.setattr("airflow_sm_provider.status_poll.poll_delay", delay)
    clock = Clock(monkeypatch)
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
    assert delays == [0, 10, 0]  # measured from the last status change
    assert clock.sleeps == [10, 10, 10]
    assert "InProgress / Training" in capsys.readouterr().out  # Airflow 3 logs through structlog
    assert ("stop_job", "train-abc") not in hook.calls
    op.on_kill()  # the job already ended: nothing to stop
    assert ("stop_job", "train-abc") not in hook.calls


def test_polling_uses_the_shared_jittered_backoff(monkeypatch):
    clock = Clock(monkeypatch)
    hook = RecordingHook(
        states=[("InProgress", "Training", Outcome.RUNNING)] * 30 + [("Completed", None, Outcome.SUCCEEDED)]
    )
    op = make(hook, deferrable=False, poll_interval=10, max_poll_interval=40)
    op.execute(render(op))
    assert all(8 <= delay <= 40 for delay in clock.sleeps)
    assert max(clock.sleeps) > 20  # grows with the time since the status changed


def test_failure_message_is_the_jobs_status_and_reason_once(monkeypatch):
    Clock(monkeypatch)
    hook = RecordingHook(states=[("Failed", "Failed", Outcome.FAILED)], final="Failed", confirmed=True)
    op = make(hook, deferrable=False)
    with pytest.raises(AirflowException) as info:
        op.execute(render(op))
    assert str(info.value) == "training job train-abc ended Failed / Failed: AlgorithmError: boom"
    assert "describe_job" not in [c[0] for c in hook.calls]  # the poll's Describe is reused


def test_transient_poll_errors_are_polled_again(monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    clock = Clock(monkeypatch)
    hook = RecordingHook(
        states=[
            SageMakerApiError("Search", "ThrottlingException", "Rate exceeded"),
            SageMakerApiError("Search", "InternalFailure", "oops", http_status=500),
            EndpointConnectionError(endpoint_url="https://api.sagemaker"),
            ("Completed", "Completed", Outcome.SUCCEEDED),
        ]
    )
    op = make(hook, deferrable=False)
    assert op.execute(render(op))["status"] == "Completed"
    assert len(clock.sleeps) == 3
    assert ("stop_job", "train-abc") not in hook.calls


@pytest.mark.parametrize(
    "error",
    [SageMakerApiError("Search", "AccessDeniedException", "not allowed", 400), RuntimeError("bug")],
)
def test_a_failed_wait_stops_the_running_job(monkeypatch, error):
    Clock(monkeypatch)
    hook = RecordingHook(states=[("InProgress", "Training", Outcome.RUNNING), error])
    op = make(hook, deferrable=False)
    with pytest.raises(type(error)) as info:
        op.execute(render(op))
    assert hook.calls[-1] == ("stop_job", "train-abc")
    assert "Stop of SageMaker training job train-abc requested" in "\n".join(info.value.__notes__)


def test_execute_complete_stops_the_job_when_the_wait_failed():
    hook = RecordingHook()
    op = make(hook)
    event = {
        "status": "error",
        "reason": "poll_failed",
        "jobs": [{"kind": "training", "name": "train-abc"}],
        "message": "cannot poll job status: Search failed: AccessDeniedException: no",
    }
    with pytest.raises(AirflowException) as info:
        op.execute_complete({}, event)
    assert hook.calls == [("stop_job", "train-abc")]
    message = str(info.value)
    assert message.startswith("cannot poll job status: Search failed: AccessDeniedException: no\n")
    assert "Stop of SageMaker training job train-abc requested" in message
    assert "ended" not in message  # the job has not ended
    assert message.count("AccessDeniedException") == 1
    op.on_kill()  # already asked: not twice
    assert hook.calls == [("stop_job", "train-abc")]


def test_execute_complete_stops_a_job_the_event_shows_running():
    """An error event without the ``reason`` key still stops a job not in a terminal status."""
    hook = RecordingHook()
    event = {"status": "error", "jobs": [{"kind": "training", "name": "train-abc", "status": "InProgress"}]}
    with pytest.raises(AirflowException, match="train-abc requested"):
        make(hook).execute_complete({}, event)
    assert hook.calls == [("stop_job", "train-abc")]


def test_execute_complete_uses_the_trigger_message_alone():
    hook = RecordingHook()
    line = "training job train-abc ended Failed: AlgorithmError: boom"
    event = {
        "status": "error",
        "message": f"1 of 1 SageMaker job(s) did not succeed:\n{line}",
        "jobs": [
            {
                "kind": "training",
                "name": "train-abc",
                "status": "Failed",
                "failure_reason": "AlgorithmError: boom",
            }
        ],
    }
    with pytest.raises(AirflowException) as info:
        make(hook).execute_complete({}, event)
    assert str(info.value) == event["message"]  # the line once, not repeated
    assert hook.calls == []  # the job ended: nothing to stop


class DeniedLogs:
    """A CloudWatch Logs client without logs:* rights (moto cannot deny a call)."""

    def __init__(self) -> None:
        self.calls = 0

    def describe_log_streams(self, **_):
        from botocore.exceptions import ClientError

        self.calls += 1
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "DescribeLogStreams")


def test_unreadable_logs_do_not_fail_a_succeeded_job(monkeypatch, capsys):
    from airflow_sm_provider.hooks.logs import JobLogTailer

    Clock(monkeypatch)
    hook = RecordingHook(
        states=[("InProgress", "Training", Outcome.RUNNING), ("Completed", "Completed", Outcome.SUCCEEDED)]
    )
    op = make(hook, deferrable=False, print_log=True)
    client = DeniedLogs()
    op.__dict__["_log_tailer"] = JobLogTailer(client, "/aws/sagemaker/TrainingJobs", "train-abc")
    assert op.execute(render(op))["status"] == "Completed"
    assert client.calls == 1  # warned once, then tailing is off
    assert capsys.readouterr().out.count("Cannot read the CloudWatch Logs") == 1
    summary = {"kind": "training", "name": "train-abc", "status": "Completed"}
    assert op.execute_complete({}, {"status": "success", "jobs": [summary]}) == summary


def test_a_logs_client_that_cannot_be_built_does_not_fail_the_task(monkeypatch):
    from botocore.exceptions import NoCredentialsError

    class NoLogsHook:
        def __init__(self, **_):
            raise NoCredentialsError

    monkeypatch.setattr("airflow.providers.amazon.aws.hooks.logs.AwsLogsHook", NoLogsHook)
    summary = {"kind": "training", "name": "train-abc", "status": "Completed"}
    op = make(RecordingHook(), print_log=True)
    assert op.execute_complete({}, {"status": "success", "jobs": [summary]}) == summary


def test_after_deferral_the_end_of_the_log_is_copied(capsys):
    class Logs:
        def __init__(self) -> None:
            self.reads: list[dict] = []

        def describe_log_streams(self, **_):
            return {"logStreams": [{"logStreamName": "train-abc/algo-1-1"}]}

        def get_log_events(self, **kwargs):
            self.reads.append(kwargs)
            return {"events": [{"timestamp": 1, "message": "Traceback: boom"}], "nextBackwardToken": "b"}

    from airflow_sm_provider.hooks.logs import JobLogTailer

    op = make(RecordingHook(), print_log=True)
    client = Logs()
    op.__dict__["_log_tailer"] = JobLogTailer(client, "/aws/sagemaker/TrainingJobs", "train-abc")
    event = {
        "status": "error",
        "message": "failed",
        "jobs": [{"kind": "training", "name": "train-abc", "status": "Failed"}],
    }
    with pytest.raises(AirflowException):
        op.execute_complete({}, event)
    assert client.reads[0]["startFromHead"] is False
    assert "[algo-1-1] Traceback: boom" in capsys.readouterr().out


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


def test_the_triggers_poll_failed_event_stops_the_job():
    """The trigger's own event for a failed wait, not a hand-written copy of it."""
    from airflow_sm_provider.triggers.jobs import JobStatusTrigger

    trigger = JobStatusTrigger(jobs=[{"kind": "training", "name": "train-abc"}], aws_conn_id=None)
    event = trigger.poll_failed_event(SageMakerApiError("Search", "AccessDeniedException", "no"))
    hook = RecordingHook()
    with pytest.raises(AirflowException, match="train-abc requested"):
        make(hook).execute_complete({}, event)
    assert hook.calls == [("stop_job", "train-abc")]


def test_a_failed_wait_without_a_job_name_says_nothing_was_stopped():
    hook = RecordingHook()
    with pytest.raises(AirflowException, match="No SageMaker training job name is known"):
        make(hook).execute_complete({}, {"status": "error", "message": "lost", "jobs": []})
    assert hook.calls == []
