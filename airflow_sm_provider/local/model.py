"""Request validation against botocore's service models.

botocore validates required members, types and minimums on the client, but not patterns,
maximums or enums; SageMaker checks those on the server and answers with a
``ValidationException`` listing each broken constraint. This module does the same from the
shapes botocore ships (``sagemaker/2017-07-24``, ``sagemaker-metrics/2022-09-30``), so the
engine rejects what AWS rejects, including requests sent with client-side validation off.

Patterns in the model are unanchored Java regular expressions that must match the whole
value; 18 of them use ``\\p{L}``-style classes, which the ``regex`` package understands.
"""

from __future__ import annotations

import functools
from typing import Any

import regex
from botocore.model import OperationModel, ServiceModel, Shape

from airflow_sm_provider.local.errors import UnknownOperation, ValidationException

_MAX_REPORTED = 10


@functools.cache
def service_model(service: str) -> ServiceModel:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


#: Java writes "any supplementary character" as a range of UTF-16 surrogate pairs.
_JAVA_SURROGATE_RANGE = r"\uD800\uDC00-\uDBFF\uDFFF"


@functools.cache
def _compiled(pattern: str) -> regex.Pattern[str] | None:
    try:
        return regex.compile(pattern.replace(_JAVA_SURROGATE_RANGE, r"\U00010000-\U0010FFFF"))
    except regex.error:  # a construct only Java knows: skip rather than reject valid requests
        return None


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _show(value: Any) -> str:
    return "null" if value is None else f"'{value}'"


class _Validator:
    """Walks one request against its input shape, collecting AWS-phrased violations."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, value: Any, path: str, rule: str) -> None:
        self.errors.append(f"Value {_show(value)} at '{path}' failed to satisfy constraint: {rule}")

    def check(self, shape: Shape, value: Any, path: str) -> None:
        kind = shape.type_name
        checker = getattr(self, f"_check_{kind}", None)
        if checker is not None:
            checker(shape, value, path)

    def _check_structure(self, shape: Shape, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            self.fail(value, path, "Member must be a structure")
            return
        for name in shape.required_members:
            if value.get(name) is None:
                self.fail(None, self._join(path, name), "Member must not be null")
        for name, member in shape.members.items():
            if value.get(name) is not None:
                self.check(member, value[name], self._join(path, name))

    def _check_list(self, shape: Shape, value: Any, path: str) -> None:
        if not isinstance(value, list):
            self.fail(value, path, "Member must be a list")
            return
        self._check_length(shape, value, len(value), path)
        for index, item in enumerate(value, start=1):
            self.check(shape.member, item, f"{path}.{index}.member")

    def _check_map(self, shape: Shape, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            self.fail(value, path, "Member must be a map")
            return
        self._check_length(shape, value, len(value), path)
        for key, item in value.items():
            self.check(shape.key, key, f"{path}.key")
            self.check(shape.value, item, f"{path}.value")

    def _check_string(self, shape: Shape, value: Any, path: str) -> None:
        if not isinstance(value, str):
            self.fail(value, path, "Member must be a string")
            return
        self._check_length(shape, value, len(value), path)
        if shape.enum and value not in shape.enum:
            self.fail(value, path, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        pattern = shape.metadata.get("pattern")
        if pattern:
            compiled = _compiled(pattern)
            if compiled is not None and compiled.fullmatch(value) is None:
                self.fail(value, path, f"Member must satisfy regular expression pattern: {pattern}")

    def _check_integer(self, shape: Shape, value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(value, path, "Member must be an integer")
            return
        self._check_range(shape, value, path)

    _check_long = _check_integer

    def _check_float(self, shape: Shape, value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(value, path, "Member must be a number")
            return
        self._check_range(shape, value, path)

    _check_double = _check_float

    def _check_boolean(self, shape: Shape, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            self.fail(value, path, "Member must be a boolean")

    def _check_length(self, shape: Shape, value: Any, length: int, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        shown = value if isinstance(value, str) else None
        if low is not None and length < low:
            self.fail(shown, path, f"Member must have length greater than or equal to {low}")
        if high is not None and length > high:
            self.fail(shown, path, f"Member must have length less than or equal to {high}")

    def _check_range(self, shape: Shape, value: float, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and value < low:
            self.fail(value, path, f"Member must have value greater than or equal to {low}")
        if high is not None and value > high:
            self.fail(value, path, f"Member must have value less than or equal to {high}")

    @staticmethod
    def _join(path: str, name: str) -> str:
        return f"{path}.{_camel(name)}" if path else _camel(name)


def operation(service: str, name: str) -> OperationModel:
    """The operation's model; UnknownOperation if the service has no such operation."""
    model = service_model(service)
    if name not in model.operation_names:
        raise UnknownOperation(f"Unknown operation {name} for service {model.service_name}")
    return model.operation_model(name)


def validate(service: str, operation_name: str, params: Any) -> None:
    """Raise ValidationException listing every constraint the request breaks, as AWS words it."""
    shape = operation(service, operation_name).input_shape
    if shape is None:
        return
    validator = _Validator()
    validator.check(shape, params, "")
    if validator.errors:
        count = len(validator.errors)
        shown = "; ".join(validator.errors[:_MAX_REPORTED])
        noun = "error" if count == 1 else "errors"
        raise ValidationException(f"{count} validation {noun} detected: {shown}")
