"""Request validation against botocore's service models.

botocore validates required members, types and minimums on the client, but not patterns,
maximums or enums; SageMaker checks those on the server and answers with a
``ValidationException`` listing each broken constraint. This module does the same from the
shapes botocore ships (``sagemaker/2017-07-24``, ``sagemaker-metrics/2022-09-30``), so the
engine rejects what AWS rejects, including requests sent with client-side validation off.

Theory of operation. A request is first checked for JSON types (a string where the model
wants an integer is a ``SerializationException`` on AWS: the service cannot even read it),
then for constraints, phrased as AWS phrases them::

    2 validation errors detected: Value 'a b' at 'trainingJobName' failed to satisfy
    constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62};
    Value null at 'roleArn' failed to satisfy constraint: Member must not be null

Member paths are lowerCamel; list items are ``tags.1.member.key`` (1-based); a list or map of
plain values reports once, at the list or map, with every constraint of its members.
Patterns in the model are unanchored Java regular expressions that must match the whole
value (``fullmatch``); some use ``\\p{L}``-style classes, which the ``regex`` package
understands. Compiled patterns are cached, so validating a request costs tens of microseconds.

Limits SageMaker documents but the model lacks are in :data:`DOCUMENTED_MAXIMUMS`, and
prefixes AWS reserves (``aws:`` tag keys) in :data:`RESERVED_PREFIXES`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import regex
from botocore.model import OperationModel, ServiceModel, Shape

from airflow_sm_provider.local.errors import SerializationException, UnknownOperation, ValidationException

#: Longest MaxRuntimeInSeconds per job type, from SageMaker's documentation ("28 days" for
#: training; processing's 777,600 s is also in the model).
MAX_RUNTIME_SECONDS: Mapping[str, int] = {"training": 28 * 24 * 3600, "processing": 777_600}

#: Documented maxima the model does not carry: operation -> member path -> largest value.
DOCUMENTED_MAXIMUMS: Mapping[str, Mapping[tuple[str, ...], int]] = {
    "CreateTrainingJob": {("StoppingCondition", "MaxRuntimeInSeconds"): MAX_RUNTIME_SECONDS["training"]},
    "CreateProcessingJob": {("StoppingCondition", "MaxRuntimeInSeconds"): MAX_RUNTIME_SECONDS["processing"]},
}


#: Shape name -> prefix a value may not start with (any case): AWS keeps ``aws:`` tag keys for
#: itself, on create, AddTags and DeleteTags alike.
RESERVED_PREFIXES: Mapping[str, str] = {"TagKey": "aws:"}


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


_SCALARS = {"string", "integer", "long", "float", "double", "boolean", "timestamp", "blob"}
_TYPE_NAMES = {
    "structure": "a structure",
    "list": "a list",
    "map": "a map",
    "string": "a string",
    "integer": "an integer",
    "long": "an integer",
    "float": "a number",
    "double": "a number",
    "boolean": "a boolean",
    "timestamp": "a timestamp",
    "blob": "a base64 string",
}


def _has_type(kind: str, value: Any) -> bool:
    if kind == "structure" or kind == "map":
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, list)
    if kind == "string" or kind == "blob":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "integer" or kind == "long":
        return isinstance(value, int)
    if kind == "timestamp":  # epoch seconds on the wire; ISO 8601 strings are read too
        return isinstance(value, int | float | str)
    return isinstance(value, int | float)


def _require_type(shape: Shape, value: Any, path: str) -> None:
    if not _has_type(shape.type_name, value):
        expected = _TYPE_NAMES.get(shape.type_name, shape.type_name)
        shown = json.dumps(value, default=str)[:80]
        raise SerializationException(f"Expected {expected} at '{path or 'request'}', got {shown}")


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _show(shape: Shape | None, value: Any) -> str:
    """The value as AWS echoes it: quoted, ``null`` when absent, hidden when sensitive."""
    if value is None:
        return "Value null"
    if shape is not None and shape.metadata.get("sensitive"):
        return "Value"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return f"Value '{text}'"


def _broken_rules(shape: Shape, value: Any) -> list[str]:
    """The constraints a scalar of the right type breaks."""
    rules: list[str] = []
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if isinstance(value, str):
        if low is not None and len(value) < low:
            rules.append(f"Member must have length greater than or equal to {low}")
        if high is not None and len(value) > high:
            rules.append(f"Member must have length less than or equal to {high}")
        if shape.enum and value not in shape.enum:
            rules.append(f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        pattern = shape.metadata.get("pattern")
        if pattern:
            compiled = _compiled(pattern)
            if compiled is not None and compiled.fullmatch(value) is None:
                rules.append(f"Member must satisfy regular expression pattern: {pattern}")
        reserved = RESERVED_PREFIXES.get(shape.name)
        if reserved and value.lower().startswith(reserved):
            rules.append(_reserved_rule(reserved))
    elif isinstance(value, int | float) and not isinstance(value, bool) and shape.type_name != "timestamp":
        if low is not None and value < low:
            rules.append(f"Member must have value greater than or equal to {low}")
        if high is not None and value > high:
            rules.append(f"Member must have value less than or equal to {high}")
    return rules


def _all_rules(shape: Shape) -> list[str]:
    """Every constraint of a scalar shape, as AWS lists them for list items and map entries."""
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    unit = "length" if shape.type_name == "string" else "value"
    rules = []
    if high is not None:
        rules.append(f"Member must have {unit} less than or equal to {high}")
    if low is not None:
        rules.append(f"Member must have {unit} greater than or equal to {low}")
    if shape.enum:
        rules.append(f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
    if shape.metadata.get("pattern"):
        rules.append(f"Member must satisfy regular expression pattern: {shape.metadata['pattern']}")
    if shape.name in RESERVED_PREFIXES:
        rules.append(_reserved_rule(RESERVED_PREFIXES[shape.name]))
    return rules


def _reserved_rule(prefix: str) -> str:
    return f"Member must not start with '{prefix}', a prefix reserved for AWS use"


class _Validator:
    """Walks one request against its input shape, collecting AWS-phrased violations."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, shape: Shape | None, value: Any, path: str, rule: str) -> None:
        self.errors.append(f"{_show(shape, value)} at '{path}' failed to satisfy constraint: {rule}")

    def check(self, shape: Shape, value: Any, path: str) -> None:
        _require_type(shape, value, path)
        kind = shape.type_name
        if kind == "structure":
            self._structure(shape, value, path)
        elif kind == "list":
            self._container(shape, value, path, list(value), "Member")
        elif kind == "map":
            self._container(shape, value, path, list(value.values()), "Map value")
            self._items(shape.key, value, path, list(value), "Map keys")
        else:
            for rule in _broken_rules(shape, value):
                self.fail(shape, value, path, rule)

    def _structure(self, shape: Shape, value: dict[str, Any], path: str) -> None:
        for name in shape.required_members:
            if value.get(name) is None:
                self.fail(None, None, _join(path, name), "Member must not be null")
        for name, member in shape.members.items():
            if value.get(name) is not None:
                self.check(member, value[name], _join(path, name))

    def _container(self, shape: Shape, value: Any, path: str, items: list[Any], noun: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and len(items) < low:
            self.fail(shape, value, path, f"Member must have length greater than or equal to {low}")
        if high is not None and len(items) > high:
            self.fail(shape, value, path, f"Member must have length less than or equal to {high}")
        member = shape.member if shape.type_name == "list" else shape.value
        if member.type_name in _SCALARS:
            self._items(member, value, path, items, noun)
        elif shape.type_name == "list":
            for index, item in enumerate(items, start=1):
                self.check(member, item, f"{path}.{index}.member")
        else:
            for key, item in value.items():
                self.check(member, item, f"{path}.{key}")

    def _items(self, member: Shape, value: Any, path: str, items: list[Any], noun: str) -> None:
        """Scalar items: type-check each, report once at the container with all member rules."""
        broken = False
        for item in items:
            _require_type(member, item, path)
            broken = broken or bool(_broken_rules(member, item))
        if broken:
            rules = ", ".join(_all_rules(member))
            self.fail(member, value, path, f"{noun} must satisfy constraint: [{rules}]")


def _join(path: str, name: str) -> str:
    return f"{path}.{_camel(name)}" if path else _camel(name)


def operation(service: str, name: str) -> OperationModel:
    """The operation's model; UnknownOperation if the service has no such operation."""
    model = service_model(service)
    if name not in model.operation_names:
        raise UnknownOperation(f"Unknown operation {name} for service {model.service_name}")
    return model.operation_model(name)


def validate(service: str, operation_name: str, params: Any) -> None:
    """Raise the error AWS would answer ``params`` with, if any; return None for a valid request.

    UnknownOperation for an operation the model lacks, SerializationException for a member of
    the wrong JSON type, ValidationException for a top-level member the model lacks (AWS would
    ignore it; stored, it would burden every later List and Search) or listing every broken
    constraint.
    """
    shape = operation(service, operation_name).input_shape
    if shape is None:
        return
    if isinstance(params, dict) and (unknown := [name for name in params if name not in shape.members]):
        shown = ", ".join(repr(name[:64]) for name in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise ValidationException(
            f"{operation_name} has no member {shown}: only the members of botocore's model are accepted"
        )
    validator = _Validator()
    validator.check(shape, params, "")
    for member_path, maximum in DOCUMENTED_MAXIMUMS.get(operation_name, {}).items():
        value: Any = params
        member: Shape = shape
        for name in member_path:
            value = value.get(name) if isinstance(value, dict) else None
            member = member.members[name]
        if "max" in member.metadata:  # the model has its own maximum, already checked
            continue
        if isinstance(value, int | float) and not isinstance(value, bool) and value > maximum:
            path = ".".join(_camel(name) for name in member_path)
            validator.fail(None, value, path, f"Member must have value less than or equal to {maximum}")
    if validator.errors:
        count = len(validator.errors)
        noun = "error" if count == 1 else "errors"
        raise ValidationException(f"{count} validation {noun} detected: {'; '.join(validator.errors)}")
