"""AWS Signature Version 4 verification for the local engine: pure, no I/O, no AWS SDK.

Theory of operation. A client signs a *canonical request* (method, path, query, the headers it
names, a payload hash) with a key derived from its secret, the date, region and service. The
engine rebuilds the same canonical request from what arrived, derives the same key from the
secret it knows for the access key id, and compares signatures in constant time. The rules
follow botocore's ``auth.py`` (``SigV4Auth``, ``S3SigV4Auth``, ``SigV4QueryAuth``):

* canonical path: S3 signs the path as sent; every other service signs it with dot segments
  and repeated slashes removed, then percent-encoded once more (``safe='/~'``);
* canonical query: every parameter but ``X-Amz-Signature``, percent-encoded the RFC 3986 way
  (``safe='-_.~'``) and sorted;
* canonical headers: the signed headers, lower-cased, values with runs of spaces collapsed;
* payload hash: ``X-Amz-Content-SHA256`` when sent (S3 always sends it: a hex digest,
  ``UNSIGNED-PAYLOAD``, ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` or
  ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``), ``UNSIGNED-PAYLOAD`` for an S3 presigned URL, else
  the SHA-256 of the body.

Header auth (``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``)
and query auth (presigned URLs: ``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``,
``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature``) are both verified. So are S3
URLs presigned with signature version 2 (``AWSAccessKeyId``, ``Expires``, ``Signature``: botocore's
``HmacV1QueryAuth``), since boto3's ``generate_presigned_url`` still makes those by default for
a custom endpoint. A request dated more than :data:`MAX_SKEW_SECONDS` away from now is refused,
as AWS does; a presigned URL also expires after its ``X-Amz-Expires`` (SigV2: ``Expires``).

Not verified, and why: the per-chunk signatures of ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``
uploads (no client of this project sends them; their seed signature, which covers the headers,
is verified) and trailing checksums (S3 itself, here moto, checks those).
"""

from __future__ import annotations

import base64
import calendar
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import mktime_tz, parsedate_tz
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_SECONDS = 15 * 60  # AWS refuses requests dated more than 15 minutes away
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the longest X-Amz-Expires AWS accepts
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_PARTS = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$")
_AUTH_HEADER = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<headers>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class SignatureError(Exception):
    """Raised when a request is not signed, or not signed by a key the engine knows.

    ``reason`` is ``missing`` (no signature), ``unknown-key``, ``mismatch``, ``skewed`` (dated
    too far from now), ``expired`` (a presigned URL) or ``malformed``; the server turns it into
    the error AWS answers for the request's protocol.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SigningKey:
    """The secret of one access key id, and the session token a request must carry with it."""

    secret_access_key: str
    session_token: str | None = None


@dataclass(frozen=True)
class SignedRequest:
    """What a request carries about its signature, parsed but not yet verified."""

    access_key_id: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str  # YYYYMMDDTHHMMSSZ
    dated: int  # amz_date in seconds since the epoch
    presigned: bool
    expires: int | None = None  # seconds after amz_date (SigV4), or an epoch time (SigV2)
    v2: bool = False  # an S3 URL presigned with signature version 2

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


@dataclass(frozen=True)
class Request:
    """The parts of an HTTP request a signature covers, as they arrived.

    ``headers`` keys are lower-case; ``raw_path`` and ``raw_query`` are percent-encoded as sent.
    """

    method: str
    raw_path: str
    raw_query: str
    headers: Mapping[str, str]


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """Decoded ``(name, value)`` pairs of a query string, in order, blank values kept."""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


def parse(request: Request) -> SignedRequest | None:
    """The signature a request carries (header or presigned query), None if it carries none.

    SignatureError("malformed") if it carries one that cannot be read.
    """
    authorization = request.headers.get("authorization", "")
    if authorization:
        match = _AUTH_HEADER.match(authorization)
        if match is None:
            raise SignatureError("malformed", "Authorization header is not an AWS4-HMAC-SHA256 signature")
        amz_date = request.headers.get("x-amz-date") or _from_http_date(request.headers.get("date", ""))
        return _signed(match["credential"], match["headers"], match["signature"], amz_date, False, None)
    query = dict(query_pairs(request.raw_query))
    if "AWSAccessKeyId" in query and "Signature" in query:
        if not query.get("Expires", "").isdigit():
            raise SignatureError("malformed", "Expires must be a time in seconds since the epoch")
        return SignedRequest(
            access_key_id=query["AWSAccessKeyId"],
            date="",
            region="",
            service="s3",
            signed_headers=(),
            signature=query["Signature"],
            amz_date="",
            dated=0,
            presigned=True,
            expires=int(query["Expires"]),
            v2=True,
        )
    if "X-Amz-Signature" not in query and "X-Amz-Credential" not in query:
        return None
    if query.get("X-Amz-Algorithm") != ALGORITHM:
        raise SignatureError("malformed", f"X-Amz-Algorithm must be {ALGORITHM}")
    try:
        expires = int(query.get("X-Amz-Expires", ""))
    except ValueError:
        raise SignatureError("malformed", "X-Amz-Expires must be a number of seconds") from None
    if not 0 < expires <= MAX_PRESIGN_SECONDS:
        raise SignatureError("malformed", f"X-Amz-Expires must be between 1 and {MAX_PRESIGN_SECONDS}")
    return _signed(
        query.get("X-Amz-Credential", ""),
        query.get("X-Amz-SignedHeaders", ""),
        query.get("X-Amz-Signature", ""),
        query.get("X-Amz-Date", ""),
        True,
        expires,
    )


def _signed(
    credential: str, headers: str, signature: str, amz_date: str, presigned: bool, expires: int | None
) -> SignedRequest:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts):
        raise SignatureError(
            "malformed", "Credential must be <key id>/<date>/<region>/<service>/aws4_request"
        )
    if not _HEX_DIGEST.match(signature):
        raise SignatureError("malformed", "Signature must be 64 lower-case hex digits")
    dated = _epoch(amz_date)
    if dated is None:
        raise SignatureError("malformed", "X-Amz-Date (or Date) is missing or not YYYYMMDDTHHMMSSZ")
    if parts[1] != amz_date[:8]:
        raise SignatureError("malformed", "the credential scope's date is not the request's date")
    return SignedRequest(
        access_key_id=parts[0],
        date=parts[1],
        region=parts[2],
        service=parts[3],
        signed_headers=tuple(headers.split(";")),
        signature=signature,
        amz_date=amz_date,
        dated=dated,
        presigned=presigned,
        expires=expires,
    )


def _epoch(amz_date: str) -> int | None:
    """Seconds since the epoch of a ``YYYYMMDDTHHMMSSZ`` date (``time.strptime`` costs ~10x more)."""
    match = _AMZ_DATE_PARTS.match(amz_date)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    return calendar.timegm((year, month, day, hour, minute, second))


def _from_http_date(value: str) -> str:
    """An RFC 7231 ``Date`` header as SigV4's ``YYYYMMDDTHHMMSSZ`` (botocore signs either)."""
    parsed = parsedate_tz(value) if value else None
    if parsed is None:
        return ""
    return time.strftime(_AMZ_DATE, time.gmtime(mktime_tz(parsed)))


def payload_hash(request: Request, signed: SignedRequest, body_sha256: Callable[[], str]) -> str:
    """The payload hash the client signed; ``body_sha256`` is called only when the body is needed."""
    declared = request.headers.get("x-amz-content-sha256")
    if declared:
        return declared
    if signed.presigned and signed.service == "s3":
        return UNSIGNED_PAYLOAD
    return body_sha256()


def canonical_request(request: Request, signed: SignedRequest, payload: str) -> str:
    """The canonical request of botocore's SigV4 signers (see the module docstring)."""
    if signed.service == "s3":
        path = request.raw_path or "/"
    else:
        path = quote(_remove_dot_segments(request.raw_path) or "/", safe="/~")
    pairs = [
        (quote(name, safe="-_.~"), quote(value, safe="-_.~"))
        for name, value in query_pairs(request.raw_query)
        if not (signed.presigned and name == "X-Amz-Signature")
    ]
    query = "&".join(f"{name}={value}" for name, value in sorted(pairs))
    headers = "".join(
        f"{name}:{' '.join(request.headers.get(name, '').split())}\n" for name in signed.signed_headers
    )
    return "\n".join([request.method.upper(), path, query, headers, ";".join(signed.signed_headers), payload])


def _remove_dot_segments(path: str) -> str:
    """botocore's ``remove_dot_segments``: RFC 3986 dot segments and empty segments removed."""
    if not path:
        return ""
    output: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if output:
                output.pop()
        elif segment and segment != ".":
            output.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and output else ""
    return first + "/".join(output) + last


def signature(secret: str, signed: SignedRequest, canonical: str) -> str:
    """The hex signature of ``canonical`` under ``secret`` and the request's scope."""
    string_to_sign = "\n".join(
        [ALGORITHM, signed.amz_date, signed.scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _signing_key(secret, signed.date, signed.region, signed.service)
    return hmac.digest(key, string_to_sign.encode(), "sha256").hex()


@functools.lru_cache(maxsize=64)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """SigV4's derived key; one per day, region and service, so cached as AWS SDKs cache it."""
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


#: Query parameters that name an S3 subresource: part of a SigV2 canonical resource (botocore's list).
_V2_SUBRESOURCES = frozenset(
    (
        *("accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber"),
        *("policy", "requestPayment", "torrent", "versioning", "versionId", "versions", "website"),
        *("uploads", "uploadId", "delete", "lifecycle", "tagging", "restore", "storageClass"),
        *("notification", "replication", "analytics", "metrics", "inventory", "select"),
        *("select-type", "object-lock", "response-content-type", "response-content-language"),
        *("response-expires", "response-cache-control", "response-content-disposition"),
        "response-content-encoding",
    )
)


def signature_v2(secret: str, request: Request, expires: int) -> str:
    """The base64 HMAC-SHA1 signature of botocore's ``HmacV1QueryAuth`` for ``request``."""
    query = query_pairs(request.raw_query)
    signed_query = {name.lower(): value for name, value in query}
    lines = [request.method.upper()]
    for name in ("content-md5", "content-type"):
        lines.append(signed_query.get(name, request.headers.get(name, "")).strip())
    lines.append(str(expires))
    lines += [
        f"{name}:{value.strip()}" for name, value in sorted(signed_query.items()) if name.startswith("x-amz-")
    ]
    subresources = sorted((name, value) for name, value in query if name in _V2_SUBRESOURCES)
    resource = request.raw_path or "/"
    if subresources:
        resource += "?" + "&".join(f"{name}={value}" if value else name for name, value in subresources)
    lines.append(resource)
    digest = hmac.new(secret.encode(), "\n".join(lines).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _verify_v2(request: Request, signed: SignedRequest, key: SigningKey, now: float) -> None:
    if now > (signed.expires or 0):
        raise SignatureError("expired", "Request has expired")
    expected = signature_v2(key.secret_access_key, request, signed.expires or 0)
    if not hmac.compare_digest(expected.encode(), signed.signature.encode()):
        raise SignatureError(
            "mismatch", "The request signature we calculated does not match the signature you provided."
        )


def verify(
    request: Request,
    signed: SignedRequest,
    key: SigningKey | None,
    body_sha256: Callable[[], str],
    now: float | None = None,
) -> None:
    """Raise SignatureError unless ``signed`` is a valid, current signature of ``request``.

    ``key`` is what the engine knows for ``signed.access_key_id`` (None: an unknown key id).
    """
    if key is None:
        raise SignatureError(
            "unknown-key", "The AWS access key id you provided does not exist in our records"
        )
    token = request.headers.get("x-amz-security-token")
    if signed.presigned:
        query = {name.lower(): value for name, value in query_pairs(request.raw_query)}
        token = query.get("x-amz-security-token", token)
    if key.session_token is not None and not hmac.compare_digest(
        (token or "").encode(), key.session_token.encode()
    ):
        raise SignatureError("unknown-key", "The security token included in the request is invalid")
    now = time.time() if now is None else now
    if signed.v2:
        _verify_v2(request, signed, key, now)
        return
    if "host" not in signed.signed_headers:
        raise SignatureError("malformed", "the Host header must be signed")
    if signed.presigned and now > signed.dated + (signed.expires or 0):
        raise SignatureError("expired", "Request has expired")
    if abs(now - signed.dated) > MAX_SKEW_SECONDS and not (signed.presigned and signed.dated <= now):
        raise SignatureError(
            "skewed", "The difference between the request time and the current time is too large"
        )
    payload = payload_hash(request, signed, body_sha256)
    expected = signature(key.secret_access_key, signed, canonical_request(request, signed, payload))
    if not hmac.compare_digest(expected, signed.signature):
        raise SignatureError(
            "mismatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    if _HEX_DIGEST.match(payload) and payload != body_sha256():
        raise SignatureError(
            "mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed"
        )
