"""SageMaker's job state-change events as an event-driven wait reads them from SQS.

SageMaker sends "SageMaker Training Job State Change" / "SageMaker Processing Job State
Change" events (source ``aws.sagemaker``; ``detail`` about the describe response) to
EventBridge; a rule with :func:`event_pattern` sends the ends of jobs (Completed, Failed,
Stopped) to an SQS queue that waiting triggers long-poll. AWS delivers at least once: an event
may come twice, late, out of order, or (rarely, or when a rule or queue is misconfigured) not
at all, so an event is only a hint, confirmed with one Describe, and a slow batched poll
stays as the safety net.

What one process does with a message it received, :func:`decide`, given the jobs its
triggers wait on and the jobs it has confirmed ended:

* ``HAND``: a waiting trigger here wants it; the message stays hidden while the trigger
  describes the job, and is deleted once the job is confirmed ended (else released);
* ``DELETE``: its job was confirmed ended here already (a duplicate), or the message is older
  than any wait could need (``max_age``: a trigger's safety poll has run since it was sent,
  so the poll has seen the end), or it can never be read (not a SageMaker job's end);
* ``RELEASE``: another process may wait on the job: the message becomes visible again after
  :func:`release_seconds`, short at first and growing with each receive, never zero (a zero
  timeout makes a message bounce between processes and run up its receive count, which a
  redrive policy turns into a dead letter).

Pure: no AWS or Airflow imports.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from airflow_sm_provider.job_kinds import KINDS, JobKind, classify

SOURCE = "aws.sagemaker"
DETAIL_TYPES: Mapping[JobKind, str] = {
    JobKind.TRAINING: "SageMaker Training Job State Change",
    JobKind.PROCESSING: "SageMaker Processing Job State Change",
}
#: The statuses a job ends in (both kinds): the rule sends only these.
END_STATUSES = ("Completed", "Failed", "Stopped")
#: Seconds a released message stays hidden after its first receive; doubled per receive.
RELEASE_SECONDS = 5
#: Longest a released message stays hidden.
MAX_RELEASE_SECONDS = 120
#: Seconds a received message stays hidden while a trigger here describes its job.
RECEIVE_VISIBILITY_SECONDS = 30
#: SQS long-poll wait of one ReceiveMessage (the longest SQS allows).
WAIT_TIME_SECONDS = 20

Key = tuple[JobKind, str]  # (kind, lower-case name), as status_poll keys jobs


def event_pattern() -> dict[str, Any]:
    """The EventBridge rule pattern: SageMaker training and processing jobs that ended."""
    return {
        "source": [SOURCE],
        "detail-type": list(DETAIL_TYPES.values()),
        "$or": [{"detail": {KINDS[kind].status_key: list(END_STATUSES)}} for kind in DETAIL_TYPES],
    }


@dataclass(frozen=True)
class StateChange:
    """One job's state-change event, as read from an SQS message body."""

    kind: JobKind
    name: str
    status: str | None
    secondary_status: str | None = None

    @property
    def key(self) -> Key:
        return (self.kind, self.name.lower())

    @property
    def ended(self) -> bool:
        """Whether the event says the job ended (to be confirmed: it is only a hint)."""
        return classify(self.kind, self.status, self.secondary_status)[0].terminal


def parse_message(body: str) -> StateChange | None:
    """The state change an SQS message body carries; None if it is not a SageMaker job's event."""
    try:
        event = json.loads(body)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("source") != SOURCE:
        return None
    kind = next((k for k, t in DETAIL_TYPES.items() if t == event.get("detail-type")), None)
    detail = event.get("detail")
    if kind is None or not isinstance(detail, dict):
        return None
    spec = KINDS[kind]
    name = detail.get(spec.name_key)
    if not isinstance(name, str) or not name:
        return None
    return StateChange(kind, name, detail.get(spec.status_key), detail.get("SecondaryStatus"))


class Action(StrEnum):
    """What a process does with a received message (see the module docstring)."""

    HAND = "hand"
    DELETE = "delete"
    RELEASE = "release"


def decide(
    change: StateChange | None,
    age_seconds: float,
    *,
    waited: Collection[Key],
    confirmed_ended: Collection[Key],
    max_age: float,
) -> Action:
    """The :class:`Action` for a message ``age_seconds`` old (see the module docstring)."""
    if change is None or change.key in confirmed_ended or age_seconds > max_age:
        return Action.DELETE
    if change.key in waited and change.ended:
        return Action.HAND
    return Action.RELEASE


def release_seconds(receive_count: int) -> int:
    """How long a released message hides: 5 s after its first receive, doubling, at most 120 s."""
    return min(MAX_RELEASE_SECONDS, RELEASE_SECONDS * 2 ** max(0, receive_count - 1))
