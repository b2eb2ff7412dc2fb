"""S3 transfer of a local job: input download, output and checkpoint upload, source archives.

Every object lands inside the destination directory (keys and archive members that would
escape it fail the job), and every failure is a :class:`JobFailure` worded like SageMaker's.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from airflow_sm_provider.local.errors import JobFailure

_S3_URI = re.compile(r"^s3://([^/]+)/?(.*)$")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key prefix) of an s3:// URI."""
    match = _S3_URI.match(uri)
    if not match:
        raise JobFailure(f"ClientError: {uri} is not an s3:// URI")
    return match.group(1), match.group(2)


def _relative_key(key: str, prefix: str) -> str:
    """Where an object lands below the destination: its key relative to the prefix."""
    if key == prefix:
        return PurePosixPath(key).name
    if prefix == "" or prefix.endswith("/") or key[len(prefix)] == "/":
        return key[len(prefix) :].lstrip("/")
    parent = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
    return key[len(parent) :]


def safe_join(dest: Path, relative: str) -> Path:
    target = (dest / relative).resolve()
    if target != dest.resolve() and dest.resolve() not in target.parents:
        raise JobFailure(f"ClientError: S3 object {relative!r} would be written outside {dest}")
    return target


def download_s3(s3: Any, uri: str, data_type: str, dest: Path, role_arn: str, region: str) -> int:
    """Download an S3Prefix or ManifestFile data source into ``dest``; returns the object count."""
    bucket, prefix = parse_s3_uri(uri)
    dest.mkdir(parents=True, exist_ok=True)
    pairs: list[tuple[str, str, str]] = []  # (bucket, key, relative path)
    try:
        if data_type == "ManifestFile":
            body = s3.get_object(Bucket=bucket, Key=prefix)["Body"].read()
            manifest = json.loads(body)
            base_bucket, base_prefix = parse_s3_uri(manifest[0]["prefix"])
            pairs = [(base_bucket, base_prefix + rel, rel) for rel in manifest[1:]]
        else:  # S3Prefix: the create-time rules refuse the data types the engine cannot read
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    if not obj["Key"].endswith("/"):
                        pairs.append((bucket, obj["Key"], _relative_key(obj["Key"], prefix)))
    except s3.exceptions.NoSuchBucket:
        pairs = []
    except s3.exceptions.NoSuchKey as err:
        raise JobFailure(f"ClientError: Data download failed: manifest {uri} not found") from err
    except (ClientError, BotoCoreError, ValueError, KeyError, IndexError) as err:
        raise JobFailure(f"ClientError: Data download failed for {uri}: {err}") from err
    if not pairs:
        raise JobFailure(
            f'ClientError: Data download failed:No S3 objects found under S3 URL "{uri}" given in input '
            f"data source. Please ensure that the bucket exists in the selected region ({region}), "
            f'that objects exist under that S3 prefix, and that the role "{role_arn}" has '
            f'"s3:ListBucket" permissions on bucket "{bucket}".'
        )
    for src_bucket, key, rel in pairs:
        target = safe_join(dest, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            s3.download_file(src_bucket, key, str(target))
        except (ClientError, BotoCoreError) as err:
            raise JobFailure(f"ClientError: Data download failed for s3://{src_bucket}/{key}: {err}") from err
    return len(pairs)


def upload_dir(s3: Any, src: Path, uri: str, seen: dict[str, tuple[float, int]] | None = None) -> int:
    """Upload every file below ``src`` to ``uri``/<relative path>; skip files ``seen`` unchanged."""
    bucket, prefix = parse_s3_uri(uri)
    prefix = prefix.rstrip("/")
    count = 0
    for path in sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(src).as_posix()
        stat = path.stat()
        if seen is not None:
            if seen.get(rel) == (stat.st_mtime, stat.st_size):
                continue
            seen[rel] = (stat.st_mtime, stat.st_size)
        s3.upload_file(str(path), bucket, f"{prefix}/{rel}" if prefix else rel)
        count += 1
    return count


def upload_tar(s3: Any, src: Path, uri: str, scratch: Path) -> None:
    """Upload the content of ``src`` as one gzipped tarball at ``uri``."""
    bucket, key = parse_s3_uri(uri)
    scratch.mkdir(parents=True, exist_ok=True)
    tar_path = scratch / PurePosixPath(key).name
    with tarfile.open(tar_path, "w:gz") as tar:
        for path in sorted(src.rglob("*")):
            if path.is_file() and not path.is_symlink():
                tar.add(path, arcname=path.relative_to(src).as_posix())
    s3.upload_file(str(tar_path), bucket, key)
    tar_path.unlink()


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract a source archive, refusing members that escape ``dest`` or are links or devices."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not (member.isfile() or member.isdir()):
                raise JobFailure(f"ClientError: source archive member {member.name!r} is not a plain file")
            safe_join(dest, member.name)
        # The "data" filter enforces the same rules again inside tarfile itself.
        tar.extractall(dest, filter="data")
