"""SageMakerJobsHook against the local engine: idempotent start, errors with codes, batched status."""

from __future__ import annotations

import time
import uuid

import pytest
from botocore.exceptions import ClientError
from jobs_support import training_config, upload_script, wait_terminal

from airflow_sm_provider.aws_args import AwsArgs
from airflow_sm_provider.errors import JobOwnershipError, SageMakerApiError
from airflow_sm_provider.hooks.jobs import SageMakerJobsHook, jobs_hook
from airflow_sm_provider.job_kinds import JobKind, Outcome
from airflow_sm_provider.naming import JobIdentity, job_name

pytestmark = pytest.mark.integration


def identity() -> JobIdentity:
    return JobIdentity("itest", "dag", f"manual__{uuid.uuid4().hex}", "train")


def wait_secondary(hook: SageMakerJobsHook, name: str, secondary: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (job := hook.describe_job(JobKind.TRAINING, name))["SecondaryStatus"] != secondary:
        assert time.monotonic() < deadline, job["SecondaryStatus"]
        time.sleep(0.05)


def deny(**_) -> None:
    """Fault injection in the test: the answer AWS gives a policy without sagemaker:Search."""
    raise ClientError(
        {
            "Error": {"Code": "AccessDeniedException", "Message": "not authorized: sagemaker:Search"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "Search",
    )


@pytest.fixture
def hook(aws_env) -> SageMakerJobsHook:
    return jobs_hook(AwsArgs(aws_conn_id=None))


@pytest.fixture
def code(engine, s3_bucket):
    def make(script: str) -> str:
        return upload_script(engine.client("s3"), s3_bucket, script)

    return make


def test_retry_attaches_to_the_running_job_instead_of_starting_a_second(hook, s3_bucket, code):
    config = training_config(s3_bucket, code("import time; time.sleep(30)"))
    who = identity()
    first = hook.start_job(JobKind.TRAINING, config, who)
    retry = hook.start_job(JobKind.TRAINING, config, who)
    assert first.action == "created" and retry.action == "attached" and retry.name == first.name
    assert first.name == job_name("hook-train", who)
    listed = hook.conn.list_training_jobs(NameContains=first.name)["TrainingJobSummaries"]
    assert len(listed) == 1
    assert hook.stop_job(JobKind.TRAINING, first.name) is True


def test_retry_after_a_kill_does_not_attach_to_the_stopping_job(hook, s3_bucket, code):
    """A killed try leaves its job Stopping; the retry must start the next job, not wait on that one."""
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"
    config = training_config(s3_bucket, code(script))
    who = identity()
    first = hook.start_job(JobKind.TRAINING, config, who)
    wait_secondary(hook, first.name, "Training")
    assert hook.stop_job(JobKind.TRAINING, first.name) is True
    assert hook.describe_job(JobKind.TRAINING, first.name)["TrainingJobStatus"] == "Stopping"
    retry = hook.start_job(JobKind.TRAINING, config, who)
    assert retry.action == "created" and retry.name == job_name("hook-train", who, "2")
    hook.stop_job(JobKind.TRAINING, retry.name)


def test_completed_job_is_reused_failed_one_gets_a_new_name(hook, s3_bucket, code):
    who = identity()
    config = training_config(s3_bucket, code("print('ok')"))
    first = hook.start_job(JobKind.TRAINING, config, who)
    wait_terminal(hook, first.name)
    assert hook.start_job(JobKind.TRAINING, config, who).action == "reused"
    forced = hook.start_job(JobKind.TRAINING, config, who, force_new=True)
    assert forced.action == "created" and forced.name == job_name("hook-train", who, "2")

    failing = training_config(s3_bucket, code("raise SystemExit(3)"))
    who = identity()
    failed = hook.start_job(JobKind.TRAINING, failing, who)
    assert wait_terminal(hook, failed.name)["TrainingJobStatus"] == "Failed"
    again = hook.start_job(JobKind.TRAINING, failing, who)
    assert again.action == "created" and again.name != failed.name


def test_changed_config_of_a_completed_job_starts_a_new_one(hook, s3_bucket, code):
    who = identity()
    first = hook.start_job(JobKind.TRAINING, training_config(s3_bucket, code("print(1)")), who)
    wait_terminal(hook, first.name)
    changed = hook.start_job(JobKind.TRAINING, training_config(s3_bucket, code("print(2)")), who)
    assert changed.action == "created" and changed.name != first.name


def test_a_strangers_job_under_our_name_is_never_adopted(hook, s3_bucket, code):
    who = identity()
    config = training_config(s3_bucket, code("print('x')"))
    hook.conn.create_training_job(**{**config, "TrainingJobName": job_name("hook-train", who)})
    with pytest.raises(JobOwnershipError, match="not started by this task"):
        hook.start_job(JobKind.TRAINING, config, who)


def test_client_errors_keep_their_code_and_message(hook):
    with pytest.raises(SageMakerApiError) as info:
        hook.describe_job(JobKind.TRAINING, "no-such-job")
    assert info.value.code == "ValidationException" and info.value.message
    assert hook.find_job(JobKind.TRAINING, "no-such-job") is None
    assert hook.stop_job(JobKind.PROCESSING, "no-such-job") is False


def test_stop_swallows_only_an_ended_job(hook, s3_bucket, code):
    done = hook.start_job(JobKind.TRAINING, training_config(s3_bucket, code("print(1)")), identity())
    wait_terminal(hook, done.name)
    assert hook.stop_job(JobKind.TRAINING, done.name) is False  # "... is in status Completed."
    with pytest.raises(SageMakerApiError, match="ValidationException"):
        hook.stop_job(JobKind.TRAINING, "not_a_valid_name!")


def test_retries_default_to_adaptive_mode(hook):
    assert hook.conn.meta.config.retries["mode"] == "adaptive"


def test_batched_status_of_many_jobs_is_one_search_not_a_describe_each(engine, hook, s3_bucket, code):
    """The provider's gap: one DescribeTrainingJob per job per poll."""
    config = training_config(s3_bucket, code("import time; time.sleep(30)"))
    started = [hook.start_job(JobKind.TRAINING, config, identity()).name for _ in range(10)]
    calls: list[str] = []

    def record(model, **_) -> None:
        calls.append(model.name)

    hook.conn.meta.events.register("before-call.sagemaker", record)
    try:
        states = hook.job_states([(JobKind.TRAINING, name) for name in started])
        assert calls == ["Search"]
        assert {s.outcome for s in states.values()} <= {Outcome.RUNNING, Outcome.PENDING}
        for name in started:
            hook.stop_job(JobKind.TRAINING, name)
        for name in started:
            wait_terminal(hook, name)
        calls.clear()
        states = hook.job_states([(JobKind.TRAINING, name) for name in started])
        assert calls == ["Search"] + ["DescribeTrainingJob"] * 10  # confirmed once, at the end
        assert all(s.confirmed and s.outcome == Outcome.STOPPED for s in states.values())
    finally:
        hook.conn.meta.events.unregister("before-call.sagemaker", record)


def test_denied_search_falls_back_to_describes_and_is_not_tried_again(hook, s3_bucket, code):
    config = training_config(s3_bucket, code("import time; time.sleep(30)"))
    started = [hook.start_job(JobKind.TRAINING, config, identity()).name for _ in range(2)]
    calls: list[str] = []

    def record(model, **_) -> None:
        calls.append(model.name)

    hook.conn.meta.events.register("before-parameter-build.sagemaker", record)  # runs before deny
    hook.conn.meta.events.register("before-call.sagemaker.Search", deny)
    try:
        for expected in (
            ["Search", "DescribeTrainingJob", "DescribeTrainingJob"],
            ["DescribeTrainingJob"] * 2,
        ):
            calls.clear()
            states = hook.job_states([(JobKind.TRAINING, name) for name in started])
            assert calls == expected
            assert all(s.outcome == Outcome.RUNNING for s in states.values())
        assert hook.denied_listings == {"search"}
    finally:
        hook.conn.meta.events.unregister("before-parameter-build.sagemaker", record)
        hook.conn.meta.events.unregister("before-call.sagemaker.Search", deny)
        for name in started:
            hook.stop_job(JobKind.TRAINING, name)
