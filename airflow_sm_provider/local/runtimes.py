"""Which interpreter runs a job, by the job's container image.

The engine runs no containers: an image URI is looked up in a small table of glob patterns
(``fnmatch``, first match wins) and the job runs with that runtime's Python. Without a table,
every image runs with the engine's own interpreter, which is what a user iterating on a
script in one virtualenv wants. Example::

    {"*pytorch*": {"python": "/opt/venvs/torch/bin/python", "env": {"OMP_NUM_THREADS": "1"}},
     "*": sys.executable}
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Runtime:
    """How to run a job's entry point: the interpreter and extra environment."""

    python: str = sys.executable
    env: Mapping[str, str] = field(default_factory=dict)


RuntimeSpec = Runtime | Mapping[str, object] | str


def _as_runtime(spec: RuntimeSpec) -> Runtime:
    if isinstance(spec, Runtime):
        return spec
    if isinstance(spec, str):
        return Runtime(python=spec)
    env = spec.get("env") or {}
    return Runtime(python=str(spec.get("python") or sys.executable), env=dict(env))  # type: ignore[call-overload]


def resolve_runtime(table: Mapping[str, RuntimeSpec] | None, image: str) -> Runtime:
    """The runtime of ``image``: first matching pattern of ``table``, else the current Python."""
    for pattern, spec in (table or {}).items():
        if fnmatch.fnmatchcase(image, pattern):
            return _as_runtime(spec)
    return Runtime()
