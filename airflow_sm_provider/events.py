"""The event ``JobStatusTrigger`` fires, typed, with the one parser its receivers use.

The trigger builds a :class:`JobsEvent` and fires ``to_payload()``; the operators' and the
sensor's ``execute_complete`` read it back with :func:`read_event`. Payloads:

* ``{"status": "success", "jobs": [JobSummary, ...], "message": str}``: every job succeeded;
* ``{"status": "error", "reason": "jobs_failed", "jobs": [...], "message": str}``: every job
  has ended and the message lists each that did not succeed, with its reason;
* ``{"status": "error", "reason": "poll_failed", "jobs": [{"kind", "name"}, ...], "message":
  str}``: their status could not be read; the jobs were left as they were and may still run.

Pure: no AWS imports; Airflow's exception is imported only when an event is malformed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_sm_provider.errors import TriggerEventError
from airflow_sm_provider.job_kinds import JobSummary

__all__ = ["JOBS_FAILED", "POLL_FAILED", "JobsEvent", "read_event"]

#: ``reason`` of an error event whose wait failed while the jobs may still run.
POLL_FAILED = "poll_failed"
#: ``reason`` of an error event fired because jobs ended without success.
JOBS_FAILED = "jobs_failed"


@dataclass(frozen=True)
class JobsEvent:
    """What a ``JobStatusTrigger`` reports: success or error, and the jobs' summaries."""

    status: Literal["success", "error"]
    jobs: list[JobSummary] = field(default_factory=list)
    message: str = ""
    #: Why an error event fired: ``JOBS_FAILED`` or ``POLL_FAILED`` (absent from old events).
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "success"

    @property
    def wait_failed(self) -> bool:
        """The wait failed, not the jobs: they may still be running."""
        return self.reason == POLL_FAILED

    def to_payload(self) -> dict[str, Any]:
        """The JSON-safe payload of Airflow's ``TriggerEvent``."""
        payload: dict[str, Any] = {"status": self.status, "jobs": list(self.jobs), "message": self.message}
        if self.reason is not None:
            payload["reason"] = self.reason
        return payload

    @classmethod
    def parse(cls, event: Any) -> JobsEvent:
        """The event from a payload; ``TriggerEventError`` when it is not one the trigger fires.

        Entries of ``jobs`` that are not dicts are dropped; a success must carry summaries.
        """
        if not isinstance(event, Mapping) or event.get("status") not in ("success", "error"):
            raise TriggerEventError(f"unexpected trigger event: {event!r}")
        jobs: list[JobSummary] = [job for job in event.get("jobs") or [] if isinstance(job, dict)]  # type: ignore[misc]
        if event["status"] == "success" and not jobs:
            raise TriggerEventError(f"trigger reported success without job summaries: {event!r}")
        reason = event.get("reason")
        return cls(event["status"], jobs, str(event.get("message") or ""), str(reason) if reason else None)


def read_event(event: Any) -> JobsEvent:
    """:meth:`JobsEvent.parse` for ``execute_complete``: a malformed event fails the task."""
    try:
        return JobsEvent.parse(event)
    except TriggerEventError as error:
        from airflow_sm_provider._compat import AirflowException

        raise AirflowException(str(error)) from error
