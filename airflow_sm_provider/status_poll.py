"""Batched job status: the calls to make for a set of jobs, and what their answers mean.

Theory of operation: one :class:`StatusPoll` is one poll of a set of jobs. It is pure: it
hands out :class:`Call` records (boto3 method name + parameters), is fed the responses, and
ends with a :class:`JobState` per job. The hook runs it with boto3 (:func:`run_poll`), the
trigger with aiobotocore (:func:`run_poll_async`); the same logic serves both. Every API name
comes from the job-kind table (``KINDS``).

1. Listing. Kinds with a Search resource (training) are found with ``Search``: names are
   packed into ``In`` filters of at most 1,024 characters (FilterValue's limit), at most 20
   filters per expression joined with ``Or``, 100 results per page. Kinds without one
   (processing) are listed (``ListProcessingJobs``) per group of names sharing a lower-case
   stem, with ``NameContains`` set to the group's lower-cased common prefix, newest first,
   100 per page. A listing stops paging once it has seen all its jobs, and a plain listing
   (which may page through unrelated jobs) after ``MAX_LIST_PAGES`` pages: its jobs not seen
   by then are described instead.
2. Denied listings. IAM policies written for the Amazon provider often grant Describe but not
   ``sagemaker:Search`` / ``ListProcessingJobs``. A listing refused with an access-denied code
   is not an error: its jobs are described one by one, and :attr:`StatusPoll.denied` tells the
   caller, which passes the method in ``skip`` to later polls so it is not tried again.
3. Confirmation. Search is index-backed and lags, so a job it does not return is PENDING
   and a terminal state it shows is confirmed with one Describe (which also carries the
   FailureReason and everything the job summary needs). Describes are spent only once no job
   is still running: the poller is waiting for all of them anyway, so a job that ended early
   costs nothing until the last one ends. A job still missing then is described too, and
   one that does not exist is reported as failed.

Calls per poll are therefore ceil(pages) listing calls while jobs run, plus one Describe per
job at the end; one Describe per job per poll only where listing is denied.

Jobs are keyed by (kind, lower-case name) inside; :meth:`StatusPoll.states` returns them by
the names asked for, so one poll refuses a name given as two kinds (``ValueError``).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_sm_provider.errors import SageMakerApiError, is_access_denied, is_not_found
from airflow_sm_provider.job_kinds import KINDS, JobKind, JobSummary, Outcome, classify, job_summary
from airflow_sm_provider.naming import name_stem

MAX_FILTER_VALUE = 1024
MAX_FILTERS = 20
MAX_RESULTS = 100
#: Pages of a plain listing per poll; jobs not seen by then are described.
MAX_LIST_PAGES = 5
MAX_NAME_CONTAINS = 63
#: Default +-fraction of jitter on poll delays.
JITTER = 0.2

Key = tuple[JobKind, str]  # (kind, lower-case name)


def poll_delay(
    elapsed: float,
    poll_interval: float,
    max_poll_interval: float,
    *,
    jitter: float = JITTER,
    rng: random.Random | None = None,
) -> float:
    """Seconds to the next poll, ``elapsed`` seconds into a wait (or since its last change).

    A tenth of ``elapsed``, kept between ``poll_interval`` and ``max_poll_interval``, times a
    random factor in ``1 +- jitter`` (never above ``max_poll_interval``). There is no limit on
    the number of polls. ``jitter=0`` makes it deterministic; ``rng`` defaults to ``random``.
    """
    ceiling = max(poll_interval, max_poll_interval)
    base = min(ceiling, max(poll_interval, elapsed / 10))
    if jitter:
        base *= (rng or random).uniform(1 - jitter, 1 + jitter)
    return min(ceiling, base)


def listing_method(kind: JobKind) -> str:
    """The method a poll lists ``kind``'s jobs with: Search where the kind has a resource."""
    spec = KINDS[kind]
    return spec.list_method if spec.search_resource is None else "search"


def validate_jobs(jobs: Iterable[tuple[JobKind, str]]) -> dict[Key, str]:
    """The jobs by (kind, lower-case name), first spelling kept; ValueError on a name of two kinds."""
    names: dict[Key, str] = {}
    kinds: dict[str, JobKind] = {}
    for kind, name in jobs:
        kind, lower = JobKind(kind), name.lower()
        other = kinds.setdefault(lower, kind)
        if other != kind:
            raise ValueError(
                f"job name {name!r} is given as a {other.value} and a {kind.value} job: "
                "names must be unique in one status poll"
            )
        names.setdefault((kind, lower), name)
    return names


@dataclass(frozen=True)
class Call:
    """One API call of a poll: a boto3 method name and its parameters."""

    method: str
    params: dict[str, Any]
    stream: int = -1  # index of the listing it pages, -1 for a Describe
    job: str | None = None  # the job a Describe is for
    kind: JobKind | None = None  # its kind


@dataclass(frozen=True)
class JobState:
    """A job's state after one poll.

    ``confirmed`` is True once a Describe backs the state; ``summary`` is then the job's
    XCom summary. ``warning`` names a status value the job-kind table does not know.
    """

    kind: JobKind
    name: str
    outcome: Outcome
    status: str | None = None
    secondary_status: str | None = None
    failure_reason: str | None = None
    warning: str | None = None
    confirmed: bool = False
    summary: JobSummary | None = None


@dataclass
class _Stream:
    kind: JobKind
    method: str
    params: dict[str, Any]
    wanted: set[Key]
    max_pages: int | None = None  # None: pages only ever hold wanted jobs (Search)
    pages: int = 0
    next_token: str | None = None
    started: bool = False
    finished: bool = False


@dataclass
class StatusPoll:
    """One batched poll of ``jobs`` (pairs of kind and name); see the module docstring.

    :param skip: listing methods not to call (denied in an earlier poll): their jobs are described.
    """

    jobs: Sequence[tuple[JobKind, str]]
    skip: frozenset[str] = frozenset()
    #: Listing methods refused as access denied in this poll, with the service's message.
    denied: dict[str, str] = field(init=False, default_factory=dict)
    streams: list[_Stream] = field(init=False, default_factory=list)
    _names: dict[Key, str] = field(init=False, default_factory=dict)
    _states: dict[Key, JobState] = field(init=False, default_factory=dict)
    _direct: set[Key] = field(init=False, default_factory=set)  # described, not listed
    _describing: set[Key] = field(init=False, default_factory=set)
    _phase: str = field(init=False, default="listing")  # listing -> direct -> confirm

    def __post_init__(self) -> None:
        self._names = validate_jobs(self.jobs)
        for kind, spec in KINDS.items():
            keys = [key for key in self._names if key[0] == kind]
            if not keys:
                continue
            if listing_method(kind) in self.skip:
                self._direct.update(keys)
            elif spec.search_resource is not None:
                self.streams += _search_streams(kind, [self._names[k] for k in keys])
            else:
                streams, unlisted = _list_streams(kind, [self._names[k] for k in keys])
                self.streams += streams
                self._direct.update((kind, name.lower()) for name in unlisted)

    # -------------------------------------------------------------- driving

    @property
    def done(self) -> bool:
        return self._phase == "confirm" and not self._describing

    def next_calls(self) -> list[Call]:
        """The calls that can be made now (independent of each other); empty when done."""
        if self._phase == "listing":
            calls = [
                Call(s.method, _page_params(s), stream=i)
                for i, s in enumerate(self.streams)
                if not s.finished and (not s.started or s.next_token)
            ]
            if calls:
                return calls
            self._phase, self._describing = "direct", set(self._direct)
            if self._describing:
                return self._describe_calls()
        if self._phase == "direct":
            self._phase, self._describing = "confirm", self._to_confirm()
            return self._describe_calls()
        return []

    def feed(self, call: Call, response: Mapping[str, Any]) -> None:
        """Merge the response of ``call`` into the job states."""
        if call.stream < 0:
            self._merge_describe(call, response)
            return
        stream = self.streams[call.stream]
        spec = KINDS[stream.kind]
        stream.started = True
        stream.pages += 1
        if spec.search_resource is not None:
            records = [r.get(spec.search_resource) or {} for r in response.get("Results") or []]
        else:
            records = list(response.get(spec.list_key) or [])
        for record in records:
            key = (stream.kind, str(record.get(spec.name_key) or "").lower())
            if key in stream.wanted:
                self._states[key] = self._observed(stream.kind, self._names[key], record)
        stream.next_token = response.get("NextToken")
        unseen = stream.wanted - self._states.keys()
        capped = stream.max_pages is not None and stream.pages >= stream.max_pages
        stream.finished = not stream.next_token or not unseen or capped
        if stream.finished and stream.max_pages is not None:
            self._direct |= unseen  # a listing may miss nothing it cannot later describe

    def feed_error(self, call: Call, code: str, message: str) -> bool:
        """Record a denied listing or a failed Describe of a missing job; False: the caller raises."""
        if call.stream >= 0:
            if not is_access_denied(code):
                return False
            stream = self.streams[call.stream]
            stream.finished = True
            self.denied[stream.method] = f"{code}: {message}"
            self._direct |= stream.wanted
            return True
        if not call.job or call.kind is None or not is_not_found(code, message):
            return False
        key = (call.kind, call.job.lower())
        reason = f"job not found ({code}: {message})"
        self._states[key] = JobState(
            kind=call.kind,
            name=call.job,
            outcome=Outcome.FAILED,
            failure_reason=reason,
            confirmed=True,
            summary=JobSummary(kind=call.kind.value, name=call.job, status=None, failure_reason=reason),
        )
        self._describing.discard(key)
        return True

    def states(self) -> dict[str, JobState]:
        """Every job's state, keyed by the name it was asked for; unseen jobs are PENDING."""
        return {name: self._state((JobKind(kind), name.lower()), name) for kind, name in self.jobs}

    # -------------------------------------------------------------- internals

    def _state(self, key: Key, name: str) -> JobState:
        state = self._states.get(key)
        if state is None:
            return JobState(kind=key[0], name=name, outcome=Outcome.PENDING)
        return state if state.name == name else JobState(**{**state.__dict__, "name": name})

    def _observed(self, kind: JobKind, name: str, record: Mapping[str, Any]) -> JobState:
        status = record.get(KINDS[kind].status_key)
        secondary = record.get("SecondaryStatus")
        result, warning = classify(kind, status, secondary)
        return JobState(
            kind=kind,
            name=name,
            outcome=result,
            status=status,
            secondary_status=secondary,
            failure_reason=record.get("FailureReason"),
            warning=warning,
        )

    def _to_confirm(self) -> set[Key]:
        states = {key: self._state(key, name) for key, name in self._names.items()}
        if any(s.outcome == Outcome.RUNNING for s in states.values()):
            return set()
        return {key for key, s in states.items() if not s.confirmed}

    def _describe_calls(self) -> list[Call]:
        calls = []
        for key in sorted(self._describing):
            spec, name = KINDS[key[0]], self._names[key]
            calls.append(Call(spec.describe_method, {spec.name_key: name}, job=name, kind=key[0]))
        return calls

    def _merge_describe(self, call: Call, response: Mapping[str, Any]) -> None:
        kind = JobKind(call.kind)
        key = (kind, str(call.job).lower())
        state = self._observed(kind, self._names[key], response)
        self._states[key] = JobState(
            **{**state.__dict__, "confirmed": state.outcome.terminal, "summary": job_summary(kind, response)}
        )
        self._describing.discard(key)


def denied_warning(method: str, message: str) -> str:
    """What to log once when a listing is denied: the poll goes on with a Describe per job."""
    action = "Search" if method == "search" else "".join(p.title() for p in method.split("_"))
    return (
        f"sagemaker:{action} is denied ({message}); polling with one Describe per job instead. "
        f"Grant sagemaker:{action} for batched status calls."
    )


def _page_params(stream: _Stream) -> dict[str, Any]:
    return {**stream.params, "NextToken": stream.next_token} if stream.next_token else stream.params


def _search_streams(kind: JobKind, names: Sequence[str]) -> list[_Stream]:
    """Search requests covering ``names``: In filters <= 1,024 chars, <= 20 filters each."""
    spec = KINDS[kind]
    values: list[list[str]] = []
    for name in names:
        if values and len(",".join([*values[-1], name])) <= MAX_FILTER_VALUE:
            values[-1].append(name)
        else:
            values.append([name])
    streams = []
    for start in range(0, len(values), MAX_FILTERS):
        group = values[start : start + MAX_FILTERS]
        filters = [
            {"Name": spec.name_key, "Operator": "Equals" if len(v) == 1 else "In", "Value": ",".join(v)}
            for v in group
        ]
        streams.append(
            _Stream(
                kind=kind,
                method="search",
                params={
                    "Resource": spec.search_resource,
                    "SearchExpression": {"Filters": filters, "Operator": "Or"},
                    "MaxResults": MAX_RESULTS,
                },
                wanted={(kind, n.lower()) for v in group for n in v},
            )
        )
    return streams


def _list_streams(kind: JobKind, names: Sequence[str]) -> tuple[list[_Stream], list[str]]:
    """One listing per lower-case name stem, newest jobs first; and the names no prefix covers."""
    spec = KINDS[kind]
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name_stem(name).lower(), []).append(name.lower())
    streams, unlisted = [], []
    for group in groups.values():
        prefix = _common_prefix(group)[:MAX_NAME_CONTAINS]
        if not prefix:  # would list the whole account
            unlisted += group
            continue
        streams.append(
            _Stream(
                kind=kind,
                method=spec.list_method,
                params={
                    "NameContains": prefix,
                    "SortBy": "CreationTime",
                    "SortOrder": "Descending",
                    "MaxResults": MAX_RESULTS,
                },
                wanted={(kind, n) for n in group},
                max_pages=MAX_LIST_PAGES,
            )
        )
    return streams, unlisted


def _common_prefix(names: Sequence[str]) -> str:
    first, last = min(names), max(names)
    size = next(
        (i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), min(len(first), len(last))
    )
    return first[:size]


def run_poll(
    jobs: Iterable[tuple[JobKind, str]],
    invoke: Callable[[Call], Mapping[str, Any]],
    *,
    skip: Iterable[str] = (),
) -> StatusPoll:
    """Drive one poll synchronously; ``invoke`` makes a call, raising ``SageMakerApiError``.

    :param skip: listing methods denied before (``StatusPoll.denied`` of an earlier poll).
    """
    poll = StatusPoll(list(jobs), frozenset(skip))
    while calls := poll.next_calls():
        for call in calls:
            _settle(poll, call, _attempt(invoke, call))
    return poll


async def run_poll_async(
    jobs: Iterable[tuple[JobKind, str]],
    invoke: Callable[[Call], Awaitable[Mapping[str, Any]]],
    *,
    skip: Iterable[str] = (),
) -> StatusPoll:
    """Drive one poll with each round of independent calls made concurrently (``skip``: as ``run_poll``)."""
    import asyncio

    async def attempt(call: Call) -> Mapping[str, Any] | SageMakerApiError:
        try:
            return await invoke(call)
        except SageMakerApiError as error:
            return error

    poll = StatusPoll(list(jobs), frozenset(skip))
    while calls := poll.next_calls():
        results = await asyncio.gather(*(attempt(call) for call in calls))
        for call, result in zip(calls, results, strict=True):
            _settle(poll, call, result)
    return poll


def _attempt(
    invoke: Callable[[Call], Mapping[str, Any]], call: Call
) -> Mapping[str, Any] | SageMakerApiError:
    try:
        return invoke(call)
    except SageMakerApiError as error:
        return error


def _settle(poll: StatusPoll, call: Call, result: Mapping[str, Any] | SageMakerApiError) -> None:
    if isinstance(result, SageMakerApiError):
        if not poll.feed_error(call, result.code, result.message):
            raise result
        return
    poll.feed(call, result)
