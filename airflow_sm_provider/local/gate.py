"""What every request passes before the engine routes it: Host, CORS, signature, body bounds.

Theory of operation. The engine runs the code it is sent, so only its own clients may reach it:

* **Host.** A DNS-rebinding page reaches 127.0.0.1 under its own name; the Host header still
  carries that name. A request is served only if its Host is ``localhost``, a loopback or the
  bound address (any IP address when bound to a wildcard: an address literal cannot be
  rebound), a name given with ``--allowed-host`` (compose's ``sagemaker-local``), or a
  subdomain of one of those (S3 virtual-host style). The port is not checked: it does not tell
  a rebinding page apart, and port mappings (Docker) change it.
* **Browsers.** The embedded moto answers a CORS preflight by echoing the origin; the gate
  answers every ``OPTIONS`` with 403 and strips ``Access-Control-*`` from every response, so no
  other origin may read or send anything. Same-origin pages need no CORS; S3 bucket CORS
  configurations are therefore not honoured.
* **Signature.** Every request but ``/_engine/health`` and a job's credential route (which has
  its own token) carries a SigV4 signature (:mod:`auth`) by a key the engine knows: its own
  (:mod:`credentials`) or a running job's. A refusal is the error AWS sends for that protocol:
  JSON ``{"__type", "Message"}`` for ``X-Amz-Target``/JSON calls, ``<ErrorResponse>`` for query
  services (STS, IAM, CloudWatch), S3's ``<Error>`` otherwise. The verified credential scope's
  service is put in the environ (:data:`SERVICE_KEY`) for routing.
* **Bounds.** Bodies of non-S3 requests are read whole before dispatch and limited to
  :data:`MAX_BODY_BYTES` (413 ``RequestEntityTooLarge``); S3 bodies stream through unlimited.
  The socket read timeout is the server's (:class:`~airflow_sm_provider.local.engine.LocalEngine`
  sets it); a body that stops arriving is answered ``RequestTimeout`` and the connection closed.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import socket
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import ClientDisconnected
from werkzeug.wsgi import get_input_stream

from airflow_sm_provider.local import auth
from airflow_sm_provider.local.protocol_errors import SERVICE_KEY, error_response

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: Largest body of a non-S3 request (SageMaker, CloudWatch Logs, ...). SageMaker's largest
#: documented members (a few hundred KB of hyperparameters, tags, definitions) fit many times;
#: CloudWatch Logs' own PutLogEvents limit is 1 MB.
MAX_BODY_BYTES = 5 * 1024 * 1024
UNSIGNED_PATHS = ("/_engine/health",)
CREDENTIALS_PREFIX = "/_engine/credentials/"
_SPOOL_BYTES = 8 * 1024 * 1024  # S3 bodies whose hash is checked stay in memory up to this size
_QUERY_SERVICES = frozenset({"sts", "iam", "monitoring", "sqs", "sns", "ec2"})

#: reason -> (code, status) per protocol, as AWS answers.
_ERRORS: dict[str, dict[str, tuple[str, int]]] = {
    "json": {
        "missing": ("MissingAuthenticationTokenException", 400),
        "unknown-key": ("UnrecognizedClientException", 400),
        "mismatch": ("InvalidSignatureException", 400),
        "skewed": ("InvalidSignatureException", 400),
        "expired": ("InvalidSignatureException", 400),
        "malformed": ("IncompleteSignatureException", 400),
        "host": ("AccessDeniedException", 403),
        "cors": ("AccessDeniedException", 403),
        "too-large": ("RequestEntityTooLarge", 413),
        "timeout": ("RequestTimeout", 400),
    },
    "query": {
        "missing": ("MissingAuthenticationToken", 403),
        "unknown-key": ("InvalidClientTokenId", 403),
        "mismatch": ("SignatureDoesNotMatch", 403),
        "skewed": ("SignatureDoesNotMatch", 403),
        "expired": ("SignatureDoesNotMatch", 403),
        "malformed": ("IncompleteSignature", 400),
        "host": ("AccessDenied", 403),
        "cors": ("AccessDenied", 403),
        "too-large": ("RequestEntityTooLarge", 413),
        "timeout": ("RequestTimeout", 400),
    },
    "rest-xml": {
        "missing": ("AccessDenied", 403),
        "unknown-key": ("InvalidAccessKeyId", 403),
        "mismatch": ("SignatureDoesNotMatch", 403),
        "skewed": ("RequestTimeTooSkewed", 403),
        "expired": ("AccessDenied", 403),
        "malformed": ("AuthorizationHeaderMalformed", 400),
        "host": ("AccessDenied", 403),
        "cors": ("AccessForbidden", 403),
        "too-large": ("EntityTooLarge", 400),
        "timeout": ("RequestTimeout", 400),
    },
}


class _Refused(Exception):
    """Raised when the gate answers a request itself; ``reason`` is a key of :data:`_ERRORS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def is_wildcard(host: str) -> bool:
    """Whether ``host`` binds every address (``0.0.0.0``, ``::``, and spellings such as ``0``)."""
    name = host.strip("[]")
    try:
        return ipaddress.ip_address(name).is_unspecified
    except ValueError:
        pass
    try:
        return socket.inet_aton(name) == b"\0\0\0\0"  # "0", "0.0": what inet_aton and bind accept
    except OSError:
        return False


def host_name(host_header: str) -> str:
    """The name part of a Host header (no port, no IPv6 brackets), lower-case."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")].lower()
    return host_header.rpartition(":")[0].lower() if ":" in host_header else host_header.lower()


class HostRule:
    """Which Host headers name this engine (see the module docstring)."""

    def __init__(self, bound_host: str, allowed_hosts: Iterable[str] = ()) -> None:
        self._any_address = is_wildcard(bound_host)
        self._bound = host_name(f"[{bound_host}]" if ":" in bound_host else bound_host)
        self._names = {"localhost", self._bound, *(h.lower().rstrip(".") for h in allowed_hosts)}

    def allows(self, host_header: str) -> bool:
        name = host_name(host_header).rstrip(".")
        if not name:
            return False
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return any(name == n or name.endswith(f".{n}") for n in self._names)
        return address.is_loopback or self._any_address or name == self._bound


class Gate:
    """WSGI middleware in front of the engine's router; ``keys(access_key_id)`` finds a key."""

    def __init__(
        self,
        app: WsgiApp,
        keys: Callable[[str], auth.SigningKey | None],
        hosts: HostRule,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._app = app
        self._keys = keys
        self._hosts = hosts
        self._max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response = _without_cors(start_response)
        try:
            if not self._hosts.allows(environ.get("HTTP_HOST", "")):
                raise _Refused(
                    "host", f"Host {environ.get('HTTP_HOST', '')!r} is not an address of this engine"
                )
            if environ["REQUEST_METHOD"] == "OPTIONS":
                raise _Refused("cors", "CORSResponse: This CORS request is not allowed")
            path = environ.get("PATH_INFO", "")
            if path in UNSIGNED_PATHS or path.startswith(CREDENTIALS_PREFIX):
                return self._app(environ, start_response)
            self._verify(environ)
        except (_Refused, auth.SignatureError) as err:
            return _refuse(environ, start_response, err.reason, str(err))
        return self._app(environ, start_response)

    def _verify(self, environ: dict[str, Any]) -> None:
        """Verify the signature and read a bounded body; the signed service goes in the environ."""
        request = auth.Request(
            method=environ["REQUEST_METHOD"],
            raw_path=environ.get("RAW_URI", environ.get("PATH_INFO", "/")).partition("?")[0],
            raw_query=environ.get("QUERY_STRING", ""),
            headers=_headers(environ),
        )
        signed = auth.parse(request)
        if signed is None:
            raise auth.SignatureError("missing", "Missing Authentication Token: the request is not signed")
        environ[SERVICE_KEY] = signed.service
        limit = None if signed.service == "s3" else self._max_body_bytes
        body_sha256 = functools.cache(lambda: _buffer_body(environ, limit))
        auth.verify(request, signed, self._keys(signed.access_key_id), body_sha256)
        if limit is not None:
            body_sha256()  # bounded, and read before any handler runs


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def _buffer_body(environ: dict[str, Any], limit: int | None) -> str:
    """Read the body once (at most ``limit`` bytes), hand it on re-readable; its SHA-256."""
    declared = environ.get("CONTENT_LENGTH") or "0"
    if limit is not None and declared.isdigit() and int(declared) > limit:
        raise _Refused("too-large", f"Request body of {declared} bytes exceeds the limit of {limit} bytes")
    stream = get_input_stream(environ)
    digest, size = hashlib.sha256(), 0
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 (handed on below)
    try:
        while chunk := stream.read(64 * 1024):
            size += len(chunk)
            if limit is not None and size > limit:
                raise _Refused("too-large", f"Request body exceeds the limit of {limit} bytes")
            digest.update(chunk)
            spool.write(chunk)
    except (OSError, ClientDisconnected):
        spool.close()
        raise _Refused("timeout", "The request body was not received within the timeout period") from None
    except _Refused:
        spool.close()
        raise
    spool.seek(0)
    environ.update(
        {"wsgi.input": _ReadOnlyBody(spool), "wsgi.input_terminated": True, "CONTENT_LENGTH": str(size)}
    )
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    return digest.hexdigest()


class _ReadOnlyBody:
    """The buffered body, handed on as a stream opened for reading.

    A spooled file says ``mode == "w+b"``; ``gzip.GzipFile(fileobj=...)`` reads that to mean
    "write", and moto decompresses gzip-encoded bodies (boto3 compresses PutMetricData of 10 KB
    or more) that way.
    """

    mode = "rb"

    def __init__(self, spool: Any) -> None:
        self._spool = spool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._spool, name)

    def __iter__(self) -> Any:
        return iter(self._spool)


def _without_cors(start_response: StartResponse) -> StartResponse:
    def start(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
        kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
        return start_response(status, kept, *args)

    return start


def _protocol(environ: dict[str, Any], service: str | None) -> str:
    content_type = environ.get("CONTENT_TYPE", "")
    if (
        environ.get("HTTP_X_AMZ_TARGET")
        or content_type.startswith(("application/x-amz-json", "application/json"))
        or service == "sagemaker"
        or environ.get("PATH_INFO", "").startswith("/_engine/")
    ):
        return "json"
    return "query" if service in _QUERY_SERVICES else "rest-xml"


def _refuse(environ: dict[str, Any], start_response: StartResponse, reason: str, message: str) -> list[bytes]:
    """The error AWS answers for ``reason`` in the request's protocol; the connection is closed,
    since the body may not have been read."""
    protocol = _protocol(environ, environ.get(SERVICE_KEY))
    code, status = _ERRORS[protocol][reason]
    return error_response(start_response, protocol, code, status, message, close=True)
