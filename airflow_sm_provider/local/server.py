"""HTTP front of the local engine: one port for every AWS service a SageMaker DAG calls.

Theory of operation. A request reaches this router only through :mod:`gate` (Host, CORS,
SigV4 signature, body bounds), which puts the service of the verified credential scope in the
environ. Each request is then routed once, by what identifies a service on the wire:

* ``X-Amz-Target: SageMaker.<Operation>`` (JSON 1.1) -> the engine's SageMaker handlers;
* the ``sagemaker-metrics`` routes of botocore's model (rest-json: ``PUT /BatchPutMetrics``,
  ``POST /BatchGetMetrics``) signed for service ``sagemaker`` -> the engine's metrics
  handlers. Path and signature together: to moto, ``PUT /BatchPutMetrics`` alone is an S3
  CreateBucket of a bucket named "BatchPutMetrics";
* a request signed for ``sagemaker-mlflow`` (the ``sagemaker-mlflow`` plugin's MLflow REST
  calls) -> the tracking server its ARN header names (:mod:`mlflow_backend`);
* ``/_engine/...`` -> the engine's own endpoints (health, a job's container credentials,
  a simulated spot interruption);
* any other request signed for ``sagemaker`` (sagemaker-runtime, ...) -> UnknownOperation:
  the engine does not serve it, and moto's SageMaker emulation would answer it wrongly;
* an ``X-Amz-Target`` the signed service does not speak (``Foo.Bar``; any target signed for
  S3) -> UnknownOperation, not an S3 answer from moto;
* anything else -> the embedded moto (S3, CloudWatch Logs, CloudWatch, STS, IAM, ...), which
  picks the service from the SigV4 credential scope. moto runs in this process as a WSGI
  application, so the whole engine is one port and one process; its state is per process.
  The engine hands it in wrapped: :mod:`iam` answers the SDK's role checks, and
  :mod:`protocol_errors` turns what moto cannot do into the AWS error of the request's protocol.

Every handler request is validated against botocore's model first (:mod:`model`); any
:class:`AwsError` becomes the error body AWS sends, in this module only:
``{"__type": code, "Message": msg}``, the service's status, and ``x-amzn-ErrorType``.
SageMaker calls pass through the opt-in fault injector (:mod:`faults`, off unless
``SAGEMAKER_LOCAL_FAULTS`` is set) before and after their handler.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from botocore.exceptions import UnknownServiceError
from werkzeug.wsgi import get_input_stream

from airflow_sm_provider.local import model
from airflow_sm_provider.local.errors import AwsError, SerializationException, UnknownOperation
from airflow_sm_provider.local.faults import DroppedConnection, FaultInjector
from airflow_sm_provider.local.gate import CREDENTIALS_PREFIX, SERVICE_KEY
from airflow_sm_provider.local.responses import Handler

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

SIGNING_NAME = "sagemaker"
#: What the sagemaker-mlflow plugin signs a tracking server's MLflow REST calls for.
MLFLOW_SIGNING_NAME = "sagemaker-mlflow"
_INTERRUPT_PREFIX = "/_engine/interrupt/"
_JSON11 = "application/x-amz-json-1.1"
_JSON = "application/json"


def speaks_target(service: str | None, target: str) -> bool:
    """Whether ``service`` (a signing name) answers ``X-Amz-Target: target``.

    S3 and SageMaker's other APIs speak no target; a service botocore knows by its signing name
    speaks its model's ``targetPrefix``; others (e.g. ``monitoring``) are left to moto.
    """
    if service in (None, "s3", SIGNING_NAME):
        return False
    prefix = _target_prefix(service)
    return prefix is None or target.partition(".")[0] == prefix


@functools.cache
def _target_prefix(service: str) -> str | None:
    """The ``targetPrefix`` of botocore's model for ``service``; "" if it has none, None if unknown."""
    try:
        return model.service_model(service).metadata.get("targetPrefix") or ""
    except UnknownServiceError:
        return None


def metrics_routes() -> dict[tuple[str, str], str]:
    """(method, path) -> operation of the rest-json ``sagemaker-metrics`` service, from its model."""
    service = model.service_model("sagemaker-metrics")
    routes = {}
    for name in service.operation_names:
        http = service.operation_model(name).http
        routes[(http["method"], http["requestUri"])] = name
    return routes


class EngineApp:
    """The WSGI application: routes as the module docstring says.

    ``credentials(job, token)`` returns a job's container credentials or None (-> 403);
    ``interrupt(job)``, if given, simulates a spot interruption of a running job. ``faults``
    (default: what ``SAGEMAKER_LOCAL_FAULTS`` asks for, usually nothing) fails SageMaker calls.
    """

    def __init__(
        self,
        sagemaker_ops: dict[str, Handler],
        metrics_ops: dict[str, Handler],
        credentials: Callable[[str, str], dict[str, str] | None],
        aws_app: WsgiApp,
        interrupt: Callable[[str], object] | None = None,
        faults: FaultInjector | None = None,
        mlflow_app: WsgiApp | None = None,
    ) -> None:
        self._sagemaker_ops = sagemaker_ops
        self._metrics_ops = metrics_ops
        self._credentials = credentials
        self._interrupt = interrupt
        self._aws_app = aws_app
        self._mlflow_app = mlflow_app
        self._metrics_routes = metrics_routes()
        self.faults = faults if faults is not None else FaultInjector.from_environ()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("SageMaker."):
            operation = target.partition(".")[2]
            return self._call("sagemaker", operation, self._sagemaker_ops, environ, start_response, _JSON11)
        if path.startswith("/_engine/"):
            return self._engine_route(method, path, environ, start_response)
        signed_for = environ.get(SERVICE_KEY)
        if signed_for == MLFLOW_SIGNING_NAME and self._mlflow_app is not None:
            return self._mlflow_app(environ, start_response)
        if target and not speaks_target(signed_for, target):
            error = UnknownOperation(f"Unknown operation {target} for service {signed_for}")
            return _respond(start_response, error.status, error.to_body(), _JSON11, error_code=error.code)
        if signed_for == SIGNING_NAME:
            operation = self._metrics_routes.get((method, path), "")
            if operation:
                return self._call("sagemaker-metrics", operation, self._metrics_ops, environ, start_response)
            error = UnknownOperation(f"The local engine does not support sagemaker: {method} {path}")
            return _respond(start_response, error.status, error.to_body(), _JSON, error_code=error.code)
        return self._aws_app(environ, start_response)

    def _engine_route(
        self, method: str, path: str, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        if path == "/_engine/health":
            return _respond(start_response, 200, {"status": "ok"})
        if path.startswith(CREDENTIALS_PREFIX) and method == "GET":
            job = path[len(CREDENTIALS_PREFIX) :]
            creds = self._credentials(job, environ.get("HTTP_AUTHORIZATION", ""))
            if creds is None:
                return _respond(start_response, 403, {"Message": "unknown job or wrong token"})
            return _respond(start_response, 200, creds)
        if path.startswith(_INTERRUPT_PREFIX) and method == "POST" and self._interrupt is not None:
            job = path[len(_INTERRUPT_PREFIX) :]
            return self._guarded("interrupt", lambda: self._interrupt(job) or {}, start_response, _JSON)
        return _respond(start_response, 404, {"Message": f"no engine endpoint {method} {path}"})

    def _call(
        self,
        service: str,
        operation: str,
        handlers: dict[str, Handler],
        environ: dict[str, Any],
        start_response: StartResponse,
        content_type: str = _JSON,
    ) -> Iterable[bytes]:
        faults = self.faults if service == "sagemaker" else None

        def run() -> dict[str, Any]:
            if faults is not None:
                faults.before(operation, environ)
            params = _read_json(environ)
            model.validate(service, operation, params)
            handler = handlers.get(operation)
            if handler is None:
                raise UnknownOperation(f"The local engine does not support {service}:{operation}")
            result = handler(params)
            if faults is not None:
                faults.after(operation, environ)
            return result

        return self._guarded(f"{service}.{operation}", run, start_response, content_type)

    @staticmethod
    def _guarded(
        what: str, run: Callable[[], Any], start_response: StartResponse, content_type: str
    ) -> Iterable[bytes]:
        try:
            body = run()
        except AwsError as err:
            return _respond(start_response, err.status, err.to_body(), content_type, error_code=err.code)
        except DroppedConnection:  # an injected fault: the server answers nothing
            raise
        except Exception:  # a bug of ours: answer like AWS's InternalFailure, keep the trace here
            log.exception("%s failed", what)
            body = {"__type": "InternalFailure", "Message": f"The local engine failed on {what}"}
            return _respond(start_response, 500, body, content_type, error_code="InternalFailure")
        return _respond(start_response, 200, body, content_type)


def _read_json(environ: dict[str, Any]) -> dict[str, Any]:
    raw = get_input_stream(environ).read()  # handles Content-Length and chunked bodies alike
    if not raw.strip():
        return {}
    try:
        params = json.loads(raw)
    except ValueError as err:
        raise SerializationException(f"Request body is not valid JSON: {err}") from None
    except RecursionError:  # a nested-JSON bomb: refused, not a stack overflow in a handler
        raise SerializationException("Request body nests deeper than the engine reads") from None
    return params


def _respond(
    start_response: StartResponse,
    status: int,
    body: Any,
    content_type: str = _JSON,
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
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [payload]
