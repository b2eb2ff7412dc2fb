"""Deterministic job names and identity tags: how a retried task finds the job it started.

A job's name is the user's name, kept as a readable prefix, plus a hash of the task's identity
(namespace, dag_id, run_id, task_id, map_index) and of the attempt salt. Every try of one task
instance derives the same first name, so a retry finds its job by name; a new salt gives the
next name when the earlier job failed or was stopped. The identity is also written into tags
(readable values plus an exact digest) so a job found under our name is checked to be ours,
and a config-hash tag tells whether a completed job ran the config we would run now.

Pure: stdlib only (``regex`` is not a runtime dependency, so the TagValue character classes
are matched with ``unicodedata`` categories).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

MAX_NAME_LENGTH = 63
HASH_LENGTH = 10
#: The longest user name kept whole: room for "-" and the hash.
MAX_PREFIX_LENGTH = MAX_NAME_LENGTH - 1 - HASH_LENGTH
MAX_TAG_VALUE_LENGTH = 256
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
TAG_PREFIX = "airflow-sm:"
IDENTITY_TAG = f"{TAG_PREFIX}identity"
CONFIG_HASH_TAG = f"{TAG_PREFIX}config-hash"
_TAG_VALUE_EXTRA = frozenset("_.:/=+-@")


@dataclass(frozen=True)
class JobIdentity:
    """Who a job belongs to: the same on every try of one task instance."""

    namespace: str
    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    def key(self) -> str:
        """Canonical text of the identity (JSON, so no separator can be forged)."""
        return json.dumps([self.namespace, self.dag_id, self.run_id, self.task_id, self.map_index])

    def digest(self) -> str:
        """Exact fingerprint written to the identity tag and compared on lookup."""
        return hashlib.sha256(self.key().encode()).hexdigest()


def _prefix(prefix: str, max_length: int) -> str:
    """The user's name reduced to SageMaker's name alphabet and ``max_length``."""
    cleaned = re.sub(r"[^a-zA-Z0-9-]+", "-", prefix).lstrip("-")
    cleaned = cleaned[:max_length].rstrip("-")
    return cleaned or "job"


def job_name(
    prefix: str, identity: JobIdentity, attempt_salt: str = "", *, max_length: int = MAX_NAME_LENGTH
) -> str:
    """``<prefix>-<hash>``: at most ``max_length`` chars, matching SageMaker's name pattern.

    ``max_length`` is shorter for names with tighter limits than a job's (the SDK's run names).
    """
    material = identity.key() if not attempt_salt else f"{identity.key()}#{attempt_salt}"
    digest = hashlib.sha256(material.encode()).hexdigest()[:HASH_LENGTH]
    return f"{_prefix(prefix, max_length - 1 - HASH_LENGTH)}-{digest}"


def name_stem(name: str) -> str:
    """The readable prefix of a name made by :func:`job_name` (the name itself otherwise)."""
    head, _, tail = name.rpartition("-")
    if head and len(tail) == HASH_LENGTH and re.fullmatch(r"[0-9a-f]+", tail):
        return head
    return name


def config_hash(config: Any) -> str:
    """Stable fingerprint of a job config (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def sanitize_tag_value(value: Any) -> str:
    """``value`` as a valid TagValue: ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*``, at most 256 chars."""
    text = str(value)
    kept = "".join(
        ch if ch in _TAG_VALUE_EXTRA or unicodedata.category(ch)[0] in "LZN" else "_" for ch in text
    )
    return kept[:MAX_TAG_VALUE_LENGTH]


def tag_key(part: str) -> str:
    """The key of one identity tag, e.g. ``airflow-sm:dag-id``."""
    return f"{TAG_PREFIX}{part}"


def identity_tags(identity: JobIdentity, config_hash: str | None = None) -> list[dict[str, str]]:
    """Tags that mark a resource as this task's: readable identity parts, the digest, and for a
    job the config hash (tracked runs carry the identity alone)."""
    values = {
        "namespace": identity.namespace,
        "dag-id": identity.dag_id,
        "run-id": identity.run_id,
        "task-id": identity.task_id,
        "map-index": str(identity.map_index),
        "identity": identity.digest(),
    }
    if config_hash is not None:
        values["config-hash"] = config_hash
    return [{"Key": tag_key(key), "Value": sanitize_tag_value(value)} for key, value in values.items()]
