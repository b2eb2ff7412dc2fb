"""Pieces every response builder of the engine shares: picking members, tags, List pages.

Written once so the jobs and the experiments backends answer alike: a response lists the
members of its botocore shape explicitly (:func:`pick`), tags merge with the same rule and cap
(:func:`merge_tags`), and every List call pages with the one opaque token scheme of
:func:`search.paginate`, bound to the request it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from airflow_sm_provider.local.errors import ValidationException
from airflow_sm_provider.local.search import paginate, request_fingerprint

#: An API handler: the request's members in, the response's members out.
Handler = Callable[[dict[str, Any]], dict[str, Any]]
#: Tags a SageMaker resource can carry (the service quota "tags per resource").
MAX_TAGS = 50
#: MaxResults of a List call that gives none (the API's documented default).
DEFAULT_PAGE_SIZE = 10


def pick(record: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """The members of ``record`` a response shape names, in the shape's order; absent ones left out."""
    return {name: record[name] for name in fields if name in record}


def merge_tags(
    existing: Iterable[Mapping[str, str]], new: Iterable[Mapping[str, str]]
) -> list[dict[str, str]]:
    """``existing`` with ``new`` merged in (a key keeps its last value); at most :data:`MAX_TAGS`."""
    merged = {t["Key"]: t["Value"] for t in existing}
    merged.update({t["Key"]: t.get("Value", "") for t in new})
    if len(merged) > MAX_TAGS:
        raise ValidationException(f"A resource can have at most {MAX_TAGS} tags.")
    return [{"Key": k, "Value": v} for k, v in merged.items()]


def remove_tags(existing: Iterable[Mapping[str, str]], keys: Iterable[str]) -> list[dict[str, str]]:
    """``existing`` without the tags whose key is in ``keys`` (unknown keys are no error)."""
    drop = set(keys)
    return [dict(t) for t in existing if t["Key"] not in drop]


def list_page(
    items: list[Any], params: Mapping[str, Any], key: str, default_size: int = DEFAULT_PAGE_SIZE
) -> dict[str, Any]:
    """The response of a List call: one page of ``items`` under ``key``, and NextToken if more."""
    size = int(params.get("MaxResults") or default_size)
    page, token = paginate(items, size, params.get("NextToken"), request_fingerprint(dict(params)))
    response: dict[str, Any] = {key: page}
    if token:
        response["NextToken"] = token
    return response
