"""AWS error shapes and the guard around moto, read back with botocore's own response parsers.

The wrapped application here is a stand-in WSGI app that raises or answers an HTML page: moto
fails that way only on actions it lacks, which the integration tests reach with real clients;
a generic exception inside moto has no stable trigger, so it is simulated here.
"""

from __future__ import annotations

import io

import pytest
from botocore.parsers import create_parser
from werkzeug.test import EnvironBuilder

from airflow_sm_provider.local import model
from airflow_sm_provider.local.protocol_errors import (
    SERVICE_KEY,
    AwsErrors,
    action_name,
    error_response,
    request_protocol,
)

# (signing name, botocore model, operation, environ builder arguments) per protocol
REQUESTS = {
    "json": (
        "logs",
        "logs",
        "GetLogAnomalyDetector",
        {
            "method": "POST",
            "headers": {"X-Amz-Target": "Logs_20140328.GetLogAnomalyDetector"},
            "content_type": "application/x-amz-json-1.1",
            "data": "{}",
        },
    ),
    "query": (
        "iam",
        "iam",
        "GetContextKeysForPrincipalPolicy",
        {
            "method": "POST",
            "content_type": "application/x-www-form-urlencoded; charset=utf-8",
            "data": "Action=GetContextKeysForPrincipalPolicy&Version=2010-05-08",
        },
    ),
    "rest-json": (
        "lambda",
        "lambda",
        "GetAccountSettings",
        {"method": "GET", "path": "/2016-08-19/account-settings/"},
    ),
    "rest-xml": (
        "s3",
        "s3",
        "RestoreObject",
        {"method": "POST", "path": "/bucket/key", "query_string": "restore"},
    ),
}


def _environ(protocol: str) -> dict:
    service, _, _, kwargs = REQUESTS[protocol]
    environ = EnvironBuilder(**kwargs).get_environ()
    environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read())  # seekable, as the gate leaves it
    environ[SERVICE_KEY] = service
    return environ


def _call(app, environ) -> tuple[int, dict, bytes]:
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def _parse(protocol: str, status: int, headers: dict, body: bytes) -> dict:
    _, model_name, operation, _ = REQUESTS[protocol]
    shape = model.service_model(model_name).operation_model(operation).output_shape
    response = {"status_code": status, "headers": headers, "body": body}
    return create_parser(protocol).parse(response, shape)["Error"]


@pytest.mark.parametrize("protocol", list(REQUESTS))
def test_each_protocol_is_told_from_the_request(protocol):
    assert request_protocol(_environ(protocol), REQUESTS[protocol][0]) == protocol


@pytest.mark.parametrize("protocol", list(REQUESTS))
def test_the_action_is_named_from_the_request(protocol):
    service, _, operation, _ = REQUESTS[protocol]
    assert action_name(_environ(protocol), service, protocol) == f"{service}:{operation}"


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (
            NotImplementedError("The x action has not been implemented"),
            {
                "json": ("UnknownOperationException", 400),
                "query": ("InvalidAction", 400),
                "rest-json": ("UnknownOperationException", 400),
                "rest-xml": ("NotImplemented", 501),
            },
        ),
        (
            KeyError("a bug"),
            {
                "json": ("InternalFailure", 500),
                "query": ("InternalFailure", 500),
                "rest-json": ("InternalFailure", 500),
                "rest-xml": ("InternalError", 500),
            },
        ),
    ],
)
@pytest.mark.parametrize("protocol", list(REQUESTS))
def test_an_exception_in_moto_is_the_protocols_error(protocol, raised, expected):
    def failing(environ, start_response):
        raise raised

    status, headers, body = _call(AwsErrors(failing), _environ(protocol))
    error = _parse(protocol, status, headers, body)
    assert (error["Code"], status) == expected[protocol]
    assert REQUESTS[protocol][2] in error["Message"] and "a bug" not in error["Message"]


@pytest.mark.parametrize("protocol", list(REQUESTS))
def test_an_html_404_page_is_an_unsupported_action(protocol):
    def html(environ, start_response):
        start_response("404 NOT FOUND", [("Content-Type", "text/html; charset=utf-8")])
        return [b"<!doctype html><title>404 Not Found</title>"]

    status, headers, body = _call(AwsErrors(html), _environ(protocol))
    error = _parse(protocol, status, headers, body)
    assert "local engine does not support" in error["Message"] and b"<!doctype" not in body


def test_other_answers_pass_unchanged():
    def ok(environ, start_response):
        start_response("404 Not Found", [("Content-Type", "application/xml")])
        return [b"<Error><Code>NoSuchBucket</Code></Error>"]

    assert _call(AwsErrors(ok), _environ("rest-xml")) == (
        404,
        {"Content-Type": "application/xml"},
        b"<Error><Code>NoSuchBucket</Code></Error>",
    )


def test_messages_are_escaped_in_xml():
    seen = {}
    body = b"".join(
        error_response(
            lambda s, h: seen.update(h=dict(h)), "query", "InvalidAction", 400, "<a & b>", close=True
        )
    )
    assert b"&lt;a &amp; b&gt;" in body and seen["h"]["Connection"] == "close"
