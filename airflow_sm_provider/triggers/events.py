"""Event-driven waits: one SQS long-poll loop per queue per process, shared by its triggers.

Theory of operation. An EventBridge rule sends SageMaker's job-end events to an SQS queue
(``airflow-sm events setup`` prints or creates it; ``state_changes.event_pattern``). A
triggerer process runs many triggers on one event loop, and reading an SQS message hides it
from every other reader: if each trigger polled the queue, one would take (and hide) the
events of another's jobs. So each process runs one :class:`QueueListener` per queue and AWS
connection (the registry key is the queue URL with the AWS arguments), started by the first
trigger that subscribes and stopped after the last one leaves. It long-polls (20 s, up to 10
messages a call) and sorts each message with ``state_changes.decide``:

* the end of a job a trigger here waits on is handed to that trigger as a hint, and the
  message stays hidden while the trigger confirms the job's state with one Describe; the
  trigger then calls :meth:`QueueListener.confirm`: the message is deleted if the job ended,
  released otherwise;
* a duplicate of an end confirmed here, a message older than any wait could need (``max_age``,
  twice the slowest safety poll of the triggers here: every trigger that waited on the job has
  polled since, and one that starts later polls first) or one that names no SageMaker job is
  deleted;
* any other message is released for the other triggerer processes (ChangeMessageVisibility
  to a short timeout that grows with its receive count, never zero).

So every trigger sees the events of its own jobs whichever process holds it (a message passes
between processes, hidden a few seconds more each time, until the one that waits reads it), no
message cycles for ever, and no message is deleted before the job it names is confirmed ended,
unless it names none or is older than any wait needs. Two triggers in two processes waiting on
one job: the first to confirm deletes the message, the other learns of the end at its safety
poll, a delay and never a hang. The same holds when an event is lost.

Nothing blocks the event loop: the aiobotocore SQS client is built in a worker thread
(``triggers.jobs.async_aws_client``). A failed receive is logged and retried after a pause; a
failed delete or release is logged (the message comes back after its visibility timeout).
:attr:`QueueListener.calls` counts the SQS calls by method (benchmarks, tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_sm_provider.aws_args import AwsArgs
from airflow_sm_provider.state_changes import (
    RECEIVE_VISIBILITY_SECONDS,
    RELEASE_SECONDS,
    WAIT_TIME_SECONDS,
    Action,
    Key,
    StateChange,
    decide,
    parse_message,
    release_seconds,
)

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

log = logging.getLogger(__name__)

#: Seconds to wait after a failed ReceiveMessage, doubled per failure in a row, at most 60.
RETRY_SECONDS = 2.0
_BATCH = 10  # entries per SQS batch call


@dataclass(eq=False)
class Subscription:
    """What one trigger waits on; the listener puts the hints for its jobs in ``hints``."""

    keys: frozenset[Key]
    hints: asyncio.Queue[StateChange] = field(default_factory=asyncio.Queue)


class QueueListener:
    """The shared long-poll loop of one queue in this process (see the module docstring)."""

    def __init__(self, queue_url: str, aws: AwsArgs) -> None:
        self.queue_url = queue_url
        self.aws = aws
        #: SQS calls made, by method name.
        self.calls: Counter[str] = Counter()
        self.loop = asyncio.get_running_loop()
        self._subs: set[Subscription] = set()
        self._held: dict[Key, list[str]] = {}  # receipt handles of messages handed out
        self._ended: dict[Key, float] = {}  # jobs confirmed ended here -> when (time.time())
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self._max_age = 0.0  # the longest max_age of any trigger that subscribed

    @property
    def waited(self) -> set[Key]:
        return {key for sub in self._subs for key in sub.keys}

    def subscribe(self, keys: Iterable[Key], max_age: float) -> Subscription:
        """Start receiving the hints for ``keys``; starts the loop if it is not running."""
        sub = Subscription(frozenset(keys))
        self._subs.add(sub)
        self._max_age = max(self._max_age, max_age)
        if self._task is None:
            _LISTENERS.setdefault(_registry_key(self.queue_url, self.aws), self)
            self._task = self.loop.create_task(self._run(), name=f"sqs-listener {self.queue_url}")
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        """Stop receiving; messages held for jobs nobody here waits on any more are released."""
        self._subs.discard(sub)
        waited = self.waited
        handles = [h for key in sub.keys - waited for h in self._held.pop(key, [])]
        await self._release({h: RELEASE_SECONDS for h in handles})

    async def confirm(self, key: Key, ended: bool) -> None:
        """A trigger described ``key``'s job: delete its held messages if it ended, else release."""
        handles = self._held.pop(key, [])
        if ended:
            self._ended[key] = time.time()
            await self._delete(handles)
        else:
            await self._release({h: RELEASE_SECONDS for h in handles})

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        from airflow_sm_provider.triggers.jobs import async_aws_client

        aws = self.aws

        def make_hook() -> AwsBaseHook:
            from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

            return AwsBaseHook(client_type="sqs", **aws.hook_kwargs())

        failures = 0
        try:
            async with async_aws_client(make_hook) as client:
                self._client = client
                while self._subs:
                    try:
                        response = await self._call(
                            "receive_message",
                            QueueUrl=self.queue_url,
                            MaxNumberOfMessages=_BATCH,
                            WaitTimeSeconds=WAIT_TIME_SECONDS,
                            VisibilityTimeout=RECEIVE_VISIBILITY_SECONDS,
                            MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
                        )
                    except Exception as error:  # logged and retried: the safety polls go on meanwhile
                        failures += 1
                        pause = min(60.0, RETRY_SECONDS * 2 ** (failures - 1))
                        log.warning(
                            "Receiving from %s failed, again in %.0f s: %s", self.queue_url, pause, error
                        )
                        await asyncio.sleep(pause)
                        continue
                    failures = 0
                    await self._sort(response.get("Messages") or [])
                handles = [h for held in self._held.values() for h in held]
                self._held.clear()
                await self._release({h: RELEASE_SECONDS for h in handles})
        except Exception:  # e.g. no client: the waits go on with their safety polls alone
            log.exception("The listener of %s stopped; waits fall back to their safety polls", self.queue_url)
            failures = -1  # not started again until a trigger subscribes
        finally:
            self._client, self._task = None, None
            current = asyncio.current_task()
            again = self._subs and failures >= 0 and not (current and current.cancelling())
            if again:  # a trigger subscribed while the loop was closing
                self._task = self.loop.create_task(self._run(), name=f"sqs-listener {self.queue_url}")
            elif _LISTENERS.get(_registry_key(self.queue_url, self.aws)) is self:
                del _LISTENERS[_registry_key(self.queue_url, self.aws)]

    async def _sort(self, messages: list[Mapping[str, Any]]) -> None:
        now, max_age = time.time(), self._max_age
        self._ended = {key: at for key, at in self._ended.items() if now - at <= max_age}
        waited = self.waited
        deletes: list[str] = []
        releases: dict[str, int] = {}
        for message in messages:
            attributes = message.get("Attributes") or {}
            sent = int(attributes.get("SentTimestamp") or now * 1000) / 1000
            change = parse_message(message.get("Body") or "")
            action = decide(change, now - sent, waited=waited, confirmed_ended=self._ended, max_age=max_age)
            handle = message["ReceiptHandle"]
            if action is Action.HAND and change is not None:
                self._held.setdefault(change.key, []).append(handle)
                for sub in self._subs:
                    if change.key in sub.keys:
                        sub.hints.put_nowait(change)
            elif action is Action.DELETE:
                deletes.append(handle)
            else:
                releases[handle] = release_seconds(int(attributes.get("ApproximateReceiveCount") or 1))
        await self._delete(deletes)
        await self._release(releases)

    async def _delete(self, handles: list[str]) -> None:
        for start in range(0, len(handles), _BATCH):
            entries = [
                {"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles[start : start + _BATCH])
            ]
            await self._batch("delete_message_batch", entries)

    async def _release(self, timeouts: Mapping[str, int]) -> None:
        items = list(timeouts.items())
        for start in range(0, len(items), _BATCH):
            entries = [
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": seconds}
                for i, (h, seconds) in enumerate(items[start : start + _BATCH])
            ]
            await self._batch("change_message_visibility_batch", entries)

    async def _batch(self, method: str, entries: list[dict[str, Any]]) -> None:
        if not entries or self._client is None:
            return  # no client: the loop has closed; the messages come back when their timeout ends
        try:
            response = await self._call(method, QueueUrl=self.queue_url, Entries=entries)
        except Exception as error:
            log.warning("%s on %s failed (the messages come back later): %s", method, self.queue_url, error)
            return
        for failed in response.get("Failed") or []:
            log.warning("%s on %s: %s", method, self.queue_url, failed.get("Message") or failed)

    async def _call(self, method: str, **params: Any) -> Mapping[str, Any]:
        self.calls[method] += 1
        return await getattr(self._client, method)(**params)


_LISTENERS: dict[tuple[str, str], QueueListener] = {}


def _registry_key(queue_url: str, aws: AwsArgs) -> tuple[str, str]:
    return queue_url, json.dumps(aws.kwargs(), sort_keys=True, default=str)


def listener_for(queue_url: str, aws: AwsArgs) -> QueueListener:
    """This process's listener of ``queue_url`` for ``aws``, on the running event loop."""
    key = _registry_key(queue_url, aws)
    listener = _LISTENERS.get(key)
    if listener is None or listener.loop is not asyncio.get_running_loop():
        listener = _LISTENERS[key] = QueueListener(queue_url, aws)
    return listener
