"""``JobSensor``: wait for one or many SageMaker training / processing jobs.

Deferrable by default: one ``JobStatusTrigger`` waits on all the jobs with batched status calls.
With ``deferrable=False`` it pokes the same batched call (``mode="reschedule"`` frees the worker
slot between pokes, for deployments without a triggerer). It succeeds once every job has ended
and all succeeded; otherwise it fails listing every job that did not, with its reason, by
raising ``notifications.failures.JobsFailedException``, whose ``failed_jobs`` an
``on_failure_callback`` reads (e.g. ``SageMakerJobsNotifier``).

Tracked runs: when the jobs come as the training operator's summaries with a ``run`` (the
operator returned at once, ``wait_for_completion=False``), the sensor is who sees them end, so
it logs each ended job's outcome on its run before it succeeds or fails.

Parse cost: only the task SDK bases and pure modules at module level; the hook (AwsBaseHook,
botocore) and the trigger (aiobotocore) are imported in the methods that run on a worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_sm_provider._compat import AirflowException, BaseSensorOperator
from airflow_sm_provider.aws_args import AwsArgs, AwsArgsMixin, aws_template_fields
from airflow_sm_provider.errors import is_transient
from airflow_sm_provider.events import read_event
from airflow_sm_provider.job_kinds import JobKind, JobSummary, Outcome, job_leaves, may_run
from airflow_sm_provider.notifications.failures import jobs_failed

if TYPE_CHECKING:
    from airflow_sm_provider._compat import Context
    from airflow_sm_provider.hooks.jobs import SageMakerJobsHook
    from airflow_sm_provider.tracking.base import RunRef

#: A job may wait up to 28 days for capacity (MaxPendingTimeInSeconds) and then run 28 days
#: (MaxRuntimeInSeconds); 60 days outlasts both (Airflow's sensor default is 7 days).
DEFAULT_TIMEOUT = timedelta(days=60).total_seconds()


def job_refs(jobs: Any, job_kind: JobKind | str | None = None) -> list[tuple[JobKind, str]]:
    """(kind, name) pairs from the operators' XCom summaries, names, or lists of them.

    A mapped task's XCom arrives as a (lazy) sequence; nested sequences are flattened. Plain
    names need ``job_kind``; a summary's own ``kind`` wins over it. Duplicates are dropped.
    """
    refs: list[tuple[JobKind, str]] = []
    for _, item in job_leaves(jobs):
        if isinstance(item, Mapping):
            kind, name = item.get("kind") or job_kind, item.get("name")
        else:
            kind, name = job_kind, item
        if not name or not isinstance(name, str):
            raise ValueError(f"job without a name: {item!r}")
        if not kind:
            raise ValueError(f"job {name!r}: give job_kind ('training' or 'processing') for plain names")
        ref = (JobKind(kind), name)
        if ref not in refs:
            refs.append(ref)
    if not refs:
        raise ValueError("JobSensor got no jobs to wait for")
    return refs


def tracked_runs(jobs: Any) -> dict[str, RunRef]:
    """Job name -> tracked run, for the summaries in ``jobs`` that carry a ``run``."""
    from airflow_sm_provider.tracking.base import RunRef

    return {
        item["name"]: RunRef.from_xcom(item["run"])
        for _, item in job_leaves(jobs)
        if isinstance(item, Mapping) and isinstance(item.get("run"), Mapping) and item.get("name")
    }


class JobSensor(AwsArgsMixin, BaseSensorOperator):
    """Wait until SageMaker jobs end; fail listing every job that did not succeed.

    :param jobs: what to wait for (templated): a job summary from ``TrainingJobOperator`` /
        ``ProcessingJobOperator`` (``{"kind", "name", ...}``), a list of them (a mapped task's
        output), or job names with ``job_kind``.
    :param job_kind: "training" or "processing", for plain names.
    :param aws_conn_id, region_name, verify, botocore_config: how to reach AWS; see
        ``aws_args.AwsArgs``.
    :param stopped_ok: treat a job stopped by a user as success (running out of time,
        MaxRuntimeExceeded / MaxWaitTimeExceeded, is always a failure).
    :param deferrable: wait in the triggerer (default True, whatever ``[operators]
        default_deferrable`` says: a sensor on jobs of hours should never hold a worker slot).
        Without a triggerer, use ``deferrable=False, mode="reschedule"``.
    :param max_poll_interval: longest delay between the trigger's polls, in seconds (the
        shortest is ``poke_interval``).
    :param stop_on_kill: stop the jobs when the deferred sensor is killed (Airflow 3.3+).
        False by default, unlike the operators: the sensor waits on jobs other tasks started
        and own, so killing the wait should not end them.
    :param timeout: seconds before the sensor gives up; default 60 days, above SageMaker's
        28 days of pending time plus 28 days of runtime.

    A poke that meets throttling, a server error or a connection error logs it and pokes again.

    Returns (XCom) the list of the jobs' summaries.
    """

    template_fields: Sequence[str] = aws_template_fields("jobs", "job_kind", "stopped_ok")
    ui_color = "#ededed"

    def __init__(
        self,
        *,
        jobs: Any,
        job_kind: JobKind | str | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        stopped_ok: bool = False,
        deferrable: bool = True,
        max_poll_interval: float = 600,
        stop_on_kill: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(timeout=timeout, **kwargs)
        self.jobs = jobs
        self.job_kind = job_kind
        AwsArgs(aws_conn_id, region_name, verify, botocore_config).apply(self)
        self.stopped_ok = stopped_ok
        self.deferrable = deferrable
        self.max_poll_interval = max_poll_interval
        self.stop_on_kill = stop_on_kill
        self._summaries: list[JobSummary] = []

    @cached_property
    def hook(self) -> SageMakerJobsHook:
        """Built on first use on the worker, never at DAG parse time."""
        from airflow_sm_provider.hooks.jobs import jobs_hook

        return jobs_hook(self.aws)

    @property
    def refs(self) -> list[tuple[JobKind, str]]:
        return job_refs(self.jobs, self.job_kind)

    def execute(self, context: Context) -> list[JobSummary]:
        if not self.deferrable:
            super().execute(context)
            return self._summaries
        if self.poke(context):  # already over: no trip through the triggerer
            return self._summaries
        from airflow_sm_provider.triggers.jobs import JobStatusTrigger

        self.defer(
            trigger=JobStatusTrigger(
                jobs=[{"kind": kind.value, "name": name} for kind, name in self.refs],
                **self.aws.kwargs(),
                stopped_ok=self.stopped_ok,
                poll_interval=self.poke_interval,
                max_poll_interval=self.max_poll_interval,
                stop_on_kill=self.stop_on_kill,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )
        return []  # not reached: defer raises

    def poke(self, context: Context) -> bool:
        """One batched status poll; raise listing the failures once every job has ended."""
        try:
            states = self.hook.job_states(self.refs)
        except Exception as error:
            if not is_transient(error):
                raise
            self.log.warning("Status poll failed, poking again: %s", error)
            return False
        for state in states.values():
            if state.warning:
                self.log.warning("Job %s: %s", state.name, state.warning)
        waiting = [s.name for s in states.values() if not s.confirmed]
        if waiting:
            counts = {o.value: sum(s.outcome == o for s in states.values()) for o in Outcome}
            self.log.info("Waiting on %d of %d job(s): %s", len(waiting), len(states), counts)
            return False
        self._summaries = [s.summary or JobSummary(kind=s.kind.value, name=s.name) for s in states.values()]
        self._end_runs(self._summaries)
        self._raise_on_failures("", self._summaries)
        return True

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> list[JobSummary]:
        """Resume after the trigger fired: validate the event, raise unless every job succeeded."""
        parsed = read_event(event)
        if not parsed.wait_failed:
            self._end_runs(parsed.jobs)
        if not parsed.succeeded and (parsed.wait_failed or not parsed.jobs):
            raise AirflowException(parsed.message or str(event))
        if not parsed.succeeded:
            raise jobs_failed(
                parsed.jobs, stopped_ok=self.stopped_ok, message=parsed.message, retryable=False
            )
        self._raise_on_failures("trigger reported success, but ", parsed.jobs)
        return parsed.jobs

    def _end_runs(self, summaries: Sequence[JobSummary]) -> None:
        """Log the outcome of each ended job on its tracked run (one Describe per tracked job)."""
        runs = tracked_runs(self.jobs)
        ended = [
            (runs[job["name"]], self.hook.describe_job(JobKind(job["kind"]), job["name"]))
            for job in summaries
            if job.get("name") in runs and job.get("status") and not may_run(job, JobKind(job["kind"]))
        ]
        if not ended:
            return
        from airflow_sm_provider.tracking.base import log_job_ends

        log_job_ends(self.aws, ended)
        self.log.info("Logged the outcome of %d job(s) on their tracked runs", len(ended))

    def _raise_on_failures(self, lead: str, summaries: list[JobSummary]) -> None:
        """Raise ``JobsFailedException`` (the failed jobs for ``on_failure_callback``) if any failed."""
        error = jobs_failed(summaries, stopped_ok=self.stopped_ok, lead=lead, retryable=False)
        if error.failed_jobs:
            raise error
