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
import functools
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


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


def parse_runtime_options(values: Iterable[str]) -> dict[str, Runtime]:
    """``--runtime IMAGE_GLOB=PYTHON`` options as a runtimes table, in order; ValueError names a bad one."""
    table: dict[str, Runtime] = {}
    for value in values:
        pattern, sep, python = value.partition("=")
        if not sep or not pattern or not python:
            raise ValueError(
                f"--runtime {value!r}: expected IMAGE_GLOB=PYTHON, e.g. '*pytorch*=/opt/torch/bin/python'"
            )
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise ValueError(f"--runtime {value!r}: {python} is not an executable file")
        table[pattern] = Runtime(python=python)
    return table


def describe_runtimes(table: Mapping[str, RuntimeSpec] | None) -> list[str]:
    """One line per pattern of ``table`` and one for every other image: which Python runs it."""
    lines = []
    for pattern, spec in (table or {}).items():
        python = _as_runtime(spec).python
        lines.append(f"{pattern} -> {python} ({_version_text(interpreter_version(python))})")
    if "*" not in (table or {}):
        lines.append(f"any other image -> {sys.executable} ({_version_text(sys.version_info[:2])})")
    return lines


# -- the image's Python ---------------------------------------------------------------------
#: Python of AWS framework images whose tag does not say it (``...-cpu-py3``), from each
#: image's Dockerfile (``PYTHON_VERSION``) in aws/sagemaker-scikit-learn-container:
#: ``docker/<version>/base/Dockerfile.cpu``. Key: repository name and framework version.
KNOWN_IMAGE_PYTHON: dict[tuple[str, str], tuple[int, int]] = {
    ("sagemaker-scikit-learn", "0.23-1"): (3, 7),
    ("sagemaker-scikit-learn", "1.0-1"): (3, 7),
    ("sagemaker-scikit-learn", "1.2-1"): (3, 9),
    ("sagemaker-scikit-learn", "1.4-2"): (3, 10),
}
_TAG_PYTHON = re.compile(r"(?:^|-)py3(\d{1,2})(?:-|$)")  # Deep Learning Containers: ...-py311-...
VERMIN_TIMEOUT_SECONDS = 30.0


def image_python(image: str) -> tuple[int, int] | None:
    """The Python version ``image`` runs, if its tag says it or :data:`KNOWN_IMAGE_PYTHON` knows it."""
    repository, _, tag = image.rpartition("/")[2].partition(":")
    tag = tag.partition("@")[0]
    if match := _TAG_PYTHON.search(tag):
        return (3, int(match.group(1)))
    for (name, version), python in KNOWN_IMAGE_PYTHON.items():
        if repository == name and (
            tag == version or tag.startswith(f"{version}-cpu") or tag.startswith(f"{version}-gpu")
        ):
            return python
    return None


@functools.cache
def interpreter_version(python: str) -> tuple[int, int] | None:
    """The ``(major, minor)`` of interpreter ``python``; None if it does not run."""
    if python == sys.executable:
        return sys.version_info[:2]
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return _version(out.strip())


def newer_features(script: Path, target: tuple[int, int]) -> list[str] | None:
    """What ``script`` uses that Python ``target`` lacks, by ``vermin``: ``"line 3: pattern matching
    requires Python 3.10"``; a syntax error is an item too; None if vermin is not installed."""
    if importlib.util.find_spec("vermin") is None:
        return None
    command = [
        sys.executable,
        "-c",
        "import sys, vermin; sys.exit(vermin.main())",
        "--no-tips",
        "--format",
        "parsable",
        "--processes",
        "1",
    ]
    command += [f"-t={target[0]}.{target[1]}-", str(script)]
    try:
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=VERMIN_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        return [f"not checked: vermin took longer than {VERMIN_TIMEOUT_SECONDS:.0f} s"]
    found = []
    prefix = f"{script}:"
    for line in out.stdout.splitlines():
        # parsable lines: <path>:<line>:<column>:<py2>:<py3>:<feature>; no line number = a summary
        number, _, _, py3, what = [*line.removeprefix(prefix).split(":", 4), "", "", "", "", ""][:5]
        if not line.startswith(prefix) or not number:
            continue
        if what.startswith("error: "):  # vermin could not parse it: a syntax error
            found.append(f"line {number}: {what.removeprefix('error: ')}")
        elif (needed := _version(py3.lstrip("!~"))) is not None and needed > target:
            found.append(f"line {number}: {what} requires Python {needed[0]}.{needed[1]}")
    return found


def python_notes(image: str, runtime: Runtime, script: Path | None) -> list[str]:
    """Lines for the job's log: the interpreter when it differs from ``image``'s Python, and
    what ``script`` uses that the image's Python lacks (a warning: the job still runs)."""
    wanted = image_python(image)
    if wanted is None:
        return []
    have = interpreter_version(runtime.python)
    wanted_text = f"{wanted[0]}.{wanted[1]}"
    notes = []
    if have != wanted:
        notes.append(
            f"[local engine] image {image} runs Python {wanted_text}; this job runs with {runtime.python} "
            f"({_version_text(have)}): map the image to a Python {wanted_text} interpreter "
            "(--runtime IMAGE_GLOB=PYTHON, or LocalEngine(runtimes=...)) to run it as the container would"
        )
    if script is not None and script.suffix == ".py" and script.is_file():
        found = newer_features(script, wanted)
        if found is None:
            notes.append(
                f"[local engine] {script.name} not checked against Python {wanted_text}: no vermin installed"
            )
        for item in found or ():
            notes.append(
                f"[local engine] warning: {script.name} {item}; the image runs Python {wanted_text}, "
                "so it would fail in the real container"
            )
    return notes


def _version_text(version: tuple[int, int] | None) -> str:
    return f"Python {version[0]}.{version[1]}" if version else "does not run"


def _version(text: str) -> tuple[int, int] | None:
    major, _, minor = text.partition(".")
    if not (major.isdigit() and minor.partition(".")[0].isdigit()):
        return None
    return int(major), int(minor.partition(".")[0])
