"""Reading and rebuilding the embedded moto's S3, CloudWatch Logs and CloudWatch state.

The one module that knows moto's models from the inside (a key's body buffer, a log stream's
event list, a datum's fields), for :mod:`persistence`: moto has no API to export or import its
state, so these functions read its objects and build them back. When moto changes its models,
this is the module to update; the integration tests of a restart catch what breaks.

moto's models are imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import datetime
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

_CHUNK = 1024 * 1024


class BodyFile:
    """A restored object's body as moto reads it: a read-only file opened for each read.

    One open file per object would run out of descriptors with many objects; this holds none.
    ``close()`` (moto disposing of the key) leaves the file alone: the mirror owns it.
    """

    mode = "rb"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._position = 0
        self.closed = False

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: os.path.getsize(self.path)}
        self._position = base[whence] + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        with open(self.path, "rb") as body:
            body.seek(self._position)
            data = body.read() if size is None or size < 0 else body.read(size)
        self._position += len(data)
        return data

    def close(self) -> None:
        self.closed = True

    def write(self, data: bytes) -> int:
        raise io.UnsupportedOperation("a restored object's body is read-only")

    def truncate(self, size: int | None = None) -> int:
        raise io.UnsupportedOperation("a restored object's body is read-only")


def backends_in_use(service: str) -> Iterator[tuple[str, Any]]:
    """(account, backend) of every region moto has created a ``logs`` or ``cloudwatch`` backend
    for (none are created here)."""
    if service == "logs":
        from moto.logs.models import logs_backends as backends
    else:
        from moto.cloudwatch.models import cloudwatch_backends as backends
    for account, regions in list(dict.items(backends)):
        for backend in list(dict.values(regions)):
            yield account, backend


# -- S3 ----------------------------------------------------------------------------------------
def bucket(name: str) -> Any:
    """moto's bucket ``name``, or None."""
    from moto.s3.models import s3_backends

    owner = s3_backends.bucket_accounts.get(name)
    if owner is None:
        return None
    partition, account = owner
    return s3_backends[account][partition].buckets.get(name)


def current_key(moto_bucket: Any, key: str) -> Any:
    """moto's current version of ``key``; None if absent or a delete marker."""
    from moto.s3.models import FakeKey

    current = moto_bucket.keys.get(key)
    return current if isinstance(current, FakeKey) else None


def bucket_meta(moto_bucket: Any) -> dict[str, Any]:
    return {
        "region": moto_bucket.region_name,
        "created": moto_bucket.creation_date.isoformat(),
        "versioning": moto_bucket.versioning_status,
    }


def object_meta(fake: Any, moto_bucket: Any) -> dict[str, Any]:
    """What a client reads back about an object, besides its body."""
    from moto.s3.models import s3_backends

    backend = s3_backends[moto_bucket.account_id][moto_bucket.partition]
    return {
        "etag": fake.etag,
        "size": fake.size,
        "last_modified": fake.last_modified.isoformat(),
        "metadata": dict(fake.metadata),
        "storage_class": fake.storage_class,
        "version_id": fake._version_id,
        "encryption": fake.encryption,
        "kms_key_id": fake.kms_key_id,
        "checksum_algorithm": fake.checksum_algorithm,
        "checksum_value": fake.checksum_value,
        "redirect": fake.website_redirect_location,
        "tags": backend.tagger.get_tag_dict_for_resource(fake.arn),
    }


def copy_body(fake: Any, out: BinaryIO) -> None:
    """Stream a key's body into ``out`` (moto keeps no public stream of it)."""
    with fake.lock:
        _copy(fake._value_buffer, out)


def detach_body(bucket_name: str, key: str, path: Path) -> None:
    """Give every version of ``key`` that reads its body from ``path`` a copy of its own."""
    moto_bucket = bucket(bucket_name)
    for version in moto_bucket.keys.getlist(key, []) if moto_bucket is not None else []:
        buffer = getattr(version, "_value_buffer", None)
        if isinstance(buffer, BodyFile) and buffer.path == path:
            with version.lock:
                copy = tempfile.SpooledTemporaryFile(version._max_buffer_size)  # noqa: SIM115 (moto closes it)
                _copy(buffer, copy)
                version._value_buffer = copy


def add_bucket(name: str, account: str, partition: str, meta: dict[str, Any]) -> None:
    from moto.s3.models import s3_backends

    created = s3_backends[account][partition].create_bucket(name, meta["region"])
    created.creation_date = datetime.datetime.fromisoformat(meta["created"])
    created.versioning_status = meta["versioning"]


def add_key(moto_bucket: Any, key: str, meta: dict[str, Any], body: Path) -> None:
    """Put ``key`` back into ``moto_bucket``, its body read from ``body`` when asked for."""
    from moto.s3.models import FakeKey, s3_backends
    from moto.utilities.utils import LowercaseDict

    fake = FakeKey(
        name=key,
        value=b"",
        account_id=moto_bucket.account_id,
        region_name=moto_bucket.region_name,
        storage=meta["storage_class"],
        etag=meta["etag"].strip('"'),
        is_versioned=moto_bucket.is_versioned,
        version_id=meta["version_id"],
        bucket_name=moto_bucket.name,
        encryption=meta["encryption"],
        kms_key_id=meta["kms_key_id"],
        checksum_value=meta["checksum_value"],
    )
    fake._value_buffer.close()
    fake._value_buffer = BodyFile(body)
    fake.contentsize = meta["size"]
    fake.last_modified = datetime.datetime.fromisoformat(meta["last_modified"])
    fake._metadata = LowercaseDict(meta["metadata"])
    fake.checksum_algorithm = meta["checksum_algorithm"]
    fake.website_redirect_location = meta["redirect"]
    moto_bucket.keys.setlist(key, [fake])
    if meta["tags"]:
        backend = s3_backends[moto_bucket.account_id][moto_bucket.partition]
        backend.tagger.tag_resource(fake.arn, [{"Key": k, "Value": v} for k, v in meta["tags"].items()])


def _copy(source: Any, out: BinaryIO) -> None:
    source.seek(0)
    while chunk := source.read(_CHUNK):
        out.write(chunk)


# -- CloudWatch Logs ---------------------------------------------------------------------------
def logs_backend(account: str, region: str) -> Any:
    from moto.logs.models import logs_backends

    return logs_backends[account][region]


def group_meta(account: str, region: str, group: Any) -> dict[str, Any]:
    return {
        "created": group.creation_time.isoformat(),
        "retention": group.retention_in_days,
        "kms": group.kms_key_id,
        "tags": logs_backend(account, region).list_tags_for_resource(group.arn),
    }


def stream_meta(stream: Any) -> dict[str, Any]:
    last = stream.last_ingestion_time
    return {
        "created": stream.creation_time.isoformat(),
        "stored_bytes": stream.stored_bytes,
        "token": stream.upload_sequence_token,
        "last_ingestion": last.isoformat() if last is not None else None,
    }


def add_group(account: str, region: str, name: str, meta: dict[str, Any]) -> Any:
    from moto.logs.models import LogGroup

    backend = logs_backend(account, region)
    group = LogGroup(account, region, name, RetentionInDays=meta["retention"], kmsKeyId=meta["kms"])
    group.creation_time = datetime.datetime.fromisoformat(meta["created"])
    backend.groups[name] = group
    if meta["tags"]:
        backend.tag_resource(group.arn, meta["tags"])
    return group


def add_stream(group: Any, name: str, meta: dict[str, Any], events: Iterable[tuple[int, int, str]]) -> Any:
    """A stream back in ``group`` with its (timestamp, ingestion time, message) events, in order."""
    from moto.logs.models import LogEvent, LogStream

    stream = LogStream(group, name)
    stream.creation_time = datetime.datetime.fromisoformat(meta["created"])
    stream.stored_bytes = meta["stored_bytes"]
    stream.upload_sequence_token = meta["token"]
    if meta["last_ingestion"]:
        stream.last_ingestion_time = datetime.datetime.fromisoformat(meta["last_ingestion"])
    stream.events = [
        LogEvent(ingestion, {"timestamp": ts, "message": text}) for ts, ingestion, text in events
    ]
    group.streams[name] = stream
    return stream


# -- CloudWatch metrics ------------------------------------------------------------------------
def cloudwatch_backend(account: str, region: str) -> Any:
    from moto.cloudwatch.models import cloudwatch_backends

    return cloudwatch_backends[account][region]


def datum_to_json(datum: Any) -> dict[str, Any]:
    from moto.cloudwatch.models import MetricAggregatedDatum

    timestamp = datum.timestamp
    body: dict[str, Any] = {
        "namespace": datum.namespace,
        "name": datum.name,
        "dimensions": [{"Name": d.name, "Value": d.value} for d in datum.dimensions],
        "timestamp": timestamp.isoformat() if isinstance(timestamp, datetime.datetime) else timestamp,
        "datetime": isinstance(timestamp, datetime.datetime),
        "unit": datum.unit,
    }
    if isinstance(datum, MetricAggregatedDatum):
        body["stats"] = [datum.min, datum.max, datum.sample_count, datum.sum]
    else:
        body["value"] = datum.value
    return body


def datum_from_json(body: dict[str, Any]) -> Any:
    from moto.cloudwatch.models import MetricAggregatedDatum, MetricDatum

    timestamp = body["timestamp"]
    if body["datetime"]:
        timestamp = datetime.datetime.fromisoformat(timestamp)
    common = {"namespace": body["namespace"], "name": body["name"], "dimensions": body["dimensions"]}
    if "stats" in body:
        low, high, count, total = body["stats"]
        return MetricAggregatedDatum(
            **common,
            min_stat=low,
            max_stat=high,
            sample_count=count,
            sum_stat=total,
            timestamp=timestamp,
            unit=body["unit"],
        )
    return MetricDatum(**common, value=body["value"], timestamp=timestamp, unit=body["unit"])
