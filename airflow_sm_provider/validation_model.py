"""A job config checked against its Create request's shape in botocore's SageMaker model.

The shapes SageMaker's API defines (fields at every depth, JSON types, required members, enum
values, length, count and value bounds) are read from the model botocore ships, so a new field
or enum value needs no edit here; ``validation`` adds the rules the shapes do not carry and
reports both. The model (megabytes of JSON, ~0.5 s) is loaded on first use, at task execution:
DAG files import this module, never load the model. Paths and rules are phrased as
``validation`` phrases its own: ``config.AlgorithmSpecification.TrainingInputMode``,
``must be one of Pipe, File, FastFile, got 'file'``.

An instance type the installed botocore does not list is a warning, not a problem: MWAA pins
an older botocore than the newest instance types, and botocore's client does not check enums,
so SageMaker decides. Pure: no Airflow; botocore is imported inside :func:`_create_shape`.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_sm_provider.job_kinds import KINDS, JobKind

if TYPE_CHECKING:
    from botocore.model import Shape

__all__ = ["model_problems"]

#: Python types a JSON value of each model type may have (numbers never bool).
_MODEL_TYPES: dict[str, tuple[type, ...]] = {
    "structure": (dict,),
    "map": (dict,),
    "list": (list,),
    "string": (str,),
    "blob": (str, bytes),
    "boolean": (bool,),
    "integer": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "timestamp": (int, float, str, datetime),
}
_TYPE_WORDS = {
    "structure": "a dict",
    "map": "a dict",
    "list": "a list",
    "string": "a string",
    "boolean": "a boolean (true/false)",
    "integer": "an integer",
    "long": "an integer",
}


@functools.cache
def _create_shape(kind: JobKind) -> Shape:
    """The Create request's input shape from botocore's SageMaker model (loaded once, lazily)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    operation = "".join(part.title() for part in KINDS[kind].create_method.split("_"))
    return model.operation_model(operation).input_shape


def model_problems(kind: JobKind | str, config: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """(problems, warnings) of ``config`` against the Create request's shape in botocore's model.

    Problems: a field the model lacks (at any depth; botocore's client would refuse it only at
    the call, after a run was tracked), a value of the wrong JSON type (``"true"`` for a
    boolean, a string for ``ContainerEntrypoint``), a missing required member, a value outside
    its enum, a length, count or value outside the model's bounds. Warnings: an instance type
    the installed botocore does not list.
    """
    walk = _ModelWalk()
    walk.check(_create_shape(JobKind(getattr(kind, "value", kind))), config, "config")
    return walk.problems, walk.warnings


class _ModelWalk:
    """Walks a config against a botocore shape, collecting (field, rule) problems."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.warnings: list[str] = []

    def check(self, shape: Shape, value: Any, where: str) -> None:
        kind = shape.type_name
        types = _MODEL_TYPES.get(kind, (object,))
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            word = _TYPE_WORDS.get(kind, f"of type {kind}")
            self.problems.append((where, f"must be {word}, got {type(value).__name__} {shown}"))
            return
        if kind == "structure":
            self._structure(shape, value, where)
        elif kind == "list":
            self._count(shape, value, where)
            for i, item in enumerate(value):
                self.check(shape.member, item, f"{where}[{i}]")
        elif kind == "map":
            self._count(shape, value, where)
            for key, item in value.items():
                if isinstance(key, str):
                    self._scalar(shape.key, key, f"{where}.{key}", noun="name")
                self.check(shape.value, item, f"{where}.{key}")
        else:
            self._scalar(shape, value, where)

    def _structure(self, shape: Shape, value: Mapping[str, Any], where: str) -> None:
        members = shape.members
        for name in value:
            if name not in members:
                close = difflib.get_close_matches(str(name), list(members), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                self.problems.append(
                    (f"{where}.{name}", f"is not a field of {shape.name} in botocore's SageMaker model{hint}")
                )
        for name in shape.required_members:
            if value.get(name) is None:
                self.problems.append((f"{where}.{name}", "is required"))
        for name, member in members.items():
            if value.get(name) is not None:
                self.check(member, value[name], f"{where}.{name}")

    def _count(self, shape: Shape, value: Any, where: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and len(value) < low:
            self.problems.append((where, f"must hold at least {low} item(s), got {len(value)}"))
        if high is not None and len(value) > high:
            self.problems.append((where, f"may hold at most {high} items, got {len(value)}"))

    def _scalar(self, shape: Shape, value: Any, where: str, noun: str = "value") -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if isinstance(value, str):
            if low is not None and len(value) < low:
                self.problems.append((where, f"{noun} must be at least {low} character(s) long"))
            if high is not None and len(value) > high:
                self.problems.append((where, f"{noun} must be at most {high} characters, got {len(value)}"))
            if shape.enum and value not in shape.enum:
                if shape.name.endswith("InstanceType"):
                    self.warnings.append(
                        f"{where}: {value!r} is not an instance type this botocore knows; passed on to "
                        "SageMaker as given (newer instance types reach older botocore releases late)"
                    )
                else:
                    self.problems.append((where, f"must be one of {', '.join(shape.enum)}, got {value!r}"))
        elif (
            isinstance(value, int | float) and not isinstance(value, bool) and shape.type_name != "timestamp"
        ):
            if low is not None and value < low:
                self.problems.append((where, f"must be at least {low:,}, got {value:,}"))
            if high is not None and value > high:
                self.problems.append((where, f"must be at most {high:,}, got {value:,}"))
