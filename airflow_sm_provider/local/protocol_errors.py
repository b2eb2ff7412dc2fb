"""AWS error responses in each protocol the engine speaks, and a guard that keeps moto's AWS-shaped.

Theory of operation. A client parses an error by its service's protocol: JSON (``awsJson``:
SageMaker, CloudWatch Logs, CloudWatch in botocore 1.43+) and rest-json (``sagemaker-metrics``)
read ``{"__type": code, "Message": ...}`` and the ``x-amzn-ErrorType`` header; query (STS, IAM,
CloudWatch in older clients) reads ``<ErrorResponse><Error><Code>``; rest-xml (S3) reads
``<Error><Code>``. An HTML page is none of these: botocore raises ``ResponseParserError`` and
retries it. :func:`error_response` writes all four; the gate's refusals use it too.

The embedded moto answers what it implements; what it does not ends as an exception
(``NotImplementedError: The x action has not been implemented``, or a bug of moto's) that
werkzeug turns into an HTML 500, or, for a route moto does not know, an HTML 404.
:class:`AwsErrors` wraps moto and answers both as AWS would answer an action it does not offer:
``UnknownOperationException`` (JSON, rest-json), ``InvalidAction`` (query), ``NotImplemented``
(rest-xml, status 501), with a message naming the action and saying the local engine does not
support it; any other exception is ``InternalFailure`` (S3: ``InternalError``), status 500,
its trace logged here and never sent.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: The protocols an error can be written in (botocore's names).
PROTOCOLS = ("json", "rest-json", "query", "rest-xml")
#: (code, status) AWS answers for an action a service does not offer, per protocol.
UNSUPPORTED = {
    "json": ("UnknownOperationException", 400),
    "rest-json": ("UnknownOperationException", 400),
    "query": ("InvalidAction", 400),
    "rest-xml": ("NotImplemented", 501),
}
#: (code, status) of a failure on the server's side, per protocol.
INTERNAL = {
    "json": ("InternalFailure", 500),
    "rest-json": ("InternalFailure", 500),
    "query": ("InternalFailure", 500),
    "rest-xml": ("InternalError", 500),
}
#: Signing names whose botocore model goes by another name.
_MODEL_NAMES = {"monitoring": "cloudwatch"}
#: Where the gate puts the service of the verified credential scope (a signing name) in the environ.
SERVICE_KEY = "sagemaker_local.service"


def error_response(
    start_response: StartResponse,
    protocol: str,
    code: str,
    status: int,
    message: str,
    *,
    close: bool = False,
) -> list[bytes]:
    """Send the error AWS sends in ``protocol`` (one of :data:`PROTOCOLS`); ``close`` ends the connection."""
    request_id = str(uuid.uuid4())
    if protocol in ("json", "rest-json"):
        payload = json.dumps({"__type": code, "Message": message}).encode()
        content_type = "application/x-amz-json-1.1" if protocol == "json" else "application/json"
        headers = [
            ("Content-Type", content_type),
            ("x-amzn-ErrorType", code),
            ("x-amzn-RequestId", request_id),
        ]
    else:
        error = f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        if protocol == "query":
            error = f"<Error><Type>Sender</Type>{error}</Error><RequestId>{request_id}</RequestId>"
            text = f"<ErrorResponse>{error}</ErrorResponse>"
        else:
            text = f"<Error>{error}<RequestId>{request_id}</RequestId></Error>"
        payload = f'<?xml version="1.0" encoding="UTF-8"?>\n{text}'.encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
    headers.append(("Content-Length", str(len(payload))))
    if close:
        headers.append(("Connection", "close"))
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [payload]


def request_protocol(environ: dict[str, Any], service: str | None) -> str:
    """The protocol of a request to ``service`` (a signing name): by its headers, else its model."""
    if environ.get("HTTP_X_AMZ_TARGET"):
        return "json"
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded") or "Action=" in (
        environ.get("QUERY_STRING", "")
    ):
        return "query"
    model = _model(service)
    protocol = model.metadata.get("protocol") if model is not None else None
    if protocol in ("rest-json", "rest-xml", "query"):
        return protocol
    if protocol == "ec2":
        return "query"
    return "rest-json" if protocol or service else "rest-xml"


def action_name(environ: dict[str, Any], service: str | None, protocol: str) -> str:
    """The action a request calls, as ``service:Action``; ``METHOD /path`` where none can be told."""
    prefix = _MODEL_NAMES.get(service or "", service or "aws")
    method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "/")
    if protocol == "json":
        return f"{prefix}:{environ['HTTP_X_AMZ_TARGET'].rpartition('.')[2]}"
    if protocol == "query":
        action = read_form(environ).get("Action")
        if action:
            return f"{prefix}:{action[0]}"
    model = _model(service)
    if model is not None and protocol.startswith("rest-"):
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        operation = _rest_operation(model, method, path, set(query))
        if operation:
            return f"{prefix}:{operation}"
    return f"{prefix}: {method} {path}"


class AwsErrors:
    """WSGI middleware: what ``app`` (moto) cannot answer comes back as an AWS error.

    Exceptions and HTML error pages become :data:`UNSUPPORTED` (``NotImplementedError``, a route
    ``app`` does not know) or :data:`INTERNAL` errors in the request's protocol; every other
    response passes unchanged, HEAD answers included (they have no body: the status is the error).
    """

    def __init__(self, app: WsgiApp) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        html_status: list[int] = []

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], Any]:
            code = int(status.split(" ", 1)[0])
            content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
            # HEAD answers carry no body, so moto's default text/html there is no error page
            if code >= 400 and content_type.startswith("text/html") and environ["REQUEST_METHOD"] != "HEAD":
                html_status.append(code)
                return lambda _data: None
            return start_response(status, headers, exc_info)

        try:
            body = self._app(environ, start)
        except NotImplementedError:
            return self._error(environ, start_response, unsupported=True)
        except Exception:
            log.exception("the embedded moto failed on %s", environ.get("PATH_INFO", "/"))
            return self._error(environ, start_response, unsupported=False)
        if not html_status:
            return body
        if hasattr(body, "close"):
            body.close()
        return self._error(environ, start_response, unsupported=html_status[0] in (404, 405, 501))

    @staticmethod
    def _error(environ: dict[str, Any], start_response: StartResponse, *, unsupported: bool) -> list[bytes]:
        service = environ.get(SERVICE_KEY)
        protocol = request_protocol(environ, service)
        action = action_name(environ, service, protocol)
        if unsupported:
            code, status = UNSUPPORTED[protocol]
            message = f"The local engine does not support {action}"
        else:
            code, status = INTERNAL[protocol]
            message = f"The local engine failed on {action}; its log has the details"
        return error_response(start_response, protocol, code, status, message)


def read_form(environ: dict[str, Any]) -> dict[str, list[str]]:
    """The form of a query request: its body, read from the start and left to be read again (the
    gate buffered it), else its query string."""
    text = ""
    stream = environ.get("wsgi.input")
    if stream is not None and hasattr(stream, "seek"):
        try:
            stream.seek(0)
            text = stream.read().decode("utf-8", "replace")
            stream.seek(0)
        except (OSError, ValueError):
            text = ""
    return parse_qs(text or environ.get("QUERY_STRING", ""))


@functools.cache
def _model(service: str | None) -> Any:
    """botocore's model of the service a request was signed for, or None."""
    if not service:
        return None
    from botocore.exceptions import UnknownServiceError

    from airflow_sm_provider.local import model

    try:
        return model.service_model(_MODEL_NAMES.get(service, service))
    except UnknownServiceError:
        return None


def _rest_operation(model: Any, method: str, path: str, query_keys: set[str]) -> str | None:
    """The operation whose ``requestUri`` matches; the most specific one (literal parts, query keys)."""
    matches = [
        (weight, name)
        for name, (pattern, needed, weight) in _rest_routes(model).items()
        if _http_method(model, name) == method and needed <= query_keys and pattern.fullmatch(path)
    ]
    return max(matches)[1] if matches else None


@functools.cache
def _rest_routes(model: Any) -> dict[str, tuple[re.Pattern[str], frozenset[str], int]]:
    routes = {}
    for name in model.operation_names:
        uri, _, query = model.operation_model(name).http["requestUri"].partition("?")
        regex = re.sub(r"\\\{[^}]*?\\\+\\\}", "(.+)", re.escape(uri))
        regex = re.sub(r"\\\{[^}]*?\\\}", "([^/]+)", regex)
        regex = regex.rstrip("/") + "/?"  # a trailing slash is optional: clients differ
        keys = frozenset(part.partition("=")[0] for part in query.split("&") if part)
        literal = len(re.sub(r"\{[^}]*\}", "", uri))
        routes[name] = (re.compile(regex), keys, literal + 100 * len(keys))
    return routes


def _http_method(model: Any, name: str) -> str:
    return model.operation_model(name).http["method"]
