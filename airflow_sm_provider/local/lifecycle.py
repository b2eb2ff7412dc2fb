"""Job state machines of the local engine.

Theory of operation: a training job's state is the pair (TrainingJobStatus, SecondaryStatus),
a processing job's state is its ProcessingJobStatus; both vocabularies are botocore's service
model enums. Everything that happens to a job is an :class:`Event`. ``TRAINING[state][event]``
and ``PROCESSING[state][event]`` give the next state; a missing key is an illegal move, which
raises :class:`IllegalTransition` and changes nothing. :func:`advance_training` and
:func:`advance_processing` apply an event to a job record (a plain dict) and return a new
record with the bookkeeping SageMaker reports (``SecondaryStatusTransitions``, start and end
times, ``LastModifiedTime``). No I/O here: the runner and the API drive it with events.
"""

from __future__ import annotations

import copy
from enum import StrEnum
from typing import Any

Record = dict[str, Any]


class TrainingJobStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    DELETING = "Deleting"


class SecondaryStatus(StrEnum):
    STARTING = "Starting"
    PENDING = "Pending"
    DOWNLOADING = "Downloading"
    TRAINING = "Training"
    UPLOADING = "Uploading"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    MAX_RUNTIME_EXCEEDED = "MaxRuntimeExceeded"
    MAX_WAIT_TIME_EXCEEDED = "MaxWaitTimeExceeded"
    COMPLETED = "Completed"
    FAILED = "Failed"
    INTERRUPTED = "Interrupted"
    RESTARTING = "Restarting"


class ProcessingJobStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


class Event(StrEnum):
    """Something that happened to a job."""

    QUEUE = "queue"  # no free job slot: wait
    DOWNLOAD = "download"  # a slot is free: inputs are being fetched
    TRAIN = "train"  # the entry point runs
    UPLOAD = "upload"  # the entry point exited 0: artifacts go to S3
    COMPLETE = "complete"
    FAIL = "fail"
    STOP = "stop"  # StopTrainingJob / StopProcessingJob
    STOPPED = "stopped"  # the stop has taken effect
    MAX_RUNTIME = "max_runtime"
    MAX_WAIT = "max_wait"
    INTERRUPT = "interrupt"  # (simulated) spot interruption
    RESTART = "restart"  # an interrupted spot job starts over from its checkpoints


class IllegalTransition(Exception):
    """Raised when an event is not allowed in a job's current state."""


IP, ST = TrainingJobStatus, SecondaryStatus
TrainingState = tuple[TrainingJobStatus, SecondaryStatus]

_FAIL = (IP.FAILED, ST.FAILED)
_STOP = (IP.STOPPING, ST.STOPPING)
_TIMEOUTS = {Event.MAX_RUNTIME: (IP.STOPPED, ST.MAX_RUNTIME_EXCEEDED)}
_SPOT_TIMEOUTS = {**_TIMEOUTS, Event.MAX_WAIT: (IP.STOPPED, ST.MAX_WAIT_TIME_EXCEEDED)}

TRAINING: dict[TrainingState, dict[Event, TrainingState]] = {
    (IP.IN_PROGRESS, ST.STARTING): {
        Event.QUEUE: (IP.IN_PROGRESS, ST.PENDING),
        Event.DOWNLOAD: (IP.IN_PROGRESS, ST.DOWNLOADING),
        Event.FAIL: _FAIL,
        Event.STOP: _STOP,
        Event.MAX_WAIT: (IP.STOPPED, ST.MAX_WAIT_TIME_EXCEEDED),
    },
    (IP.IN_PROGRESS, ST.PENDING): {
        Event.DOWNLOAD: (IP.IN_PROGRESS, ST.DOWNLOADING),
        Event.FAIL: _FAIL,
        Event.STOP: _STOP,
        Event.MAX_WAIT: (IP.STOPPED, ST.MAX_WAIT_TIME_EXCEEDED),
    },
    (IP.IN_PROGRESS, ST.DOWNLOADING): {
        Event.TRAIN: (IP.IN_PROGRESS, ST.TRAINING),
        Event.FAIL: _FAIL,
        Event.STOP: _STOP,
        Event.INTERRUPT: (IP.IN_PROGRESS, ST.INTERRUPTED),
        **_SPOT_TIMEOUTS,
    },
    (IP.IN_PROGRESS, ST.TRAINING): {
        Event.UPLOAD: (IP.IN_PROGRESS, ST.UPLOADING),
        Event.FAIL: _FAIL,
        Event.STOP: _STOP,
        Event.INTERRUPT: (IP.IN_PROGRESS, ST.INTERRUPTED),
        **_SPOT_TIMEOUTS,
    },
    (IP.IN_PROGRESS, ST.INTERRUPTED): {
        Event.RESTART: (IP.IN_PROGRESS, ST.RESTARTING),
        Event.FAIL: _FAIL,
        Event.STOP: _STOP,
        **_SPOT_TIMEOUTS,
    },
    (IP.IN_PROGRESS, ST.RESTARTING): {
        Event.QUEUE: (IP.IN_PROGRESS, ST.PENDING),
        Event.DOWNLOAD: (IP.IN_PROGRESS, ST.DOWNLOADING),
        Event.FAIL: _FAIL,
        Event.STOP: _STOP,
        **_SPOT_TIMEOUTS,
    },
    (IP.IN_PROGRESS, ST.UPLOADING): {
        Event.COMPLETE: (IP.COMPLETED, ST.COMPLETED),
        Event.FAIL: _FAIL,
        Event.STOP: _STOP,
    },
    (IP.STOPPING, ST.STOPPING): {
        Event.STOPPED: (IP.STOPPED, ST.STOPPED),
        Event.FAIL: _FAIL,
    },
}

#: StatusMessage of each secondary status, worded as SageMaker words them where it has one.
MESSAGES: dict[SecondaryStatus, str] = {
    ST.STARTING: "Starting the training job",
    ST.PENDING: "Waiting for a free job slot of the local engine",
    ST.DOWNLOADING: "Downloading input data",
    ST.TRAINING: "Training in progress",
    ST.UPLOADING: "Uploading generated training model",
    ST.COMPLETED: "Training job completed",
    ST.FAILED: "Training job failed",
    ST.STOPPING: "Stopping the training job",
    ST.STOPPED: "Training job stopped",
    ST.MAX_RUNTIME_EXCEEDED: "Training job runtime exceeded MaxRuntimeInSeconds provided",
    ST.MAX_WAIT_TIME_EXCEEDED: "Training job wait time exceeded MaxWaitTimeInSeconds provided",
    ST.INTERRUPTED: "Training job interrupted (spot interruption); it will restart",
    ST.RESTARTING: "Restarting the training job from its checkpoints",
}

PP = ProcessingJobStatus
PROCESSING: dict[ProcessingJobStatus, dict[Event, ProcessingJobStatus]] = {
    PP.IN_PROGRESS: {
        Event.COMPLETE: PP.COMPLETED,
        Event.FAIL: PP.FAILED,
        Event.STOP: PP.STOPPING,
        # The model's documentation: "After the condition is met, the processing job is stopped."
        Event.MAX_RUNTIME: PP.STOPPED,
    },
    PP.STOPPING: {Event.STOPPED: PP.STOPPED, Event.FAIL: PP.FAILED},
}

TRAINING_TERMINAL = frozenset({IP.COMPLETED, IP.FAILED, IP.STOPPED})
PROCESSING_TERMINAL = frozenset({PP.COMPLETED, PP.FAILED, PP.STOPPED})

#: Secondary statuses in which the job holds an instance (a job slot): TrainingStartTime is set
#: on entering the first of them.
_RUNNING = frozenset({ST.DOWNLOADING, ST.TRAINING, ST.UPLOADING})


def new_training_state(now: float) -> Record:
    """The status fields of a training job just created."""
    return {
        "TrainingJobStatus": IP.IN_PROGRESS.value,
        "SecondaryStatus": ST.STARTING.value,
        "SecondaryStatusTransitions": [
            {"Status": ST.STARTING.value, "StartTime": now, "StatusMessage": MESSAGES[ST.STARTING]}
        ],
        "LastModifiedTime": now,
    }


def training_state(record: Record) -> TrainingState:
    return IP(record["TrainingJobStatus"]), ST(record["SecondaryStatus"])


def training_next(record: Record, event: Event) -> TrainingState:
    """The state ``event`` leads to, or IllegalTransition."""
    state = training_state(record)
    try:
        return TRAINING[state][event]
    except KeyError:
        raise IllegalTransition(
            f"{event.value} is not allowed when the training job is {state[0].value}/{state[1].value}"
        ) from None


def advance_training(
    record: Record, event: Event, now: float, message: str | None = None, failure_reason: str | None = None
) -> Record:
    """Apply ``event`` to a training job's status fields and return the updated copy."""
    status, secondary = training_next(record, event)
    new = copy.deepcopy(record)
    transitions = new["SecondaryStatusTransitions"]
    if transitions and "EndTime" not in transitions[-1]:
        transitions[-1]["EndTime"] = now
    transitions.append(
        {"Status": secondary.value, "StartTime": now, "StatusMessage": message or MESSAGES[secondary]}
    )
    new["TrainingJobStatus"] = status.value
    new["SecondaryStatus"] = secondary.value
    new["LastModifiedTime"] = now
    if secondary in _RUNNING and "TrainingStartTime" not in new:
        new["TrainingStartTime"] = now
    if failure_reason:
        new["FailureReason"] = failure_reason
    if status in TRAINING_TERMINAL:
        transitions[-1]["EndTime"] = now
        # The Amazon provider reads both times of any finished job.
        new.setdefault("TrainingStartTime", now)
        new["TrainingEndTime"] = now
        seconds = max(1, round(now - new["TrainingStartTime"]))
        new["TrainingTimeInSeconds"] = seconds
        new["BillableTimeInSeconds"] = seconds * int(new.get("ResourceConfig", {}).get("InstanceCount", 1))
    return new


def new_processing_state(now: float) -> Record:
    return {"ProcessingJobStatus": PP.IN_PROGRESS.value, "LastModifiedTime": now}


def processing_next(record: Record, event: Event) -> ProcessingJobStatus:
    state = PP(record["ProcessingJobStatus"])
    try:
        return PROCESSING[state][event]
    except KeyError:
        raise IllegalTransition(
            f"{event.value} is not allowed when the processing job is {state.value}"
        ) from None


def advance_processing(
    record: Record,
    event: Event,
    now: float,
    exit_message: str | None = None,
    failure_reason: str | None = None,
) -> Record:
    """Apply ``event`` to a processing job's status fields and return the updated copy."""
    status = processing_next(record, event)
    new = copy.deepcopy(record)
    new["ProcessingJobStatus"] = status.value
    new["LastModifiedTime"] = now
    if exit_message:
        new["ExitMessage"] = exit_message
    if failure_reason:
        new["FailureReason"] = failure_reason
    if status in PROCESSING_TERMINAL:
        new.setdefault("ProcessingStartTime", now)
        new["ProcessingEndTime"] = now
    return new


def mark_processing_started(record: Record, now: float) -> Record:
    """The process of a processing job has started (no status change: it stays InProgress)."""
    new = copy.deepcopy(record)
    new.setdefault("ProcessingStartTime", now)
    new["LastModifiedTime"] = now
    return new
