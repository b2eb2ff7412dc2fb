"""Stage job code in S3: single scripts for Processing, ``sourcedir.tar.gz`` for Training.

SageMaker framework containers fetch a training job's code from the
``sagemaker_submit_directory`` hyperparameter (an S3 ``sourcedir.tar.gz``); processing jobs
receive scripts as a ProcessingInput. Keys carry a hash of the content, so re-running a DAG
with unchanged scripts uploads nothing new and a job always runs the code it was planned with.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path


def _source_files(directory: Path) -> list[Path]:
    """The regular files under ``directory``, sorted; ``ValueError`` naming the first link.

    Symbolic links are refused, not followed: one could carry a file from outside the
    directory (a credentials file, say) into S3 and every job's container.
    """
    files = []
    for root, dirs, names in os.walk(directory):
        for name in sorted(dirs) + sorted(names):
            path = Path(root, name)
            if path.is_symlink():
                raise ValueError(
                    f"source_dir {directory}: {path.relative_to(directory)} is a symbolic link "
                    f"(to {os.readlink(path)}); only regular files are staged"
                )
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        files.extend(Path(root, name) for name in names if Path(root, name).is_file())
    return sorted(files)


def _sourcedir_archive(directory: Path) -> bytes:
    """A reproducible tar.gz of a directory's regular files (sorted, no owners, fixed mtimes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        for path in _source_files(directory):
            info = tarfile.TarInfo(path.relative_to(directory).as_posix())
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    # gzip embeds a timestamp; zero it so equal content gives equal bytes.
    raw = bytearray(buffer.getvalue())
    raw[4:8] = b"\x00\x00\x00\x00"
    return bytes(raw)


class CodeStager:
    """Uploads job code under ``s3://<bucket>/<prefix>/<content hash>/`` through the S3 hook."""

    def __init__(self, bucket: str, prefix: str, aws_conn_id: str | None = "aws_default") -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.aws_conn_id = aws_conn_id

    def _put(self, data: bytes, filename: str) -> str:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        key = f"{self.prefix}/{hashlib.sha256(data).hexdigest()[:16]}/{filename}"
        S3Hook(aws_conn_id=self.aws_conn_id).load_bytes(data, key=key, bucket_name=self.bucket, replace=True)
        return f"s3://{self.bucket}/{key}"

    def script(self, path: Path) -> str:
        """One script, for a ProcessingInput; returns its S3 URI."""
        return self._put(path.read_bytes(), path.name)

    def source_dir(self, directory: Path) -> str:
        """A directory as ``sourcedir.tar.gz``, for ``sagemaker_submit_directory``; a symbolic link
        in it is a ``ValueError`` (see ``_source_files``), raised before anything is uploaded."""
        return self._put(_sourcedir_archive(directory), "sourcedir.tar.gz")
