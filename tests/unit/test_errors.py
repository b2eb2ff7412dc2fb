"""The one transient-error rule the operators, the sensor and the trigger share."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from airflow_sm_provider import errors
from airflow_sm_provider.errors import SageMakerApiError, is_transient


@pytest.mark.parametrize(
    "error",
    [
        SageMakerApiError("Search", "ThrottlingException", "Rate exceeded", 400),
        SageMakerApiError("Search", "InternalFailure", "oops", 500),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ],
)
def test_throttling_server_and_connection_errors_are_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [SageMakerApiError("Search", "AccessDeniedException", "no", 400), RuntimeError("bug"), ValueError("x")],
)
def test_other_errors_end_the_wait(error):
    assert not is_transient(error)


def test_every_exception_is_a_provider_error_with_a_raised_when_docstring():
    classes = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]
    assert len(classes) >= 5
    for cls in classes:
        assert issubclass(cls, errors.ProviderError)
        assert cls.__doc__.startswith("Raised ")
