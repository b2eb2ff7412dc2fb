"""Batched job status: the calls to make for a set of jobs, and what their answers mean.

Theory of operation: one :class:`StatusPoll` is one poll of a set of jobs. It is pure: it
hands out :class:`Call` records (boto3 method name + parameters), is fed the responses, and
ends with a :class:`JobState` per job. The hook runs it with boto3 (:func:`run_poll`), the
trigger with aiobotocore (:func:`run_poll_async`); the same logic serves both.

1. Listing. Training jobs are found with ``Search`` (Resource ``TrainingJob``): names are
   packed into ``In`` filters of at most 1,024 characters (FilterValue's limit), at most 20
   filters per expression joined with ``Or``, 100 results per page. Processing jobs have no
   Search resource: ``ListProcessingJobs`` with ``NameContains`` set to the names' shared
   prefix, newest first, 100 per page. A listing stops paging once it has seen all its jobs.
2. Confirmation. Search is index-backed and lags, so a job it does not return is PENDING
   and a terminal state it shows is confirmed with one Describe (which also carries the
   FailureReason and everything the job summary needs). Describes are spent only once no job
   is still running: the poller is waiting for all of them anyway, so a job that ended early
   costs nothing until the last one ends. A job still missing then is described too, and
   one that does not exist is reported as failed.

Calls per poll are therefore ceil(pages) listing calls while jobs run, plus one Describe per
job at the end; never one Describe per job per poll.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_sm_provider.job_kinds import KINDS, JobKind, Outcome, classify, job_summary
from airflow_sm_provider.naming import name_stem

MAX_FILTER_VALUE = 1024
MAX_FILTERS = 20
MAX_RESULTS = 100
NOT_FOUND_CODES = frozenset({"ValidationException", "ResourceNotFound"})
THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown"}
)
_NOT_FOUND_WORDS = ("could not find", "not found", "does not exist")


class SageMakerApiError(Exception):
    """Raised when a SageMaker API call fails; carries the AWS error code and message."""

    def __init__(self, operation: str, code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.message = message
        self.http_status = http_status

    @property
    def transient(self) -> bool:
        """Throttling or a server-side error: worth trying again at the next poll."""
        return self.code in THROTTLING_CODES or (self.http_status or 0) >= 500


def is_not_found(code: str, message: str) -> bool:
    """Whether an error means "no such job": AWS says ValidationException "Could not find ..."
    (or "Requested resource not found") for a missing job; ResourceNotFound on other calls."""
    return code in NOT_FOUND_CODES and any(word in message.lower() for word in _NOT_FOUND_WORDS)


@dataclass(frozen=True)
class Call:
    """One API call of a poll: a boto3 method name and its parameters."""

    method: str
    params: dict[str, Any]
    stream: int = -1  # index of the listing it pages, -1 for a Describe
    job: str | None = None  # the job a Describe is for


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
    summary: dict[str, Any] | None = None


@dataclass
class _Stream:
    kind: JobKind
    method: str
    params: dict[str, Any]
    wanted: set[str]
    next_token: str | None = None
    started: bool = False
    finished: bool = False


@dataclass
class StatusPoll:
    """One batched poll of ``jobs`` (pairs of kind and name); see the module docstring."""

    jobs: Sequence[tuple[JobKind, str]]
    streams: list[_Stream] = field(init=False, default_factory=list)
    _kinds: dict[str, JobKind] = field(init=False, default_factory=dict)
    _names: dict[str, str] = field(init=False, default_factory=dict)
    _states: dict[str, JobState] = field(init=False, default_factory=dict)
    _describing: set[str] = field(init=False, default_factory=set)
    _confirming: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        for kind, name in self.jobs:
            self._kinds[name.lower()] = JobKind(kind)
            self._names[name.lower()] = name
        training = [n for k, n in self.jobs if JobKind(k) == JobKind.TRAINING]
        processing = [n for k, n in self.jobs if JobKind(k) == JobKind.PROCESSING]
        self.streams = [*_search_streams(training), *_processing_streams(processing)]

    # -------------------------------------------------------------- driving

    @property
    def done(self) -> bool:
        return self._confirming and not self._describing

    def next_calls(self) -> list[Call]:
        """The calls that can be made now (independent of each other); empty when done."""
        calls = [
            Call(s.method, {**s.params, **({"NextToken": s.next_token} if s.next_token else {})}, stream=i)
            for i, s in enumerate(self.streams)
            if not s.finished and (not s.started or s.next_token)
        ]
        if calls or self._confirming:
            return calls
        self._confirming = True
        self._describing = self._to_confirm()
        return [self._describe_call(key) for key in sorted(self._describing)]

    def feed(self, call: Call, response: Mapping[str, Any]) -> None:
        """Merge the response of ``call`` into the job states."""
        if call.stream < 0:
            self._merge_describe(call, response)
            return
        stream = self.streams[call.stream]
        stream.started = True
        if stream.kind == JobKind.TRAINING:
            records = [r.get("TrainingJob") or {} for r in response.get("Results") or []]
        else:
            records = list(response.get("ProcessingJobSummaries") or [])
        spec = KINDS[stream.kind]
        for record in records:
            key = str(record.get(spec.name_key) or "").lower()
            if key in stream.wanted:
                self._states[key] = self._observed(stream.kind, self._names[key], record)
        stream.next_token = response.get("NextToken")
        seen = stream.wanted.issubset(self._states)
        stream.finished = not stream.next_token or seen

    def feed_error(self, call: Call, code: str, message: str) -> bool:
        """Record a failed Describe of a missing job; False means the caller must raise."""
        if call.stream >= 0 or not call.job or not is_not_found(code, message):
            return False
        key = call.job.lower()
        self._states[key] = JobState(
            kind=self._kinds[key],
            name=call.job,
            outcome=Outcome.FAILED,
            failure_reason=f"job not found ({code}: {message})",
            confirmed=True,
            summary={
                "kind": self._kinds[key].value,
                "name": call.job,
                "status": None,
                "failure_reason": f"job not found ({code}: {message})",
            },
        )
        self._describing.discard(key)
        return True

    def states(self) -> dict[str, JobState]:
        """Every job's state, keyed by the name it was asked for; unseen jobs are PENDING."""
        return {
            name: self._states.get(key) or JobState(kind=self._kinds[key], name=name, outcome=Outcome.PENDING)
            for key, name in self._names.items()
        }

    # -------------------------------------------------------------- internals

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

    def _to_confirm(self) -> set[str]:
        states = self.states()
        if any(s.outcome == Outcome.RUNNING for s in states.values()):
            return set()
        return {name.lower() for name, s in states.items() if not s.confirmed}

    def _describe_call(self, key: str) -> Call:
        spec = KINDS[self._kinds[key]]
        name = self._names[key]
        return Call(spec.describe_method, {spec.name_key: name}, job=name)

    def _merge_describe(self, call: Call, response: Mapping[str, Any]) -> None:
        key = str(call.job).lower()
        kind = self._kinds[key]
        state = self._observed(kind, self._names[key], response)
        terminal = state.outcome.terminal
        self._states[key] = JobState(
            **{**state.__dict__, "confirmed": terminal, "summary": job_summary(kind, response)}
        )
        self._describing.discard(key)


def _search_streams(names: Sequence[str]) -> list[_Stream]:
    """Search requests covering ``names``: In filters <= 1,024 chars, <= 20 filters each."""
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
            {"Name": "TrainingJobName", "Operator": "Equals" if len(v) == 1 else "In", "Value": ",".join(v)}
            for v in group
        ]
        streams.append(
            _Stream(
                kind=JobKind.TRAINING,
                method="search",
                params={
                    "Resource": "TrainingJob",
                    "SearchExpression": {"Filters": filters, "Operator": "Or"},
                    "MaxResults": MAX_RESULTS,
                },
                wanted={n.lower() for v in group for n in v},
            )
        )
    return streams


def _processing_streams(names: Sequence[str]) -> list[_Stream]:
    """One ListProcessingJobs listing per shared name prefix, newest jobs first."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name_stem(name).lower(), []).append(name)
    return [
        _Stream(
            kind=JobKind.PROCESSING,
            method="list_processing_jobs",
            params={
                **({"NameContains": prefix} if (prefix := _common_prefix(group)[:63]) else {}),
                "SortBy": "CreationTime",
                "SortOrder": "Descending",
                "MaxResults": MAX_RESULTS,
            },
            wanted={n.lower() for n in group},
        )
        for group in groups.values()
    ]


def _common_prefix(names: Sequence[str]) -> str:
    first, last = min(names), max(names)
    size = next(
        (i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), min(len(first), len(last))
    )
    return first[:size]


def run_poll(jobs: Iterable[tuple[JobKind, str]], invoke: Callable[[Call], Mapping[str, Any]]) -> StatusPoll:
    """Drive one poll synchronously; ``invoke`` makes a call, raising ``SageMakerApiError``."""
    poll = StatusPoll(list(jobs))
    while calls := poll.next_calls():
        for call in calls:
            _settle(poll, call, _attempt(invoke, call))
    return poll


async def run_poll_async(
    jobs: Iterable[tuple[JobKind, str]], invoke: Callable[[Call], Awaitable[Mapping[str, Any]]]
) -> StatusPoll:
    """Drive one poll with each round of independent calls made concurrently."""
    import asyncio

    async def attempt(call: Call) -> Mapping[str, Any] | SageMakerApiError:
        try:
            return await invoke(call)
        except SageMakerApiError as error:
            return error

    poll = StatusPoll(list(jobs))
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
