"""SageMaker's Search evaluated over plain records.

Theory of operation: a backend hands :func:`run_search` the records of one resource type
(dicts shaped as the ``SearchRecord`` member of that resource) and the Search request. A
``SearchExpression`` is a tree: its ``Filters``, ``NestedFilters`` and ``SubExpressions`` are
combined with its ``Operator`` (``And`` by default, ``Or``). A filter ``Name`` is a dotted
path into the record:

- plain members and nested members: ``TrainingJobName``, ``Source.SourceArn``;
- maps: ``Parameters.lr``, ``HyperParameters.epochs``, ``InputArtifacts.data.Value``
  (keys containing dots such as ``SageMaker.ImageUri`` resolve too);
- lists of named entries, indexed by the entry's ``Key``, ``MetricName`` or ``Name``:
  ``Tags.my-key``, ``Metrics.loss.Max``; a training job's ``Metrics.<name>`` is its
  ``FinalMetricDataList`` entry;
- other lists fan out, and a filter holds if any element satisfies it: ``Parents.TrialName``.

A resolved leaf that is a tag, a final metric or a parameter value compares by its value
(``Value``, ``NumberValue`` or ``StringValue``); a metric summary named without a statistic
compares by its ``Last`` value. Numbers compare numerically with a numeric ``Value`` or with
an ISO 8601 timestamp (records carry timestamps as epoch seconds); text compares as text,
numerically when both sides are numbers (hyperparameters are strings), and case-insensitively
for entity names, which SageMaker treats case-insensitively. ``NotEquals`` holds when no
value equals (a missing property is not equal). ``In`` takes comma-separated values.

The service rules the botocore model cannot express are checked here and raise
``ValidationException``: an empty expression, a filter without a value, and more than one
``Contains`` outside the experiment properties that allow several. Paging is by an opaque
token bound to the request, so a token cannot be replayed against another query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from airflow_sm_provider.local.errors import ValidationException

Record = dict[str, Any]

#: Search ``Resource`` value -> member of ``SearchRecord`` that carries the record.
RECORD_KEYS: dict[str, str] = {
    "ExperimentTrial": "Trial",
    "ExperimentTrialComponent": "TrialComponent",
}

DEFAULT_MAX_RESULTS = 10
_VALUE_FREE_OPERATORS = frozenset({"Exists", "NotExists"})
_ORDERING = {
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
}
#: Properties compared case-insensitively: SageMaker's entity names.
_NAME_PROPERTIES = frozenset(
    {"ExperimentName", "TrialName", "TrialComponentName", "TrainingJobName", "RunName"}
)
#: Properties that may carry several Contains filters in one expression (per the Filter docs).
_MULTI_CONTAINS_ROOTS = {
    "Experiment": frozenset({"DisplayName", "ExperimentName", "Tags"}),
    "Trial": frozenset({"DisplayName", "TrialName", "Tags"}),
    "TrialComponent": frozenset(
        {"DisplayName", "TrialComponentName", "Tags", "InputArtifacts", "OutputArtifacts"}
    ),
}
#: Names a list entry is indexed by in a path (``Tags.<Key>``, ``Metrics.<MetricName>``).
_ENTRY_KEYS = ("Key", "MetricName", "Name")
#: Path roots that are spelled differently in a resource's record.
_ALIASES = {"Metrics": "FinalMetricDataList"}


def record_key(resource: str) -> str:
    """The ``SearchRecord`` member that holds records of a Search ``Resource``."""
    return RECORD_KEYS.get(resource, resource)


def run_search(records: Iterable[Record], request: dict[str, Any]) -> dict[str, Any]:
    """Filter, sort and page records as Search does; returns the Search response body."""
    resource = request["Resource"]
    key = record_key(resource)
    expression = request.get("SearchExpression")
    if expression is not None:
        validate_expression(expression, key)
    matched = [r for r in records if expression is None or matches(r, expression, key)]
    ordered = sort_records(
        matched, request.get("SortBy", "LastModifiedTime"), request.get("SortOrder", "Descending"), key
    )
    fingerprint = request_fingerprint(request)
    page, token = paginate(
        ordered, request.get("MaxResults", DEFAULT_MAX_RESULTS), request.get("NextToken"), fingerprint
    )
    response: dict[str, Any] = {
        "Results": [{key: r} for r in page],
        "TotalHits": {"Value": len(ordered), "Relation": "EqualTo"},
    }
    if token:
        response["NextToken"] = token
    return response


# -- service rules ---------------------------------------------------------------------------
def validate_expression(expression: dict[str, Any], key: str) -> None:
    """Raise ValidationException for expressions SageMaker rejects beyond the model's rules."""
    contains = 0
    for expr in _walk(expression):
        if not (expr.get("Filters") or expr.get("NestedFilters") or expr.get("SubExpressions")):
            raise ValidationException(
                "A SearchExpression must specify at least one Filter, NestedFilter or SubExpression."
            )
        filters = list(expr.get("Filters") or [])
        for nested in expr.get("NestedFilters") or []:
            filters.extend(nested.get("Filters") or [])
        for flt in filters:
            operator = _operator(flt)
            if operator not in _VALUE_FREE_OPERATORS and flt.get("Value") is None:
                raise ValidationException(
                    f"Filter on '{flt['Name']}' with operator {operator} requires a Value."
                )
            if operator == "Contains" and not _multi_contains(flt["Name"], key):
                contains += 1
    if contains > 1:
        raise ValidationException("'CONTAINS' operator usage limit of 1 exceeded.")


def _walk(expression: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield expression
    for sub in expression.get("SubExpressions") or []:
        yield from _walk(sub)


def _multi_contains(name: str, key: str) -> bool:
    parts = name.split(".")
    if parts[0] == key and len(parts) > 1:
        parts = parts[1:]
    return parts[0] in _MULTI_CONTAINS_ROOTS.get(key, frozenset())


def _operator(flt: dict[str, Any]) -> str:
    """A filter's operator; Equals when only a Value is given, as the API documents."""
    if flt.get("Operator"):
        return flt["Operator"]
    if flt.get("Value") is None:
        raise ValidationException(f"Filter on '{flt['Name']}' needs an Operator or a Value.")
    return "Equals"


# -- evaluation ------------------------------------------------------------------------------
def matches(record: Record, expression: dict[str, Any], key: str = "") -> bool:
    """Whether a record satisfies a SearchExpression."""
    outcomes: list[bool] = []
    outcomes.extend(filter_holds(record, f, key) for f in expression.get("Filters") or [])
    outcomes.extend(_nested_holds(record, n, key) for n in expression.get("NestedFilters") or [])
    outcomes.extend(matches(record, s, key) for s in expression.get("SubExpressions") or [])
    if expression.get("Operator", "And") == "Or":
        return any(outcomes)
    return all(outcomes)


def _nested_holds(record: Record, nested: dict[str, Any], key: str) -> bool:
    """True if one element of the nested list satisfies every filter of the group."""
    prefix = nested["NestedPropertyName"]
    elements = [e for e in resolve(record, prefix, key) if isinstance(e, dict)]
    relative = []
    for flt in nested["Filters"]:
        name = flt["Name"]
        if name.startswith(prefix + "."):
            name = name[len(prefix) + 1 :]
        relative.append({**flt, "Name": name})
    return any(all(filter_holds(e, f) for f in relative) for e in elements)


def filter_holds(record: Record, flt: dict[str, Any], key: str = "") -> bool:
    """Whether one Filter holds for a record."""
    operator = _operator(flt)
    name = flt["Name"]
    candidates = resolve(record, name, key)
    if operator == "Exists":
        return bool(candidates)
    if operator == "NotExists":
        return not candidates
    value = str(flt["Value"])
    fold = name.rsplit(".", 1)[-1] in _NAME_PROPERTIES
    leaves = [leaf for leaf in map(_leaf, candidates) if leaf is not None]
    if operator == "NotEquals":
        return not any(_compare("Equals", leaf, value, fold) for leaf in leaves)
    return any(_compare(operator, leaf, value, fold) for leaf in leaves)


def resolve(record: Record, name: str, key: str = "") -> list[Any]:
    """All values a dotted property name designates in a record (empty if none)."""
    parts = name.split(".")
    if key and parts[0] == key and parts[0] not in record and len(parts) > 1:
        parts = parts[1:]
    if parts[0] not in record and _ALIASES.get(parts[0]) in record:
        parts = [_ALIASES[parts[0]], *parts[1:]]
    return _resolve(record, parts)


def _resolve(node: Any, parts: list[str]) -> list[Any]:
    if not parts:
        return list(node) if isinstance(node, list) else [node]
    if isinstance(node, dict):
        for size in range(len(parts), 0, -1):
            joined = ".".join(parts[:size])
            if joined in node:
                return _resolve(node[joined], parts[size:])
        return []
    if isinstance(node, list):
        for size in range(len(parts), 0, -1):
            joined = ".".join(parts[:size])
            named = [e for e in node if isinstance(e, dict) and _entry_name(e) == joined]
            if named:
                return [v for e in named for v in _resolve(e, parts[size:])]
        return [v for e in node for v in _resolve(e, parts)]
    return []


def _entry_name(entry: dict[str, Any]) -> Any:
    for field in _ENTRY_KEYS:
        if field in entry:
            return entry[field]
    return None


def _leaf(value: Any) -> Any:
    """The comparable value of a resolved node; None for structures that have none."""
    if isinstance(value, dict):
        for field in ("Value", "NumberValue", "StringValue", "Last"):
            if field in value:
                return value[field]
        return None
    if isinstance(value, list):
        return None
    return value


def _compare(operator: str, actual: Any, value: str, fold: bool) -> bool:
    if isinstance(actual, bool):
        words = [w.strip().lower() for w in value.split(",")] if operator == "In" else [value.lower()]
        return operator in ("Equals", "In") and str(actual).lower() in words
    if isinstance(actual, (int, float)):
        target = _number(value)
        if target is None:
            target = iso_to_epoch(value)
        if target is None or operator in ("Contains", "In"):
            return False
        if operator == "Equals":
            return math.isclose(actual, target, rel_tol=0.0, abs_tol=1e-9)
        return _ORDERING[operator](actual, target)
    text = str(actual)
    if operator in _ORDERING:
        left, right = _number(text), _number(value)
        if left is None or right is None:
            return False
        if right.is_integer() and "." not in value and "e" not in value.lower():
            left = float(math.trunc(left))  # an integer Value compares decimals as integers
        return _ORDERING[operator](left, right)
    if fold:
        text, value = text.lower(), value.lower()
    if operator == "Equals":
        return text == value
    if operator == "Contains":
        return value in text
    if operator == "In":
        return text in [v.strip() for v in value.split(",")]
    return False


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def iso_to_epoch(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 date-time (UTC unless an offset is given)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# -- sorting and paging ----------------------------------------------------------------------
def sort_records(records: list[Record], sort_by: str, sort_order: str, key: str = "") -> list[Record]:
    """Records ordered by a property; records without it come last in either order."""
    present: list[tuple[tuple[int, Any], Record]] = []
    missing: list[Record] = []
    for record in records:
        leaves = [leaf for leaf in map(_leaf, resolve(record, sort_by, key)) if leaf is not None]
        if not leaves:
            missing.append(record)
            continue
        leaf = leaves[0]
        if isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
            present.append(((0, float(leaf)), record))
        else:
            present.append(((1, str(leaf)), record))
    present.sort(key=lambda item: item[0], reverse=sort_order == "Descending")
    return [r for _, r in present] + missing


def request_fingerprint(request: dict[str, Any]) -> str:
    """A digest of the query part of a request, which a NextToken is bound to."""
    query = {k: v for k, v in request.items() if k not in ("NextToken", "MaxResults")}
    return hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:16]


def paginate(
    items: list[Any], max_results: int, next_token: str | None, fingerprint: str
) -> tuple[list[Any], str | None]:
    """One page of items and the token of the next page (None on the last page)."""
    offset = 0
    if next_token:
        offset = _decode_token(next_token, fingerprint)
    end = offset + max_results
    token = None
    if end < len(items):
        raw = json.dumps({"o": end, "f": fingerprint}).encode()
        token = base64.urlsafe_b64encode(raw).decode()
    return items[offset:end], token


def _decode_token(token: str, fingerprint: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset, bound = int(data["o"]), data["f"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ValidationException("Invalid pagination token: NextToken is malformed.") from None
    if bound != fingerprint or offset < 0:
        raise ValidationException("Invalid pagination token: NextToken belongs to a different request.")
    return offset
