"""The failed jobs of a task, carried by the exception that fails it.

The job operators and ``JobSensor`` fail a task whose jobs ended without success by raising
:class:`JobsFailedException`: an ``AirflowException`` (so retries and ``except
AirflowException`` behave as before) and an ``errors.JobsFailedError`` whose ``failed_jobs``
list each job with its status, reason and console link. Airflow hands the exception to the
task's ``on_failure_callback`` (and ``on_retry_callback``) as ``context["exception"]``, on the
worker that ran the task; :func:`failed_jobs_of` finds it there, also when another exception
wraps it. The exception is the one channel: nothing extra goes to XCom.

Cheap to import (operators and the sensor import it at DAG-parse time): Airflow's exception
base and pure modules only; the console links are built on the worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_sm_provider._compat import AirflowException, AirflowFailException
from airflow_sm_provider.errors import JobsFailedError
from airflow_sm_provider.job_kinds import failure_lines

if TYPE_CHECKING:
    from airflow_sm_provider.notifications.message import FailedJob

__all__ = [
    "EndedJobsFailedException",
    "JobsFailedException",
    "failed_job_records",
    "failed_jobs_of",
    "jobs_failed",
]


class JobsFailedException(JobsFailedError, AirflowException):
    """Raised when SageMaker jobs a task waited on ended without success (retried as any failure)."""


class EndedJobsFailedException(JobsFailedException, AirflowFailException):
    """Raised by a wait whose jobs ended without success: waiting again cannot change an ended
    job, so the task fails at once (no retries) and ``on_failure_callback`` runs right away."""


def failed_job_records(
    summaries: Sequence[Mapping[str, Any]], *, stopped_ok: bool = False
) -> list[FailedJob]:
    """The jobs among ``summaries`` that did not succeed, with status, reason and console link.

    "Did not succeed" is ``job_kinds.failure_lines``' rule, so the records and the task's error
    message always name the same jobs.
    """
    from airflow_sm_provider.links import arn_location, console_url

    records: list[FailedJob] = []
    for job in summaries:
        if not failure_lines([job], stopped_ok=stopped_ok):
            continue
        link = ""
        if job.get("arn"):
            try:
                partition, region = arn_location(str(job["arn"]))
                link = console_url(
                    str(job.get("kind")),
                    partition=partition,
                    region_name=region,
                    job_name=str(job.get("name")),
                )
            except ValueError:  # not an ARN, or a kind without a console page
                link = ""
        records.append(
            {
                "kind": str(job.get("kind") or ""),
                "name": str(job.get("name") or ""),
                "status": _status(job),
                "reason": str(job.get("failure_reason") or job.get("message") or ""),
                "console_url": link,
            }
        )
    return records


def _status(job: Mapping[str, Any]) -> str:
    """The status as shown, with the secondary status only where it says more ("Failed",
    "Stopped / MaxRuntimeExceeded")."""
    status, secondary = job.get("status"), job.get("secondary_status")
    parts = [str(status)] if status else []
    if secondary and secondary != status:
        parts.append(str(secondary))
    return " / ".join(parts) or "unknown"


def jobs_failed(
    summaries: Sequence[Mapping[str, Any]],
    *,
    stopped_ok: bool = False,
    message: str = "",
    lead: str = "",
    retryable: bool = True,
) -> JobsFailedException:
    """The exception to raise for jobs that ended without success (``raise jobs_failed(...)``).

    Its message is ``message`` when given (the trigger's own), else ``lead`` and one line per
    failed job with its reason. ``retryable=False`` for a wait (a retry would wait on the same
    ended jobs); an operator's retry starts new jobs, so its failures stay retryable.
    """
    records = failed_job_records(summaries, stopped_ok=stopped_ok)
    if not message:
        lines = failure_lines(summaries, stopped_ok=stopped_ok)
        message = f"{lead}{len(lines)} of {len(summaries)} SageMaker job(s) did not succeed:\n" + "\n".join(
            lines
        )
    return (JobsFailedException if retryable else EndedJobsFailedException)(message, records)


def failed_jobs_of(error: BaseException | None) -> list[FailedJob]:
    """The failed jobs carried by ``error`` or by an exception it was raised from; [] if none."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, JobsFailedError):
            return list(error.failed_jobs)
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return []
