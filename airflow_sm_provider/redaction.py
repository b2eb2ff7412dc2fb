"""Credentials out of what the provider writes for people: failure messages and reports.

Pure (no Airflow or AWS imports). Airflow masks secrets in task logs, but not in the objects a
task writes to S3 or sends to Slack, and a job's failure reason or hyperparameters are whatever
its author put there. Three things are replaced by ``[redacted]``:

- values the caller knows to be secret (the worker's own AWS keys), wherever they appear;
- what looks like a credential in text: AWS access key ids, presigned-URL signatures and
  ``secret=...``-style assignments;
- the value of any mapping key that names a secret (``password``, ``aws-secret-access-key``,
  ``api_key``, ...), as Airflow's masker treats connection extras, also in SageMaker's
  ``[{"Key": ..., "Value": ...}]`` tag lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["REDACTED", "is_sensitive_key", "redact", "redact_values"]

REDACTED = "[redacted]"
#: A known secret shorter than this is not searched for: it would blank ordinary words.
MIN_KNOWN_CHARS = 8

#: A word naming a secret, standing alone between separators or camelCase humps:
#: ``api_token``, ``AWS_SECRET_ACCESS_KEY`` and ``DbPassword`` name secrets, ``tokenizer`` and
#: ``max_tokens`` do not.
_SENSITIVE_NAME = (
    r"(?:(?<![A-Za-z])|(?=[A-Z]))"
    r"(?i:secret|password|passwd|passphrase|token|api[_-]?key|private[_-]?key|credentials?)"
    r"(?![a-z])"
)
_SENSITIVE_KEY = re.compile(_SENSITIVE_NAME)
_PATTERNS = (
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),
    (re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s]+"), rf"\1{REDACTED}"),
    (
        re.compile(rf"({_SENSITIVE_NAME}[\w-]*[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]+"),
        rf"\1{REDACTED}",
    ),
)


def is_sensitive_key(key: str) -> bool:
    """Whether a key names a secret, e.g. ``db_password`` or ``AWS_SECRET_ACCESS_KEY``."""
    return bool(_SENSITIVE_KEY.search(key))


def redact(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with known secrets and what looks like a credential replaced by ``[redacted]``."""
    for secret in sorted({k for k in known if k and len(k) >= MIN_KNOWN_CHARS}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_values(value: Any, known: Iterable[str] = ()) -> Any:
    """A copy of ``value`` (mappings, lists, strings, nested) with every string redacted and the
    values of sensitive keys replaced whole; other values are returned as they are."""
    known = tuple(known)
    if isinstance(value, str):
        return redact(value, known)
    if isinstance(value, Mapping):
        tag_key = value.get("Key")
        secret_tag = isinstance(tag_key, str) and is_sensitive_key(tag_key)
        return {
            key: REDACTED
            if (secret_tag and key == "Value") or (isinstance(key, str) and is_sensitive_key(key) and item)
            else redact_values(item, known)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_values(item, known) for item in value]
    return value
