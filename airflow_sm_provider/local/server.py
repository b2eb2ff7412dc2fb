"""HTTP front of the local engine: one port for every AWS service a SageMaker DAG calls.

Theory of operation. Each request is routed once, by what identifies a service on the wire:

* ``X-Amz-Target: SageMaker.<Operation>`` (JSON 1.1) -> the engine's SageMaker handlers;
* ``PUT /BatchPutMetrics`` and ``POST /BatchGetMetrics`` signed for service ``sagemaker``
  (rest-json ``sagemaker-metrics``) -> the engine's metrics handlers. The signature matters:
  to moto the same request would be an S3 CreateBucket of a bucket named "BatchPutMetrics";
* ``/_engine/...`` -> the engine's own endpoints (health, a job's container credentials);
* anything else -> the embedded moto (S3, CloudWatch Logs, CloudWatch, STS, IAM, ...), which
  picks the service from the SigV4 credential scope.

Every handler request is validated against botocore's model first (:mod:`model`); any
:class:`AwsError` becomes the error body AWS sends, in this module only.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from airflow_sm_provider.local import model
from airflow_sm_provider.local.errors import AwsError, UnknownOperation, ValidationException

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]
StartResponse = Callable[..., Any]

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_METRICS_ROUTES = {
    ("PUT", "/BatchPutMetrics"): "BatchPutMetrics",
    ("POST", "/BatchGetMetrics"): "BatchGetMetrics",
}
_CREDENTIALS_PREFIX = "/_engine/credentials/"


def signing_service(environ: dict[str, Any]) -> str | None:
    """The service a request was signed for (SigV4 header or presigned query)."""
    match = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match is None:
        query = environ.get("QUERY_STRING", "").replace("%2F", "/").replace("%2f", "/")
        match = re.search(r"X-Amz-Credential=[^/&]+/\d{8}/[^/&]+/([^/&]+)/aws4_request", query)
    return match.group(1) if match else None


class EngineApp:
    """The WSGI application: routes as the module docstring says."""

    def __init__(
        self,
        sagemaker_ops: dict[str, Handler],
        metrics_ops: dict[str, Handler],
        credentials: Callable[[str, str], dict[str, str] | None],
        aws_app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
    ) -> None:
        self._sagemaker_ops = sagemaker_ops
        self._metrics_ops = metrics_ops
        self._credentials = credentials
        self._aws_app = aws_app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("SageMaker."):
            return self._call(
                "sagemaker",
                target.partition(".")[2],
                self._sagemaker_ops,
                environ,
                start_response,
                json11=True,
            )
        metrics_op = _METRICS_ROUTES.get((method, path))
        if metrics_op and signing_service(environ) == "sagemaker":
            return self._call("sagemaker-metrics", metrics_op, self._metrics_ops, environ, start_response)
        if path == "/_engine/health":
            return _respond(start_response, 200, {"status": "ok"})
        if path.startswith(_CREDENTIALS_PREFIX) and method == "GET":
            job = path[len(_CREDENTIALS_PREFIX) :]
            creds = self._credentials(job, environ.get("HTTP_AUTHORIZATION", ""))
            if creds is None:
                return _respond(start_response, 403, {"Message": "invalid job or token"})
            return _respond(start_response, 200, creds)
        return self._aws_app(environ, start_response)

    def _call(
        self,
        service: str,
        operation: str,
        handlers: dict[str, Handler],
        environ: dict[str, Any],
        start_response: StartResponse,
        *,
        json11: bool = False,
    ) -> Iterable[bytes]:
        content_type = "application/x-amz-json-1.1" if json11 else "application/json"
        try:
            params = _read_json(environ)
            model.validate(service, operation, params)
            handler = handlers.get(operation)
            if handler is None:
                raise UnknownOperation(f"The local engine does not implement {operation}")
            body = handler(params)
            return _respond(start_response, 200, body, content_type)
        except AwsError as err:
            return _respond(start_response, err.status, err.to_body(), content_type, error_code=err.code)
        except Exception:  # a bug of ours: answer like AWS's InternalFailure, keep the trace here
            log.exception("%s.%s failed", service, operation)
            body = {"__type": "InternalFailure", "Message": f"The local engine failed on {operation}"}
            return _respond(start_response, 500, body, content_type, error_code="InternalFailure")


def _read_json(environ: dict[str, Any]) -> dict[str, Any]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    if not raw.strip():
        return {}
    try:
        params = json.loads(raw)
    except ValueError as err:
        raise ValidationException(f"Request body is not valid JSON: {err}") from None
    if not isinstance(params, dict):
        raise ValidationException("Request body must be a JSON object")
    return params


def _respond(
    start_response: StartResponse,
    status: int,
    body: dict[str, Any],
    content_type: str = "application/json",
    *,
    error_code: str | None = None,
) -> list[bytes]:
    payload = json.dumps(body).encode()
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(payload))),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    ]
    if error_code:
        headers.append(("x-amzn-ErrorType", error_code))
    reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 500: "Internal Server Error"}.get(
        status, "Error"
    )
    start_response(f"{status} {reason}", headers)
    return [payload]
