"""Every exception the provider raises, and the rules that read AWS error codes.

One home, so a caller (an operator, the sensor, the trigger, the operators to come) catches one
type and asks one question: :func:`is_transient` decides "log it and poll again" for all of
them. The code rules (:func:`is_not_found`, :func:`is_not_stoppable`, :func:`is_access_denied`)
take plain strings, so pure modules use them without botocore.

Pure: no Airflow or AWS imports at module level (validation and the poll planner use it);
botocore is imported inside :func:`is_transient`, which runs on a worker or the triggerer.
All classes derive from :class:`ProviderError`, so one ``except`` catches any of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_sm_provider.notifications.message import FailedJob

__all__ = [
    "NOT_FOUND_CODES",
    "THROTTLING_CODES",
    "ConfigValidationError",
    "JobNamesExhaustedError",
    "JobOwnershipError",
    "JobsFailedError",
    "ProviderError",
    "SageMakerApiError",
    "TriggerEventError",
    "is_access_denied",
    "is_invalid_request",
    "is_not_found",
    "is_not_stoppable",
    "is_transient",
]

NOT_FOUND_CODES = frozenset({"ValidationException", "ResourceNotFound"})
THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown"}
)
_NOT_FOUND_WORDS = ("could not find", "not found", "does not exist")
#: AWS: "The request was rejected because the training job is in status Completed."
_NOT_STOPPABLE_WORDS = ("is in status", "not in a stoppable", "cannot be stopped")


class ProviderError(Exception):
    """Raised by this provider: the base of every exception below."""


class SageMakerApiError(ProviderError):
    """Raised when a SageMaker API call fails; carries the AWS error code and message."""

    def __init__(self, operation: str, code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.message = message
        self.http_status = http_status

    @property
    def transient(self) -> bool:
        """Throttling or a server-side error: worth trying again at the next poll."""
        return self.code in THROTTLING_CODES or (self.http_status or 0) >= 500


class ConfigValidationError(ProviderError, ValueError):
    """Raised when a job config breaks one or more rules; lists each field with its rule."""

    def __init__(self, kind: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {field}: {rule}" for field, rule in problems)
        super().__init__(f"invalid {kind} job config ({len(problems)} problem(s)):\n{lines}")


class JobsFailedError(ProviderError):
    """Raised when SageMaker jobs ended without success; ``failed_jobs`` lists each for callbacks.

    The operators and ``JobSensor`` raise it as ``notifications.failures.JobsFailedException``,
    which is also an ``AirflowException``; an ``on_failure_callback`` finds it in
    ``context["exception"]``.
    """

    def __init__(self, message: str, failed_jobs: list[FailedJob]) -> None:
        super().__init__(message)
        self.failed_jobs = failed_jobs

    def __reduce__(self) -> tuple[type, tuple[str, list[FailedJob]]]:
        """Pickled with its jobs (the default would call ``cls(message)`` alone)."""
        return type(self), (str(self), self.failed_jobs)


class JobOwnershipError(ProviderError):
    """Raised when a job under our derived name belongs to another task (its identity tag differs)."""


class JobNamesExhaustedError(ProviderError):
    """Raised when a task instance has used up its deterministic job names (one per failed try)."""


class TriggerEventError(ProviderError, ValueError):
    """Raised when a trigger event is not one ``JobStatusTrigger`` fires (see ``events``)."""


def is_not_found(code: str, message: str) -> bool:
    """Whether an error means "no such job": AWS says ValidationException "Could not find ..."
    (or "Requested resource not found") for a missing job; ResourceNotFound on other calls."""
    return code in NOT_FOUND_CODES and any(word in message.lower() for word in _NOT_FOUND_WORDS)


def is_not_stoppable(code: str, message: str) -> bool:
    """Whether a Stop was refused because the job is no longer running (or does not exist)."""
    return is_not_found(code, message) or (
        code == "ValidationException" and any(word in message.lower() for word in _NOT_STOPPABLE_WORDS)
    )


def is_access_denied(code: str) -> bool:
    """Whether an error code means the caller's IAM policy does not allow the call."""
    return code.startswith("AccessDenied") or code == "UnauthorizedOperation"


def is_transient(error: BaseException) -> bool:
    """Whether a failed status poll should be logged and tried again at the next poll.

    True for throttling and server errors that outlasted botocore's retries, and for
    botocore's own errors (connection refused, read timeouts, endpoint unreachable); False for
    everything else (access denied, a malformed request, a bug), which ends the wait.
    """
    if isinstance(error, SageMakerApiError):
        return error.transient
    from botocore.exceptions import BotoCoreError, ParamValidationError

    return isinstance(error, BotoCoreError) and not isinstance(error, ParamValidationError)


def is_invalid_request(error: BaseException) -> bool:
    """Whether a request was refused as malformed, so sending it again cannot succeed.

    SageMaker's ValidationException (unless it means "no such job", see :func:`is_not_found`)
    and botocore's client-side ParamValidationError; a task failing on one should fail without
    its retries, which would only send the same request again.
    """
    if isinstance(error, SageMakerApiError):
        return error.code == "ValidationException" and not is_not_found(error.code, error.message)
    from botocore.exceptions import ParamValidationError

    return isinstance(error, ParamValidationError)
