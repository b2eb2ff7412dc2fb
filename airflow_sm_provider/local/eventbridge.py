"""SageMaker job state-change events, published by the local engine into its EventBridge.

SageMaker sends an event to the account's default event bus on every status change of a job:
detail-type "SageMaker Training Job State Change" or "SageMaker Processing Job State Change",
source ``aws.sagemaker``, one resource (the job's ARN), and a ``detail`` that is about the
job's describe response with its times in epoch milliseconds (and ``Tags`` as a map). AWS
delivers at least once: an event may come twice, late, or out of order.

The engine does the same in process: :meth:`EventPublisher.changed` hands each event to the
embedded moto's EventBridge backend, whose rules send it on to their targets (an SQS queue,
for event-driven waits). Clients cannot publish these themselves: AWS refuses ``PutEvents``
with an ``aws.*`` source, so only the engine does, as only SageMaker does.

For tests of the receivers, ``drop_fraction`` of the events are not sent and
``duplicate_fraction`` are sent twice; both may be changed while the engine runs.
A failure to publish is logged and never touches the job.
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any

from airflow_sm_provider.local.context import EngineContext
from airflow_sm_provider.local.job_records import (
    KINDS,
    PROCESSING,
    TRAINING,
    to_describe_processing,
    to_describe_training,
)
from airflow_sm_provider.local.store import Record

log = logging.getLogger(__name__)

SOURCE = "aws.sagemaker"
DETAIL_TYPES = {
    TRAINING: "SageMaker Training Job State Change",
    PROCESSING: "SageMaker Processing Job State Change",
}
_DESCRIBE = {TRAINING: to_describe_training, PROCESSING: to_describe_processing}


def _millis(value: Any, key: str = "") -> Any:
    """``value`` with every number under a key ending in "Time" turned into epoch milliseconds."""
    if isinstance(value, dict):
        return {k: _millis(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_millis(v, key) for v in value]
    if key.endswith("Time") and isinstance(value, int | float) and not isinstance(value, bool):
        return round(value * 1000)
    return value


def event_detail(kind: str, record: Record) -> dict[str, Any]:
    """The event's ``detail`` for a job record: its describe response, times in ms, Tags a map."""
    detail = _millis(_DESCRIBE[kind](record))
    detail["Tags"] = {tag["Key"]: tag["Value"] for tag in record.get("Tags") or []}
    return detail


def state_key(kind: str, record: Record | None) -> tuple[Any, ...]:
    """What a status change changes: the status, and for training jobs the secondary status."""
    if record is None:
        return ()
    return (record.get(KINDS[kind].status_key), record.get("SecondaryStatus"))


class EventPublisher:
    """Sends a state-change event per status change into the engine's moto EventBridge.

    :param drop_fraction: share of events not sent (0..1), to test that a lost event only delays.
    :param duplicate_fraction: share of events sent twice (0..1).
    :param seed: for a reproducible choice of dropped and duplicated events.
    """

    def __init__(
        self,
        ctx: EngineContext,
        *,
        drop_fraction: float = 0.0,
        duplicate_fraction: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.ctx = ctx
        self.drop_fraction = drop_fraction
        self.duplicate_fraction = duplicate_fraction
        self._rng = random.Random(seed)  # noqa: S311 - test faults, not cryptography
        #: Events handed to EventBridge, and events dropped on purpose.
        self.sent = 0
        self.dropped = 0

    def changed(self, kind: str, before: Record | None, after: Record) -> None:
        """Publish ``after``'s event if its status (or secondary status) differs from ``before``'s."""
        if kind not in DETAIL_TYPES or state_key(kind, before) == state_key(kind, after):
            return
        if self._rng.random() < self.drop_fraction:
            self.dropped += 1
            return
        copies = 2 if self._rng.random() < self.duplicate_fraction else 1
        try:
            self._put(kind, after, copies)
        except Exception:  # an event lost, as AWS may lose one; never the job's failure
            log.exception("publishing the state-change event of %s failed", after.get(KINDS[kind].name_key))

    def _put(self, kind: str, record: Record, copies: int) -> None:
        from moto.events.models import events_backends

        entry = {
            "Source": SOURCE,
            "DetailType": DETAIL_TYPES[kind],
            "Detail": json.dumps(event_detail(kind, record)),
            "Resources": [record[KINDS[kind].arn_key]],
            "Time": record.get("LastModifiedTime") or self.ctx.now(),
        }
        backend = events_backends[self.ctx.account_id][self.ctx.region]
        for _ in range(copies):
            backend.put_events([entry])
            self.sent += 1
