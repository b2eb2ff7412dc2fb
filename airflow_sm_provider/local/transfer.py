"""S3 transfer of a local job: input download, output and checkpoint upload, source archives.

Every object lands inside the destination directory (keys and archive members that would
escape it fail the job), and every failure is a :class:`JobFailure` worded like SageMaker's.

Uploads never leave the job directory, whatever the job did to it: an output directory that is
a symbolic link, or lies behind one, fails the job with a reason naming it; inside it, symbolic
links (to files or directories, wherever they point) and anything that is not a regular file
(a FIFO would block the upload) are skipped, and returned so the job's log can name them.
Files are opened relative to their directory's descriptor without following links
(``os.fwalk``, ``O_NOFOLLOW``), so a job that swaps a path for a link while an upload runs
cannot redirect it either. Uploads stream from disk: a file is never read into memory whole.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from airflow_sm_provider.local.errors import JobFailure

_SINGLE_PUT_MAX = 5 * 1024**3  # S3 takes larger objects only in parts
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


def _upload_config() -> Any:
    """One streamed PUT per object up to S3's 5 GiB limit, in the calling thread.

    The engine's S3 is moto, in the engine's process: boto3's default (8 MiB parts, ten threads)
    has it hold every part in memory and join them, and the heap kept ~200 MB of a 300 MB model
    for good. One PUT is read once and spilled to disk by moto.
    """
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=_SINGLE_PUT_MAX, use_threads=False)


def _checked_dir(src: Path, root: Path) -> Path:
    """``src`` if it is a real directory inside ``root``, with no symbolic link on the way."""
    rel = src.relative_to(root)
    real = Path(os.path.realpath(root)).joinpath(rel)
    if os.path.realpath(src) != str(real) or src.is_symlink():
        raise JobFailure(
            f"ClientError: output path {rel.as_posix()} is or lies behind a symbolic link; "
            "uploads never leave the job directory"
        )
    return real


def _walk_files(src: Path, root: Path, skipped: list[str]) -> Iterator[tuple[str, int]]:
    """``(relative path, open descriptor)`` of each regular file below ``src``, in sorted order;
    links and other entries go to ``skipped``. The caller owns (and closes) each descriptor."""
    real = _checked_dir(src, root)
    if not real.is_dir():
        return
    for dirpath, dirnames, filenames, dirfd in os.fwalk(real, follow_symlinks=False):
        base = Path(dirpath).relative_to(real)
        for name in [d for d in dirnames if stat.S_ISLNK(os.lstat(d, dir_fd=dirfd).st_mode)]:
            dirnames.remove(name)
            skipped.append((base / name).as_posix())
        dirnames.sort()
        for name in sorted(filenames):
            rel = (base / name).as_posix()
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
            except OSError:  # a symbolic link (ELOOP) or gone meanwhile
                skipped.append(rel)
                continue
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                skipped.append(rel)
                continue
            yield rel, fd


def upload_dir(
    s3: Any, src: Path, uri: str, seen: dict[str, tuple[float, int]] | None = None, *, root: Path
) -> list[str]:
    """Upload every regular file below ``src`` (inside the job directory ``root``) to
    ``uri``/<relative path>; skip files ``seen`` unchanged. Returns what it left out."""
    bucket, prefix = parse_s3_uri(uri)
    prefix = prefix.rstrip("/")
    skipped: list[str] = []
    for rel, fd in _walk_files(src, root, skipped):
        with os.fdopen(fd, "rb") as body:
            info = os.fstat(body.fileno())
            if seen is not None:
                if seen.get(rel) == (info.st_mtime, info.st_size):
                    continue
                seen[rel] = (info.st_mtime, info.st_size)
            s3.upload_fileobj(body, bucket, f"{prefix}/{rel}" if prefix else rel, Config=_upload_config())
    return skipped


def upload_tar(s3: Any, src: Path, uri: str, scratch: Path, *, root: Path) -> list[str]:
    """Upload the regular files below ``src`` (inside the job directory ``root``) as one
    gzipped tarball at ``uri``, built in ``scratch`` on disk. Returns what it left out."""
    bucket, key = parse_s3_uri(uri)
    scratch.mkdir(parents=True, exist_ok=True)
    tar_path = scratch / PurePosixPath(key).name
    skipped: list[str] = []
    with tarfile.open(tar_path, "w:gz") as tar:
        for rel, fd in _walk_files(src, root, skipped):
            with os.fdopen(fd, "rb") as body:
                info = os.fstat(body.fileno())
                member = tarfile.TarInfo(rel)
                member.size, member.mtime, member.mode = (
                    info.st_size,
                    int(info.st_mtime),
                    info.st_mode & 0o777,
                )
                tar.addfile(member, body)
    try:
        s3.upload_file(str(tar_path), bucket, key, Config=_upload_config())
    finally:
        tar_path.unlink()
    return skipped


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
