"""S3 keys of the plots and reports, and one key-safe encoding for the names inside them.

Airflow run ids hold ``:`` and ``+`` (``manual__2026-01-02T03:04:05+00:00``), metric names
``:`` and ``/`` (``validation:loss``), and either could hold ``..``. :func:`encode_segment`
turns any such string into one path segment that is safe in a key and in a URL: letters,
digits, ``-`` and ``_`` stay; every other character, the dot included, becomes ``~XX`` per
UTF-8 byte (``:`` → ``~3A``, ``+`` → ``~2B``, ``.`` → ``~2E``, ``~`` → ``~7E``). So the result
never holds ``/``, ``..`` or a leading dot, and :func:`decode_segment` reverses it (injective).
``~`` is an RFC 3986 unreserved character, so the S3 console and presigned URLs keep it as is.

Layout (seed ``000``'s per-job path, plus per-DAG-run overlays and reports)::

    {prefix}/{job}/metrics/{metric}.png
    {prefix}/plots/{dag_id}/{run_id}/{metric}.png
    {prefix}/reports/{dag_id}/{run_id}/
    {prefix}/champion/{experiment}.json       the experiment's champion (scheduled retrain)

Pure: no AWS, no Airflow.
"""

from __future__ import annotations

import re

_SAFE = re.compile(r"[A-Za-z0-9_-]")
_TOKEN = re.compile(r"([A-Za-z0-9_-])|~([0-9A-F]{2})")
_ENCODED = re.compile(r"(?:[A-Za-z0-9_-]|~[0-9A-F]{2})+")
_JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
# S3 bucket naming rules (general purpose buckets), checked before any call.
_BUCKET = re.compile(r"(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MAX_KEY_BYTES = 1024


def encode_segment(text: str) -> str:
    """``text`` as one key-safe path segment; see the module docstring for the rule."""
    if not isinstance(text, str) or not text:
        raise ValueError("segment: must be a non-empty string")
    return "".join(
        ch if _SAFE.fullmatch(ch) else "".join(f"~{b:02X}" for b in ch.encode("utf-8")) for ch in text
    )


def decode_segment(segment: str) -> str:
    """The string :func:`encode_segment` made ``segment`` from; refuses any other spelling."""
    raw = bytearray()
    if _ENCODED.fullmatch(segment):
        for plain, hexed in _TOKEN.findall(segment):
            raw += plain.encode("ascii") if plain else bytes([int(hexed, 16)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if not text or encode_segment(text) != segment:
        raise ValueError(f"segment: {segment!r} is not a segment encode_segment() makes")
    return text


def clean_prefix(prefix: str) -> str:
    """A key prefix without outer slashes; refuses empty, ``.`` and ``..`` segments inside."""
    stripped = prefix.strip("/")
    if stripped and any(part in ("", ".", "..") for part in stripped.split("/")):
        raise ValueError(f"prefix: {prefix!r} may not hold empty, '.' or '..' path segments")
    return stripped


def _key(prefix: str, *segments: str) -> str:
    key = "/".join(p for p in (clean_prefix(prefix), *segments) if p)
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"key: {len(key.encode('utf-8'))} bytes; S3 keys are at most {MAX_KEY_BYTES}")
    return key


def _job(job: str) -> str:
    if not _JOB_NAME.fullmatch(job):
        raise ValueError(f"job: {job!r} is not a SageMaker job name (letters, digits, '-'; 1-63)")
    return job


def job_metric_key(prefix: str, job: str, metric: str) -> str:
    """``{prefix}/{job}/metrics/{metric}.png``: one job's chart of one metric."""
    return _key(prefix, _job(job), "metrics", f"{encode_segment(metric)}.png")


def overlay_key(prefix: str, dag_id: str, run_id: str, metric: str) -> str:
    """``{prefix}/plots/{dag_id}/{run_id}/{metric}.png``: all runs of a DAG run, one metric."""
    return _key(
        prefix, "plots", encode_segment(dag_id), encode_segment(run_id), f"{encode_segment(metric)}.png"
    )


def report_prefix(prefix: str, dag_id: str, run_id: str) -> str:
    """``{prefix}/reports/{dag_id}/{run_id}/``: where a DAG run's report files go."""
    return _key(prefix, "reports", encode_segment(dag_id), encode_segment(run_id)) + "/"


def champion_key(prefix: str, experiment: str) -> str:
    """``{prefix}/champion/{experiment}.json``: which run of the experiment is its champion."""
    return _key(prefix, "champion", f"{encode_segment(experiment)}.json")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → ``(bucket, key)``; refuses bad buckets and ``.``/``..`` segments."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"uri: {uri!r} must start with s3://")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(f"uri: bucket {bucket!r} breaks S3 bucket naming rules")
    if any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"uri: key {key!r} may not hold '.' or '..' path segments")
    return bucket, key


def join_s3_uri(bucket: str, *parts: str) -> str:
    """``s3://bucket/part/part...``; each part is a key or key fragment, checked for traversal."""
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(f"bucket: {bucket!r} breaks S3 bucket naming rules")
    key = "/".join(part.strip("/") for part in parts if part.strip("/"))
    if parts and parts[-1].endswith("/") and key:
        key += "/"
    uri = f"s3://{bucket}/{key}"
    parse_s3_uri(uri)
    return uri
