"""``JobStatusTrigger``: wait in the triggerer on one or many SageMaker jobs.

Each poll is one batched status poll (``status_poll``) made with an aiobotocore client from the
Amazon provider's connection, so 250 training jobs cost a few Search pages per poll rather than
250 Describes. There is no attempt limit: the trigger waits as long as the jobs run (the task's
own timeout bounds it). The delay between polls is ``status_poll.poll_delay`` of the time
since the wait started; it is computed from ``started_at``, which is serialized, so a triggerer
restart resumes the same schedule and loses nothing else either: everything the trigger needs
is in its kwargs.

The first poll waits until ``min_first_poll`` seconds after ``started_at`` (the moment the
task deferred), whatever ``poll_interval`` says: Airflow's defer race (apache/airflow #66374,
#67287, #72716) can fail a task whose trigger fires before the scheduler has processed the
worker's exit from its deferring run. The sensor and the operators check once before they
defer, so a job that has already ended never waits this minimum. A triggerer restart resumes
from ``started_at`` and does not wait it again.

Nothing synchronous runs on the triggerer's event loop: the client (hook, connection, session,
credentials, service model) is built in a worker thread once per run, see
:func:`async_jobs_client`. The module itself imports no AWS library (the triggerer imports a
trigger's module on its loop): the hook, botocore and aiobotocore load in that thread too.

Throttling, server errors and connection errors that outlast botocore's retries are logged and
tried again at the next poll. A Search / ListProcessingJobs denied by IAM is logged once and
replaced by one Describe per job (``status_poll``). Any other API error ends the wait with a
``poll_failed`` event: the wait failed, not the jobs, which may still be running. Status values
the job-kind table does not know are logged and waited through.

Event-driven (``event_queue_url``): the trigger subscribes to this process's shared listener
of the SQS queue (``triggers.events``), which hands it the job-end events of its jobs as hints;
each is confirmed with one Describe, since events can repeat, arrive late or be lost. One
batched poll runs at once and then every ``safety_poll_interval`` (10 minutes by default), so a
lost event delays the wait and never hangs it. The wait then learns of an end within seconds,
at a few SQS calls a minute per process whatever the number of jobs.

Events, fired once: a :class:`~airflow_sm_provider.events.JobsEvent` payload (success,
``jobs_failed`` or ``poll_failed``; see ``events``).

Killing: ``on_kill`` (Airflow 3.3+, called when a user marks the deferred task failed or
success, or clears it) stops the jobs not yet ended if ``stop_on_kill``. It is never done in
``cleanup()``, which also runs when a triggerer restarts or hands the trigger to another one.
Airflow older than 3.3 never calls ``on_kill``: a task killed while deferred leaves its jobs
running until they end or reach their ``StoppingCondition``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from airflow_sm_provider._compat import BaseTrigger, TriggerEvent, conf
from airflow_sm_provider.aws_args import AwsArgs, AwsArgsMixin
from airflow_sm_provider.errors import SageMakerApiError, is_not_stoppable, is_transient
from airflow_sm_provider.events import JOBS_FAILED, POLL_FAILED, JobsEvent
from airflow_sm_provider.job_kinds import KINDS, JobKind, JobSummary, failure_lines
from airflow_sm_provider.status_poll import (
    Call,
    JobState,
    denied_warning,
    listing_method,
    poll_delay,
    run_poll_async,
    validate_jobs,
)
from airflow_sm_provider.triggers.events import listener_for

if TYPE_CHECKING:
    from aiobotocore.client import AioBaseClient
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

Invoke = Callable[[Call], Awaitable[Mapping[str, Any]]]
#: Skip every listing: a poll of one Describe per job.
DESCRIBE_ONLY = frozenset(listing_method(kind) for kind in KINDS)
#: Where the provider's settings live in Airflow's configuration.
CONFIG_SECTION = "sagemaker_provider"
#: Default of ``[sagemaker_provider] min_first_poll_seconds``.
MIN_FIRST_POLL_SECONDS = 10.0
#: Default of ``[sagemaker_provider] event_safety_poll_seconds``.
SAFETY_POLL_SECONDS = 600.0


def default_min_first_poll() -> float:
    """``[sagemaker_provider] min_first_poll_seconds`` (env
    ``AIRFLOW__SAGEMAKER_PROVIDER__MIN_FIRST_POLL_SECONDS``), else 10.

    The shortest time between a task deferring and its trigger's first poll: long enough for
    the scheduler to process the worker's exit from the deferring run before the trigger can
    fire (Airflow's defer race; see the module docstring). 0 turns the guard off.
    """
    value = conf.getfloat(CONFIG_SECTION, "min_first_poll_seconds", fallback=MIN_FIRST_POLL_SECONDS)
    if value < 0:
        raise ValueError(f"[{CONFIG_SECTION}] min_first_poll_seconds must be >= 0, got {value}")
    return value


def default_event_queue_url() -> str:
    """``[sagemaker_provider] event_queue_url`` (env ``AIRFLOW__SAGEMAKER_PROVIDER__EVENT_QUEUE_URL``),
    else "" (no events: the wait polls).

    The SQS queue an EventBridge rule fills with SageMaker's job-end events
    (``airflow-sm events setup``); set it once to make every wait of a deployment event-driven.
    """
    return conf.get(CONFIG_SECTION, "event_queue_url", fallback="") or ""


def default_safety_poll() -> float:
    """``[sagemaker_provider] event_safety_poll_seconds``, else 600: the batched poll of an
    event-driven wait, so that a lost event delays the wait and never hangs it."""
    value = conf.getfloat(CONFIG_SECTION, "event_safety_poll_seconds", fallback=SAFETY_POLL_SECONDS)
    if value <= 0:
        raise ValueError(f"[{CONFIG_SECTION}] event_safety_poll_seconds must be > 0, got {value}")
    return value


@asynccontextmanager
async def async_aws_client(make_hook: Callable[[], AwsBaseHook]) -> AsyncIterator[AioBaseClient]:
    """An aiobotocore client of the hook ``make_hook`` builds, whose whole synchronous setup
    runs in a worker thread.

    A trigger shares the triggerer's event loop with every other deferred task, so nothing
    slow may run on it. Importing the hook, building it, reading the connection, making the
    session and resolving credentials are synchronous, and so, inside aiobotocore's ``async``
    client creation, are loading the service model (megabytes of JSON for SageMaker), building
    the client class and resolving the endpoint: 0.7-2 s on the loop for the first client of a
    process, measured. All of it runs in one thread, on a private event loop that only creates
    and opens the client. Nothing of the client is bound to that loop (aiobotocore creates its
    aiohttp session on the first request, and asyncio's locks bind to a loop on first
    contention), so the client is then used, and closed, on the caller's loop.

    One stall is left, once per process: while the first client's thread imports the Amazon
    provider and botocore, the loop still stalls (seen at 0.2-2 s on a busy 2-core machine);
    later clients leave it alone.
    """

    def open_client() -> tuple[Any, AioBaseClient]:
        hook = make_hook()
        context = hook.get_client_type(region_name=hook.region_name, deferrable=True)
        return context, asyncio.run(context.__aenter__())

    context, client = await asyncio.to_thread(open_client)
    try:
        yield client
    finally:
        await context.__aexit__(None, None, None)


def async_jobs_client(aws: AwsArgs) -> AbstractAsyncContextManager[AioBaseClient]:
    """The SageMaker client of :func:`async_aws_client` for ``aws``."""

    def make_hook() -> AwsBaseHook:
        from airflow_sm_provider.hooks.jobs import jobs_hook

        return jobs_hook(aws)

    return async_aws_client(make_hook)


class JobStatusTrigger(AwsArgsMixin, BaseTrigger):
    """Fire once all ``jobs`` have ended.

    :param jobs: ``[{"kind": "training" | "processing", "name": ...}, ...]``.
    :param aws_conn_id, region_name, verify, botocore_config: see ``aws_args.AwsArgs``.
    :param stopped_ok: count a job stopped by a user as success.
    :param poll_interval: shortest delay between polls, in seconds.
    :param max_poll_interval: longest delay between polls, in seconds.
    :param stop_on_kill: stop unfinished jobs when the deferred task is killed (Airflow 3.3+).
    :param started_at: epoch seconds the wait began (set on first construction; drives backoff).
    :param min_first_poll: seconds after ``started_at`` before the first poll; default
        ``default_min_first_poll()``, read where the trigger is first built (the worker).
    :param event_queue_url: SQS queue of SageMaker's job-end events: wait on its events (each
        confirmed with one Describe) instead of polling with backoff; default
        ``default_event_queue_url()`` (read where the trigger is first built); "" polls.
    :param safety_poll_interval: with events, seconds between batched polls (the safety net
        for lost events); default ``default_safety_poll()``.
    """

    def __init__(
        self,
        jobs: list[dict[str, str]],
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        stopped_ok: bool = False,
        poll_interval: float = 30,
        max_poll_interval: float = 300,
        stop_on_kill: bool = False,
        started_at: float | None = None,
        min_first_poll: float | None = None,
        event_queue_url: str | None = None,
        safety_poll_interval: float | None = None,
    ) -> None:
        super().__init__()
        if not jobs:
            raise ValueError("JobStatusTrigger needs at least one job")
        self.jobs = [{"kind": JobKind(job["kind"]).value, "name": job["name"]} for job in jobs]
        validate_jobs(self.refs)  # a name given as two kinds: refused here, not at the first poll
        AwsArgs(aws_conn_id, region_name, verify, botocore_config).apply(self)
        self.stopped_ok = stopped_ok
        self.poll_interval = poll_interval
        self.max_poll_interval = max(poll_interval, max_poll_interval)
        self.stop_on_kill = stop_on_kill
        self.started_at = time.time() if started_at is None else started_at
        self.min_first_poll = default_min_first_poll() if min_first_poll is None else min_first_poll
        if self.min_first_poll < 0:
            raise ValueError(f"min_first_poll must be >= 0, got {self.min_first_poll}")
        self.event_queue_url = default_event_queue_url() if event_queue_url is None else event_queue_url
        self.safety_poll_interval = (
            default_safety_poll() if safety_poll_interval is None else safety_poll_interval
        )
        if self.safety_poll_interval <= 0:
            raise ValueError(f"safety_poll_interval must be > 0, got {self.safety_poll_interval}")
        self._unfinished: set[str] | None = None  # known after the first poll of this instance
        self._denied: set[str] = set()  # listing methods IAM denies: described instead
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "jobs": self.jobs,
                **self.aws.kwargs(),
                "stopped_ok": self.stopped_ok,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "stop_on_kill": self.stop_on_kill,
                "started_at": self.started_at,
                "min_first_poll": self.min_first_poll,
                "event_queue_url": self.event_queue_url,
                "safety_poll_interval": self.safety_poll_interval,
            },
        )

    @property
    def refs(self) -> list[tuple[JobKind, str]]:
        return [(JobKind(job["kind"]), job["name"]) for job in self.jobs]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        first_poll_in = self.started_at + self.min_first_poll - time.time()
        if first_poll_in > 0:
            self.log.info(
                "First status poll in %.1f s ([%s] min_first_poll_seconds, against Airflow's defer race)",
                first_poll_in,
                CONFIG_SECTION,
            )
            await asyncio.sleep(first_poll_in)
        async with async_jobs_client(self.aws) as client:
            from botocore.exceptions import BotoCoreError, ClientError  # loaded by now: no cost

            from airflow_sm_provider.hooks.jobs import api_error

            async def invoke(call: Call) -> Mapping[str, Any]:
                try:
                    return await getattr(client, call.method)(**call.params)
                except ClientError as error:
                    raise api_error(error, error.operation_name or call.method) from error

            try:
                wait = self._wait_for_events if self.event_queue_url else self._wait_polling
                payload = await wait(invoke)
            except (SageMakerApiError, BotoCoreError) as error:  # not transient: _poll retries those
                payload = self.poll_failed_event(error)
            yield TriggerEvent(payload)

    async def _poll(
        self, invoke: Invoke, refs: list[tuple[JobKind, str]], *, describe: bool = False
    ) -> dict[str, JobState] | None:
        """One batched poll of ``refs`` (``describe``: one Describe each); None after a transient
        error (logged), any other error raised."""
        from botocore.exceptions import BotoCoreError

        skip = DESCRIBE_ONLY if describe else self._denied
        try:
            poll = await run_poll_async(refs, invoke, skip=skip)
        except (SageMakerApiError, BotoCoreError) as error:
            if not is_transient(error):
                raise
            self.log.warning("Status poll failed, trying again: %s", error)
            return None
        for method, message in poll.denied.items():
            self.log.warning(denied_warning(method, message))
        self._denied.update(poll.denied)
        return poll.states()

    async def _wait_polling(self, invoke: Invoke) -> dict[str, Any]:
        """Poll with backoff until every job has ended; the payload to fire."""
        while True:
            states = await self._poll(invoke, self.refs)
            if states is not None:
                self._unfinished = {name for name, state in states.items() if not state.confirmed}
                if not self._unfinished:
                    return self.event(states)
                self._log_progress(states)
            elapsed = time.time() - self.started_at
            await asyncio.sleep(
                poll_delay(elapsed, self.poll_interval, self.max_poll_interval, rng=self._rng)
            )

    async def _wait_for_events(self, invoke: Invoke) -> dict[str, Any]:
        """Wait on the queue's hints (see ``triggers.events``), each confirmed with one Describe,
        with a batched poll at once and then every ``safety_poll_interval``; the payload to fire."""
        names = validate_jobs(self.refs)
        listener = listener_for(str(self.event_queue_url), self.aws)
        subscription = listener.subscribe(names, max_age=2 * self.safety_poll_interval)
        ended: dict[str, JobState] = {}

        async def settle(states: Mapping[str, JobState], hinted: bool) -> None:
            for name, state in states.items():
                if state.confirmed:
                    ended[name] = state
                if state.confirmed or hinted:  # a hint not confirmed: its message goes back
                    await listener.confirm((state.kind, name.lower()), state.confirmed)

        try:
            next_poll = time.monotonic()
            while True:
                if time.monotonic() >= next_poll:
                    waiting = [(kind, name) for kind, name in self.refs if name not in ended]
                    states = await self._poll(invoke, waiting)
                    interval = self.safety_poll_interval
                    next_poll = time.monotonic() + poll_delay(0, interval, interval, rng=self._rng)
                    if states is not None:
                        await settle(states, hinted=False)
                        if len(ended) < len(self.refs):
                            self._log_progress(states)
                else:
                    try:
                        hint = await asyncio.wait_for(subscription.hints.get(), next_poll - time.monotonic())
                    except TimeoutError:
                        continue
                    hints = {hint.key: hint}
                    while not subscription.hints.empty():
                        hint = subscription.hints.get_nowait()
                        hints[hint.key] = hint
                    for key in hints:
                        if names[key] in ended:  # a duplicate: the end is known
                            await listener.confirm(key, True)
                    fresh = [(key[0], names[key]) for key in hints if names[key] not in ended]
                    if fresh:
                        self.log.info("State-change event(s) for %s: confirming", [n for _, n in fresh])
                        states = await self._poll(invoke, fresh, describe=True)
                        if states is None:
                            for key in hints:
                                await listener.confirm(key, False)
                        else:
                            await settle(states, hinted=True)
                self._unfinished = {name for _, name in self.refs if name not in ended}
                if not self._unfinished:
                    return self.event(ended)
        finally:
            await listener.unsubscribe(subscription)

    def event(self, states: Mapping[str, JobState]) -> dict[str, Any]:
        """The event payload for jobs that have all ended."""
        summaries = [
            states[name].summary or JobSummary(kind=kind.value, name=name, status=states[name].status)
            for kind, name in self.refs
        ]
        failures = failure_lines(summaries, stopped_ok=self.stopped_ok)
        if not failures:
            return JobsEvent("success", summaries, f"{len(summaries)} job(s) succeeded").to_payload()
        message = f"{len(failures)} of {len(summaries)} SageMaker job(s) did not succeed:\n" + "\n".join(
            failures
        )
        return JobsEvent("error", summaries, message, JOBS_FAILED).to_payload()

    def poll_failed_event(self, error: Exception) -> dict[str, Any]:
        """The event payload when the wait itself fails: the jobs did not fail, and may still run."""
        summaries = [JobSummary(kind=kind.value, name=name) for kind, name in self.refs]
        message = (
            f"the wait failed, not the SageMaker job(s): cannot read their status ({error}); "
            f"they were left as they were and may still be running: "
            + ", ".join(f"{kind.value} job {name}" for kind, name in self.refs)
        )
        return JobsEvent("error", summaries, message, POLL_FAILED).to_payload()

    def _log_progress(self, states: Mapping[str, JobState]) -> None:
        counts: dict[str, int] = {}
        for state in states.values():
            counts[state.outcome.value] = counts.get(state.outcome.value, 0) + 1
            if state.warning:
                self.log.warning("Job %s: %s", state.name, state.warning)
        self.log.info("Waiting on %d SageMaker job(s): %s", len(states), counts)

    async def on_kill(self) -> None:
        """Stop the jobs that have not ended, if ``stop_on_kill`` (Airflow 3.3+ calls this)."""
        if not self.stop_on_kill:
            return
        targets = [
            (kind, name) for kind, name in self.refs if self._unfinished is None or name in self._unfinished
        ]
        async with async_jobs_client(self.aws) as client:
            from botocore.exceptions import ClientError  # loaded by now: no cost

            from airflow_sm_provider.hooks.jobs import api_error

            async def stop(kind: JobKind, name: str) -> None:
                spec = KINDS[kind]
                try:
                    await getattr(client, spec.stop_method)(**{spec.name_key: name})
                    self.log.info("Stop of SageMaker %s job %s requested", kind.value, name)
                except ClientError as error:
                    failure = api_error(error, spec.stop_method)
                    ended = is_not_stoppable(failure.code, failure.message)  # already ended, or gone
                    log = self.log.info if ended else self.log.warning
                    log("SageMaker %s job %s not stopped: %s", kind.value, name, failure)

            await asyncio.gather(*(stop(kind, name) for kind, name in targets))
