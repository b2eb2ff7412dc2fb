"""Failures of the local engine: AWS error responses, and a job that cannot go on.

Every failure a handler raises is an :class:`AwsError`; the server serializes it in one
place as the JSON 1.1 / rest-json error body AWS sends: ``{"__type": code, "Message": msg}``
with the HTTP status of the real service. :class:`JobFailure` never reaches a client: it ends
a job's run, and its message becomes the job's FailureReason.
"""

from __future__ import annotations


class AwsError(Exception):
    """Raised when a request fails the way the real service would fail it."""

    code = "InternalFailure"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_body(self) -> dict[str, str]:
        return {"__type": self.code, "Message": self.message}


class ValidationException(AwsError):
    """Raised when a request breaks the service model or a documented service rule."""

    code = "ValidationException"
    status = 400


class SerializationException(AwsError):
    """Raised when a request is not JSON or a member has the wrong JSON type."""

    code = "SerializationException"
    status = 400


class ResourceNotFound(AwsError):
    """Raised when a named resource (experiment, trial, ...) does not exist."""

    code = "ResourceNotFound"
    status = 400


class ResourceInUse(AwsError):
    """Raised when a resource with the requested name already exists."""

    code = "ResourceInUse"
    status = 400


class UnknownOperation(AwsError):
    """Raised for a SageMaker operation the engine does not implement."""

    code = "UnknownOperationException"
    status = 400


class JobFailure(Exception):
    """Raised when a job cannot go on; the message is its FailureReason (not an API error)."""
