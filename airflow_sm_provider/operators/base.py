"""The one wait / defer / on_kill flow shared by the job operators.

``execute`` validates the rendered config (nothing is created on bad input), starts the job
idempotently (a retry attaches to the job its first try started), then either returns at once,
defers to ``JobStatusTrigger`` (which stops the job if the deferred task is killed, on Airflow
3.3+), or polls the batched status call with backoff while tailing the job's CloudWatch Logs
into the task log. ``execute_complete`` validates the trigger's event and raises unless it
reports success. ``on_kill`` stops a job the task is waiting on. A job that ended without
success fails the task with ``notifications.failures.JobsFailedException`` (an
``AirflowException`` whose ``failed_jobs`` an ``on_failure_callback`` reads). The XCom is always the small
``job_summary`` dict, never the describe response.

A failed task never leaves its job running: when the wait itself fails (the trigger could not
poll, or polling raised something other than a transient error), the job is stopped before the
task fails, and the error says so. Throttling, server and connection errors are logged and
polled again. Reading CloudWatch Logs never changes a task's outcome: a failure to read them
is logged once and tailing is turned off.

Parse cost: this module imports only the task SDK bases and pure modules; hooks, triggers and
botocore are imported inside the methods that run on a worker.

Run tracking (training, see ``TrainingJobOperator``): before the job is created the task's
run is started or continued through a tracker (``tracking.base``) and the job's Create request
gets the run's fields (``ExperimentConfig``; for MLflow ``Environment`` and ``MlflowConfig``);
the run's reference goes to XCom (so the task finds it again after a deferral) and into the
summary; when the operator sees the job end it logs the outcome on the run. A run that cannot
be updated fails the task: a retry reuses the completed job and logs its end again.

On Airflow older than 3.3 a trigger has no ``on_kill``: a task killed while deferred leaves its
job running (the job still ends at its ``StoppingCondition``); use ``deferrable=False`` where
stopping on kill matters more than the worker slot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_sm_provider._compat import (
    AirflowException,
    AirflowFailException,
    BaseOperator,
    conf,
    default_deferrable,
)
from airflow_sm_provider.aws_args import AwsArgs, AwsArgsMixin, aws_template_fields
from airflow_sm_provider.errors import ConfigValidationError, is_invalid_request, is_transient
from airflow_sm_provider.events import JOBS_FAILED, JobsEvent, read_event
from airflow_sm_provider.job_kinds import (
    KINDS,
    JobKind,
    JobSummary,
    Outcome,
    failure_lines,
    job_summary,
    may_run,
    outcome,
)
from airflow_sm_provider.links import TrackedRunLink
from airflow_sm_provider.naming import MAX_PREFIX_LENGTH, JobIdentity
from airflow_sm_provider.notifications.failures import jobs_failed

if TYPE_CHECKING:
    from airflow_sm_provider._compat import Context
    from airflow_sm_provider.hooks.jobs import SageMakerJobsHook
    from airflow_sm_provider.hooks.logs import JobLogTailer, LogLine
    from airflow_sm_provider.links import SageMakerJobLink
    from airflow_sm_provider.tracking.base import RunRef, TrackingConfig

NAMESPACE_SECTION = "sagemaker_provider"
_WAITING = (Outcome.PENDING, Outcome.RUNNING)
#: XCom key of the task's tracked run (``RunRef.to_xcom()``), read back after a deferral.
RUN_XCOM_KEY = "sagemaker_tracked_run"


def default_namespace() -> str:
    """``[sagemaker_provider] namespace`` (env ``AIRFLOW__SAGEMAKER_PROVIDER__NAMESPACE``), else "default".

    Part of every job's identity: set it per deployment (e.g. per MWAA environment) so staging
    and production sharing one account never attach to each other's jobs.
    """
    return conf.get(NAMESPACE_SECTION, "namespace", fallback="default") or "default"


class SageMakerJobOperator(AwsArgsMixin, BaseOperator):
    """Start one SageMaker job from a config in the API's shape, and optionally wait for it.

    :param config: the CreateTrainingJob / CreateProcessingJob request (templated), as the
        Amazon provider's operators take it. Its job name is kept as a readable prefix; the
        job's real name adds a hash of the task's identity (see ``namespace``). Rendered integer
        fields are converted to ints; KMS, VPC and spot settings pass through untouched.
    :param aws_conn_id, region_name, verify, botocore_config: how to reach AWS (templated);
        see ``aws_args.AwsArgs``.
    :param wait_for_completion: wait until the job ends (default True). With False the task
        returns once the job is started; wait with ``JobSensor``.
    :param deferrable: wait in the triggerer instead of a worker slot; default
        ``[operators] default_deferrable``, else True.
    :param print_log: copy the job's CloudWatch Logs into the task log (all of it while
        polling; the last lines of each stream after the job ends when deferred) and log
        status changes.
    :param poll_interval: first delay between status polls, in seconds; grows with the time
        since the status last changed (``status_poll.poll_delay``, the trigger's backoff) up to
        ``max_poll_interval``.
    :param max_poll_interval: longest delay between polls, in seconds.
    :param force_new: start a new job even if this task already completed one with the same
        config (a retry normally reuses it).
    :param stopped_ok: treat a job stopped by a user as success. Jobs stopped by
        MaxRuntimeExceeded / MaxWaitTimeExceeded always fail.
    :param check_inputs_exist: check before starting that the S3 inputs exist.
    :param namespace: part of the job identity; default ``default_namespace()``.
    :param event_queue_url: deferred waits only: SQS queue of SageMaker's job-end events, so the
        trigger wakes within seconds of the end (``JobStatusTrigger``); default
        ``[sagemaker_provider] event_queue_url``; "" polls.
    """

    job_kind: ClassVar[JobKind]
    link_class: ClassVar[type[SageMakerJobLink]]

    template_fields: Sequence[str] = aws_template_fields("config", "namespace")
    template_fields_renderers: ClassVar[dict[str, str]] = {"config": "json"}
    ui_color = "#ededed"

    def __init__(
        self,
        *,
        config: dict[str, Any],
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        wait_for_completion: bool = True,
        deferrable: bool = default_deferrable(),
        print_log: bool = True,
        poll_interval: float = 30,
        max_poll_interval: float = 300,
        force_new: bool = False,
        stopped_ok: bool = False,
        check_inputs_exist: bool = True,
        namespace: str | None = None,
        event_queue_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if poll_interval <= 0 or max_poll_interval < poll_interval:
            raise ValueError("need 0 < poll_interval <= max_poll_interval")
        self.config = config
        AwsArgs(aws_conn_id, region_name, verify, botocore_config).apply(self)
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.print_log = print_log
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.force_new = force_new
        self.stopped_ok = stopped_ok
        self.check_inputs_exist = check_inputs_exist
        self.namespace = namespace
        self.event_queue_url = event_queue_url
        self.job_name: str | None = None
        self._run: RunRef | None = None
        self._job_done = False
        self._stop_requested = False

    @cached_property
    def hook(self) -> SageMakerJobsHook:
        """Built on first use on the worker, never at DAG parse time."""
        from airflow_sm_provider.hooks.jobs import jobs_hook

        return jobs_hook(self.aws)

    # ---------------------------------------------------------------- execute

    def execute(self, context: Context) -> JobSummary:
        try:
            config = self.prepare_config()
            tracking = self.tracking_config()
            if self.check_inputs_exist:
                self.check_inputs(config)
        except ConfigValidationError as error:  # a retry cannot fix the config: fail, don't retry
            raise AirflowFailException(str(error)) from error
        identity = self.identity(context)
        if tracking is not None:
            config = self._start_run(context, tracking, identity, config)
        try:
            started = self.hook.start_job(self.job_kind, config, identity, force_new=self.force_new)
        except Exception as error:
            if is_invalid_request(error):  # the same request again gets the same refusal
                raise AirflowFailException(
                    f"SageMaker refused the {self.job_kind.value} job's config (not retried: the "
                    f"same config would be refused again): {error}"
                ) from error
            raise
        self.job_name = started.name
        self.log.info(
            "SageMaker %s job %s: %s (%s)", self.job_kind.value, started.name, started.action, started.arn
        )
        self.link_class.persist(context, self, job_name=started.name, job_arn=started.arn)
        if self._run is not None:
            TrackedRunLink.persist(context, self, job_name=started.name, job_arn=started.arn)
        if not self.wait_for_completion:
            return self._with_run(
                job_summary(self.job_kind, self.hook.describe_job(self.job_kind, started.name))
            )
        if started.action == "reused":  # a completed job of this task with the same config
            self._job_done = True
            summary = job_summary(self.job_kind, self.hook.describe_job(self.job_kind, started.name))
            return self._finish(summary, Outcome.SUCCEEDED)
        if self.deferrable:
            self.defer(trigger=self._trigger(started.name), method_name="execute_complete")
        return self._wait(started.name)

    def tracking_config(self) -> TrackingConfig | None:
        """The task's run tracking, checked before any call; None when the task is not tracked."""
        return None

    def _start_run(
        self, context: Context, tracking: TrackingConfig, identity: JobIdentity, config: dict[str, Any]
    ) -> dict[str, Any]:
        """Start or continue the task's run; returns ``config`` with the fields linking the job to it."""
        from airflow_sm_provider.tracking.base import open_tracker, with_job_fields
        from airflow_sm_provider.tracking.records import run_start

        prefix = str(config.get(KINDS[self.job_kind].name_key) or self.job_kind.value)
        run = open_tracker(tracking.backend, self.aws, tracking.tracking_uri).start_run(
            tracking, identity, prefix, run_start(config)
        )
        self._run = run
        context["ti"].xcom_push(key=RUN_XCOM_KEY, value=run.to_xcom())
        self.log.info(
            "Tracked as %s run %s of experiment %s (%s)",
            run.backend,
            run.run_name,
            run.experiment,
            run.arn or run.record,
        )
        return with_job_fields(config, run)

    def _with_run(self, summary: JobSummary) -> JobSummary:
        """The job's XCom summary with the task's tracked run, if any."""
        return JobSummary(summary, run=self._run.to_xcom()) if self._run is not None else summary

    def _end_run(self, summary: JobSummary) -> None:
        """Log the ended job's outcome on the task's run (its describe carries all of it)."""
        if self._run is None or not self.job_name:
            return
        from airflow_sm_provider.tracking.base import log_job_ends

        try:
            log_job_ends(self.aws, [(self._run, self.hook.describe_job(self.job_kind, self.job_name))])
        except Exception as error:
            outcome = "; ".join(failure_lines([summary], stopped_ok=self.stopped_ok)) or "it succeeded"
            raise AirflowException(
                f"SageMaker job {self.job_name} ended ({outcome}), but its tracked run "
                f"{self._run.record} could not be updated: {error}"
            ) from error

    def prepare_config(self) -> dict[str, Any]:
        """The rendered config with integer fields converted, validated before any AWS call."""
        from airflow_sm_provider.validation import coerce_integers, validate_config  # not at DAG parse

        if not isinstance(self.config, dict):
            validate_config(self.job_kind, self.config)  # reports the type with its field
        config = coerce_integers(self.job_kind, self.config)
        for warning in validate_config(self.job_kind, config, name_max_length=MAX_PREFIX_LENGTH):
            self.log.warning("%s", warning)
        return config

    def check_inputs(self, config: dict[str, Any]) -> None:
        """Raise ``ConfigValidationError`` naming each S3 input that does not exist."""
        from airflow_sm_provider.hooks.inputs import missing_s3_inputs
        from airflow_sm_provider.validation import s3_inputs

        problems = missing_s3_inputs(self.aws, s3_inputs(self.job_kind, config))
        if problems:
            raise ConfigValidationError(self.job_kind.value, problems)

    def identity(self, context: Context) -> JobIdentity:
        """Who this job belongs to: the same on every try of this task instance."""
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return JobIdentity(
            namespace=self.namespace or default_namespace(),
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=-1 if map_index is None else map_index,
        )

    # ---------------------------------------------------------------- deferred

    def _trigger(self, job_name: str) -> Any:
        from airflow_sm_provider.triggers.jobs import JobStatusTrigger

        return JobStatusTrigger(
            jobs=[{"kind": self.job_kind.value, "name": job_name}],
            **self.aws.kwargs(),
            stopped_ok=self.stopped_ok,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            stop_on_kill=True,
            event_queue_url=self.event_queue_url,
        )

    def _resume_without_event(self, context: Context) -> JobSummary:
        """Find the task's job again through its identity: wait on it anew if it still runs, else
        complete as its event would have.

        A task resumed with no event (its trigger was lost: a crash of the worker or triggerer
        while deferred) knows neither the job's name nor its outcome; the job's deterministic
        name and identity tag give both, and nothing is created.
        """
        config = self.prepare_config()
        prefix = str(config.get(KINDS[self.job_kind].name_key) or self.job_kind.value)
        describe = self.hook.latest_job(self.job_kind, prefix, self.identity(context))
        if describe is None:
            raise AirflowException(
                f"Resumed without a trigger event, and this task has no SageMaker {self.job_kind.value} "
                "job: nothing to attach to or stop"
            )
        summary = job_summary(self.job_kind, describe)
        self.job_name = summary["name"]
        if may_run(summary, self.job_kind):
            self.log.warning("Resumed without a trigger event: waiting on job %s again", self.job_name)
            self.defer(trigger=self._trigger(self.job_name), method_name="execute_complete")
        self.log.warning(
            "Resumed without a trigger event: job %s has ended (%s)", self.job_name, summary["status"]
        )
        status = summary["status"]
        if (
            outcome(self.job_kind, status, summary["secondary_status"], stopped_ok=self.stopped_ok)
            == Outcome.SUCCEEDED
        ):
            event = JobsEvent("success", [summary])
        else:
            event = JobsEvent("error", [summary], reason=JOBS_FAILED)
        return self.execute_complete(context, event.to_payload())

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> JobSummary:
        """Resume after the trigger fired: raise unless it reports success.

        An error event about the wait itself (the trigger could not poll, or reports a job that
        has not ended) stops the job before the task fails.
        """
        if event is None:  # resumed without the trigger's event (lost while deferred)
            return self._resume_without_event(context)
        parsed = read_event(event)
        if parsed.jobs:
            self.job_name = parsed.jobs[0].get("name") or self.job_name
        if not parsed.succeeded and (
            parsed.wait_failed or not parsed.jobs or any(may_run(job, self.job_kind) for job in parsed.jobs)
        ):
            what = self._stop("the wait for it failed")
            raise AirflowException(f"{parsed.message or 'the wait for the SageMaker job failed'}\n{what}")
        self._job_done = True
        if self.print_log and self.job_name:
            self._print_logs(self.job_name, lambda tailer: tailer.tail())
        if self.tracking_config() is not None:
            ti = context["ti"]
            data = ti.xcom_pull(task_ids=ti.task_id, key=RUN_XCOM_KEY, map_indexes=ti.map_index)
            if data:
                from airflow_sm_provider.tracking.base import RunRef

                self._run = RunRef.from_xcom(data)
        summary = self._with_run(parsed.jobs[0] if parsed.jobs else JobSummary(kind=self.job_kind.value))
        self._end_run(summary)
        if not parsed.succeeded:
            lines = failure_lines(parsed.jobs, stopped_ok=self.stopped_ok)
            message = parsed.message or "\n".join(lines) or "SageMaker job did not succeed"
            raise jobs_failed(parsed.jobs, stopped_ok=self.stopped_ok, message=message)
        return summary

    # ---------------------------------------------------------------- polling

    def _wait(self, job_name: str) -> JobSummary:
        """Poll until the job ends; if anything else ends the wait, stop the job and re-raise."""
        try:
            return self._poll(job_name)
        except BaseException as error:
            if not self._job_done:
                error.add_note(self._stop("the wait for it failed"))
            raise

    def _poll(self, job_name: str) -> JobSummary:
        """Poll the batched status call with backoff, tailing logs and status changes.

        Transient errors (throttling, server and connection errors that outlast botocore's
        retries) are logged and polled again; any other error is raised.
        """
        from airflow_sm_provider.status_poll import poll_delay

        tailing = self.print_log
        seen, changed_at = None, time.monotonic()
        while True:
            try:
                state = self.hook.job_states([(self.job_kind, job_name)])[job_name]
                progress = (state.status, state.secondary_status)
                if progress != seen:
                    self.log.info("Job %s: %s", job_name, " / ".join(p for p in progress if p))
                    seen, changed_at = progress, time.monotonic()
                if tailing:
                    tailing = self._print_logs(job_name, lambda tailer: tailer.poll())
                if state.outcome not in _WAITING:
                    summary = state.summary or job_summary(
                        self.job_kind, self.hook.describe_job(self.job_kind, job_name)
                    )
                    break
            except Exception as error:
                if not is_transient(error):
                    raise
                self.log.warning("Status poll of job %s failed, trying again: %s", job_name, error)
            time.sleep(poll_delay(time.monotonic() - changed_at, self.poll_interval, self.max_poll_interval))
        self._job_done = True
        if tailing:
            self._print_logs(job_name, lambda tailer: tailer.poll())
        return self._finish(summary, state.outcome)

    def _finish(self, summary: JobSummary, outcome: Outcome) -> JobSummary:
        """The XCom summary of an ended job (its run updated); raise unless it succeeded (or
        stopped, if that is ok)."""
        summary = self._with_run(summary)
        self._end_run(summary)
        if outcome == Outcome.SUCCEEDED or (outcome == Outcome.STOPPED and self.stopped_ok):
            if summary.get("billable_seconds") is not None:
                self.log.info("Billable seconds: %s", summary["billable_seconds"])
            return summary
        lines = failure_lines([summary], stopped_ok=self.stopped_ok)
        message = "\n".join(lines) or f"SageMaker job {summary.get('name')} did not succeed"
        raise jobs_failed([summary], stopped_ok=self.stopped_ok, message=message)

    # ---------------------------------------------------------------- logs

    @cached_property
    def _log_tailer(self) -> JobLogTailer:
        from airflow_sm_provider.hooks.logs import job_log_tailer

        return job_log_tailer(self.aws, self.job_kind, self.job_name or "")

    def _print_logs(self, job_name: str, read: Callable[[JobLogTailer], list[LogLine]]) -> bool:
        """Copy the lines ``read`` returns into the task log; False once logs cannot be read.

        Any error (access denied, throttling, no connection) is logged once as a warning: the
        job's outcome, not its logs, decides the task's.
        """
        try:
            tailer = self._log_tailer
            lines = read(tailer)
        except Exception as error:
            self.log.warning(
                "Cannot read the CloudWatch Logs of job %s, not copying them any more: %s", job_name, error
            )
            return False
        for line in lines:
            self.log.info("[%s] %s", tailer.short_name(line.stream), line.message)
        return True

    # ---------------------------------------------------------------- kill

    def on_kill(self) -> None:
        """Stop the job this task started or attached to, unless it already ended."""
        if self.job_name and not self._job_done:
            self._stop("the task was killed")

    def _stop(self, why: str) -> str:
        """Ask SageMaker to stop the job (once); returns a sentence saying what happened."""
        kind, name = self.job_kind.value, self.job_name
        if not name:
            return f"No SageMaker {kind} job name is known: nothing was stopped."
        if self._stop_requested:
            return f"Stop of SageMaker {kind} job {name} already requested."
        try:
            stopped = self.hook.stop_job(self.job_kind, name)
        except Exception as error:
            text = f"SageMaker {kind} job {name} may still be running: stopping it failed: {error}"
            self.log.warning(text)
            return text
        self._stop_requested = True
        if stopped:
            text = f"Stop of SageMaker {kind} job {name} requested ({why})."
        else:
            text = f"SageMaker {kind} job {name} was no longer running."
        self.log.info(text)
        return text
