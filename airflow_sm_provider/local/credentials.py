"""The engine's own access key: generated per data dir, or given by the environment or a file.

The engine verifies every AWS request's SigV4 signature (:mod:`auth`) against this key (and
against the job-scoped keys it hands its running jobs). Where it comes from, first match wins:

1. a credentials file passed explicitly (``--credentials-file``);
2. the environment: :data:`ACCESS_KEY_ENV` and :data:`SECRET_KEY_ENV`, both or neither (a fixed
   setup such as ``docker-compose.yaml`` sets them on the engine and on its clients);
3. ``<data dir>/credentials``, generated on first start with mode 0600 and kept, so clients
   configured once keep working across restarts of the same data dir.

The file format is the AWS shared credentials file's (a ``[default]`` section with
``aws_access_key_id`` and ``aws_secret_access_key``), so ``AWS_SHARED_CREDENTIALS_FILE`` can
point clients at it directly.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from airflow_sm_provider.local.auth import SigningKey

ACCESS_KEY_ENV = "SAGEMAKER_LOCAL_ACCESS_KEY_ID"
SECRET_KEY_ENV = "SAGEMAKER_LOCAL_SECRET_ACCESS_KEY"  # noqa: S105 (a variable's name)
FILE_NAME = "credentials"
_SECTION = "default"
_KEY_ID_PREFIX = "LOCAL"  # no AWS key id starts so: a leaked one is recognisable as the engine's


@dataclass(frozen=True)
class EngineCredentials:
    """An access key of the engine. ``repr`` hides the secret, so logs never carry it."""

    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:
        return f"EngineCredentials(access_key_id={self.access_key_id!r}, secret_access_key=***)"


def generate() -> EngineCredentials:
    """A new random key: a 20-character id like AWS's, and a 40-character secret."""
    alphabet = string.ascii_uppercase + string.digits
    key_id = _KEY_ID_PREFIX + "".join(secrets.choice(alphabet) for _ in range(20 - len(_KEY_ID_PREFIX)))
    return EngineCredentials(key_id, secrets.token_urlsafe(30))


def read_file(path: Path) -> EngineCredentials:
    """The key in an AWS-style credentials file; ValueError naming the file and what is missing."""
    parser = configparser.ConfigParser(interpolation=None)
    if not parser.read(path):
        raise ValueError(f"credentials file {path} cannot be read")
    section = parser[_SECTION] if parser.has_section(_SECTION) else {}
    key_id, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
    if not key_id or not secret:
        raise ValueError(
            f"credentials file {path} needs aws_access_key_id and aws_secret_access_key in [{_SECTION}]"
        )
    return EngineCredentials(key_id.strip(), secret.strip())


def write_file(path: Path, credentials: EngineCredentials) -> None:
    """Write ``credentials`` to a new file readable by this user only (0600 from the start)."""
    text = (
        f"[{_SECTION}]\naws_access_key_id = {credentials.access_key_id}\n"
        f"aws_secret_access_key = {credentials.secret_access_key}\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def resolve(
    data_dir: Path, environ: Mapping[str, str] | None = None, credentials_file: Path | None = None
) -> EngineCredentials:
    """The engine's key, by the precedence of the module docstring."""
    if credentials_file is not None:
        return read_file(Path(credentials_file))
    environ = os.environ if environ is None else environ
    key_id, secret = environ.get(ACCESS_KEY_ENV), environ.get(SECRET_KEY_ENV)
    if key_id or secret:
        if not (key_id and secret):
            missing = SECRET_KEY_ENV if key_id else ACCESS_KEY_ENV
            raise ValueError(f"{missing} must be set too: set both, or neither to generate a key")
        return EngineCredentials(key_id, secret)
    path = data_dir / FILE_NAME
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another engine on this data dir wrote it first
            write_file(path, generate())
    return read_file(path)


class KeyRing:
    """The keys the engine accepts: its own, and each running job's.

    ``job_credentials(job, token)`` is the scheduler's: a running job's container credentials
    (``AccessKeyId``, ``SecretAccessKey``, ``Token``), or None. A job's key is learnt when the
    job fetches it (:meth:`hand_out`) and asked for again at each use, so it stops working when
    the job ends.
    """

    def __init__(
        self, own: EngineCredentials, job_credentials: Callable[[str, str], dict[str, str] | None]
    ) -> None:
        self._own = own
        self._job_credentials = job_credentials
        self._jobs: dict[str, tuple[str, str]] = {}  # access key id -> (job, token)

    def hand_out(self, job: str, token: str) -> dict[str, str] | None:
        """A running job's credentials for its token (None if wrong), remembered for :meth:`key`."""
        credentials = self._job_credentials(job, token)
        if credentials is not None:
            self._jobs[credentials["AccessKeyId"]] = (job, token)
        return credentials

    def key(self, access_key_id: str) -> SigningKey | None:
        """The key to verify a signature by ``access_key_id``; None for a key id not (or no longer) valid."""
        if access_key_id == self._own.access_key_id:
            return SigningKey(self._own.secret_access_key)
        job = self._jobs.get(access_key_id)
        credentials = self._job_credentials(*job) if job else None
        if credentials is None or credentials["AccessKeyId"] != access_key_id:
            self._jobs.pop(access_key_id, None)
            return None
        return SigningKey(credentials["SecretAccessKey"], credentials.get("Token"))
