"""Job threads of the local engine: slots, runs, ends, credentials, recovery and shutdown.

Each created job gets one thread. The thread waits for a job slot (FIFO,
``max_concurrent_jobs``; a training job waits with SecondaryStatus Pending), runs the job
through :mod:`runner` and applies lifecycle events to the record. Each running job gets a random
token and fake, job-scoped credentials, served by the engine at ``/_engine/credentials/<job>``
(:meth:`JobThreads.job_credentials`) the way SageMaker serves a job's role. Job directories stay
in ``<data dir>/jobs`` after the job ends, for debugging. A running job's record keeps its
process group (with the leader's start time), so that after the engine dies
:meth:`JobThreads.recover` can end what it left running, and only that.
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import string
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_sm_provider.local import job_experiments, lifecycle
from airflow_sm_provider.local.container import namespaces_available
from airflow_sm_provider.local.context import EngineContext
from airflow_sm_provider.local.control import Control, EndReason, RunResult, RunSettings
from airflow_sm_provider.local.errors import JobFailure, ValidationException
from airflow_sm_provider.local.eventbridge import EventPublisher
from airflow_sm_provider.local.job_records import KINDS, PROCESSING, TRAINING
from airflow_sm_provider.local.lifecycle import Event, IllegalTransition
from airflow_sm_provider.local.process import ProcessGroup, end_process_groups
from airflow_sm_provider.local.rules import DEFAULT_TRAINING_RUNTIME
from airflow_sm_provider.local.runner import ProcessingRun, TrainingRun
from airflow_sm_provider.local.runtimes import RuntimeSpec, resolve_runtime
from airflow_sm_provider.local.store import Record

log = logging.getLogger(__name__)

RESTART_REASON = "InternalServerError: the local engine restarted while the job was running"
SHUTDOWN_REASON = "InternalServerError: the local engine shut down while the job was running"
_CREDENTIALS_TTL = 6 * 3600
_PROCESS_GROUP = "_ProcessGroup"  # engine-only record field: [pgid, start ticks] of the running job


class Slots:
    """At most ``limit`` jobs hold a slot; the others wait in FIFO order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running: set[str] = set()
        self._waiting: deque[str] = deque()
        self._cond = threading.Condition()

    def acquire(self, name: str, control: Control, on_queue: Callable[[], None]) -> bool:
        """Take a slot; False if the job must end while waiting (stop, time limit)."""
        with self._cond:
            self._waiting.append(name)
            queued = False
            try:
                while not (len(self._running) < self.limit and self._waiting[0] == name):
                    if control.check() is not None:
                        return False
                    if not queued:
                        queued = True
                        self._cond.release()
                        try:
                            on_queue()
                        finally:
                            self._cond.acquire()
                        continue
                    self._cond.wait(timeout=0.1)
                self._running.add(name)
                return True
            finally:
                self._waiting.remove(name)
                self._cond.notify_all()

    def release(self, name: str) -> None:
        with self._cond:
            self._running.discard(name)
            self._cond.notify_all()


@dataclass
class ActiveJob:
    """In-memory state of a job whose thread is alive."""

    control: Control
    token: str
    credentials: dict[str, str]
    thread: threading.Thread | None = None
    shutting_down: bool = False
    run_seconds: float = 0.0  # time spent holding a slot, across spot restarts


def _fake_credentials() -> dict[str, str]:
    alphabet = string.ascii_uppercase + string.digits
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=_CREDENTIALS_TTL)
    return {
        "AccessKeyId": "ASIA" + "".join(secrets.choice(alphabet) for _ in range(16)),
        "SecretAccessKey": secrets.token_urlsafe(30),
        "Token": secrets.token_urlsafe(48),
        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


class JobThreads:
    """The engine side of jobs: one thread per job, slots, ends, credentials, recovery."""

    def __init__(
        self,
        ctx: EngineContext,
        experiments: Any = None,
        max_concurrent_jobs: int | None = None,
        runtimes: Mapping[str, RuntimeSpec] | None = None,
        *,
        stop_grace_seconds: float = 2.0,
        mount_namespace: bool | None = None,
        events: EventPublisher | None = None,
    ) -> None:
        """``mount_namespace``: whether jobs run in their own mount and PID namespaces (see
        :mod:`container`); None detects whether the OS allows it. ``events`` publishes a
        state-change event on every status change (:mod:`eventbridge`)."""
        self.ctx = ctx
        self.experiments = experiments
        self.runtimes = runtimes
        self.stop_grace_seconds = stop_grace_seconds
        self._mount_namespace = mount_namespace
        self.events = events
        self._slots = Slots(max_concurrent_jobs or os.cpu_count() or 1)
        self._active: dict[str, ActiveJob] = {}  # key: (kind, lower-case name)
        self._lock = threading.Lock()

    # -- settings --------------------------------------------------------------------------
    @property
    def settings(self) -> RunSettings:
        if self._mount_namespace is None:
            self._mount_namespace = namespaces_available()
        return RunSettings(
            endpoint_url=self.ctx.endpoint_url,
            region=self.ctx.region,
            data_dir=self.ctx.data_dir,
            stop_grace_seconds=self.stop_grace_seconds,
            mount_namespace=self._mount_namespace,
            sdk_config=self.ctx.sdk_config_path(),
        )

    # -- credentials, restart, shutdown ----------------------------------------------------
    def job_credentials(self, job_name: str, token: str) -> dict[str, str] | None:
        """Container credentials of a running job, if ``token`` is that job's token."""
        for kind in (TRAINING, PROCESSING):
            active = self._active.get(f"{kind}/{job_name.lower()}")
            if active is not None and secrets.compare_digest(active.token.encode(), token.encode()):
                return dict(active.credentials)
        return None

    def recover(self) -> None:
        """After a restart, jobs that were running are Failed, and processes an engine that died
        left running are ended (SIGTERM, grace, SIGKILL) if they are still the jobs' own."""
        now = self.ctx.now()
        groups = []
        for k in KINDS.values():
            for record in self.ctx.store.list(k.kind):
                if record[k.status_key] not in k.terminal:
                    if record.get(_PROCESS_GROUP):
                        groups.append(ProcessGroup(*record[_PROCESS_GROUP]))
                    failed = k.advance(record, Event.FAIL, now, failure_reason=RESTART_REASON)
                    self.ctx.store.put(k.kind, record[k.name_key], failed)
                    self._changed(k.kind, record, failed)
        end_process_groups(groups, self.stop_grace_seconds)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every running job (SIGTERM, grace, SIGKILL); their records say the engine shut down."""
        with self._lock:
            active = list(self._active.values())
        for job in active:
            job.shutting_down = True
            job.control.stop.set()
        deadline = time.monotonic() + timeout
        for job in active:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))

    # -- job threads -----------------------------------------------------------------------
    def _get(self, kind: str, name: str) -> Record:
        record = self.ctx.store.get(kind, name)
        if record is None:
            if kind == TRAINING:
                raise ValidationException("Requested resource not found.")
            raise ValidationException(f"Could not find requested job with name {name}")
        return record

    def _advance(self, kind: str, name: str, event: Event, *, strict: bool = False, **fields: Any) -> bool:
        """Apply a lifecycle event to a stored job; False (or IllegalTransition if strict) if illegal."""
        now = self.ctx.now()
        extra = {k: v for k, v in fields.items() if v is not None and k not in ("message", "reason", "exit")}
        before: list[Record] = []

        def change(record: Record) -> Record:
            before.append(record)
            if kind == TRAINING:
                new = lifecycle.advance_training(
                    record, event, now, message=fields.get("message"), failure_reason=fields.get("reason")
                )
            else:
                new = lifecycle.advance_processing(
                    record, event, now, exit_message=fields.get("exit"), failure_reason=fields.get("reason")
                )
            new.update(extra)
            return new

        try:
            after = self.ctx.store.update(kind, name, change)
        except IllegalTransition:
            if strict:
                raise
            return False
        self._changed(kind, before[0], after)
        return True

    def _changed(self, kind: str, before: Record | None, after: Record) -> None:
        """A job record changed: publish its state-change event if its status did."""
        if self.events is not None:
            self.events.changed(kind, before, after)

    def _signal_stop(self, kind: str, name: str) -> None:
        active = self._active.get(f"{kind}/{name.lower()}")
        if active is not None:
            active.control.stop.set()
        else:  # no thread (cannot happen while the engine runs, kept for a consistent record)
            self._advance(kind, name, Event.STOPPED)

    def _start(self, kind: str, name: str, target: Callable[[str, ActiveJob], None]) -> None:
        token = secrets.token_urlsafe(32)
        active = ActiveJob(control=Control(), token=token, credentials=_fake_credentials())
        with self._lock:
            self._active[f"{kind}/{name.lower()}"] = active
        active.thread = threading.Thread(target=self._guard, args=(kind, name, target, active), daemon=True)
        active.thread.start()

    def _guard(
        self, kind: str, name: str, target: Callable[[str, ActiveJob], None], active: ActiveJob
    ) -> None:
        try:
            target(name, active)
        except Exception:
            log.exception("job %s failed inside the engine", name)
            self._advance(
                kind, name, Event.FAIL, reason="InternalServerError: the local engine failed the job"
            )
        finally:
            with self._lock:
                self._active.pop(f"{kind}/{name.lower()}", None)

    def _job_run_args(self, kind: str, record: Record, active: ActiveJob) -> dict[str, Any]:
        k = KINDS[kind]
        name = record[k.name_key]
        image = (
            record["AlgorithmSpecification"]["TrainingImage"]
            if kind == TRAINING
            else record["AppSpecification"]["ImageUri"]
        )

        def remember(group: ProcessGroup) -> None:
            self.ctx.store.update(
                kind, name, lambda r: r.update({_PROCESS_GROUP: [group.pgid, group.start_ticks]})
            )

        return {
            "arn": record[k.arn_key],
            "on_process": remember,
            "job_dir": self.ctx.data_dir / "jobs" / kind / name,
            "settings": self.settings,
            "runtime": resolve_runtime(self.runtimes, image),
            "clients": self.ctx.client,
            "control": active.control,
            "credentials_uri": f"{self.ctx.endpoint_url}/_engine/credentials/{name}",
            "token": active.token,
        }

    def _run_training(self, name: str, active: ActiveJob) -> None:
        record = self._get(TRAINING, name)
        stopping = record["StoppingCondition"]
        control = active.control
        if stopping.get("MaxWaitTimeInSeconds"):
            control.wait_deadline = time.monotonic() + stopping["MaxWaitTimeInSeconds"]
        budget = float(stopping.get("MaxRuntimeInSeconds") or DEFAULT_TRAINING_RUNTIME)
        holding = False  # the slot is kept until the job's end is recorded: a job waiting for it
        try:  # starts after this one's TrainingEndTime, as on SageMaker
            while True:
                control.runtime_deadline = None  # the runtime budget does not run while waiting for a slot
                if not self._slots.acquire(name, control, lambda: self._advance(TRAINING, name, Event.QUEUE)):
                    result = RunResult(control.check() or EndReason.STOPPED)
                    break
                holding = True
                started = time.monotonic()
                try:
                    if not self._advance(TRAINING, name, Event.DOWNLOAD):
                        result = RunResult(control.check() or EndReason.STOPPED)
                        break
                    job_experiments.mark_started(
                        self.experiments, "training", self._get(TRAINING, name), self.ctx.now()
                    )
                    control.runtime_deadline = started + budget - active.run_seconds
                    run = TrainingRun(
                        self._get(TRAINING, name),
                        report=lambda event: self._advance(TRAINING, name, event),
                        **self._job_run_args(TRAINING, record, active),
                    )
                    try:
                        result = run.run()
                    except JobFailure as err:
                        result = RunResult(EndReason.FAILED, failure_reason=str(err))
                finally:
                    active.run_seconds += time.monotonic() - started
                if result.outcome is not EndReason.INTERRUPTED or control.stop.is_set():
                    break
                self._slots.release(name)
                holding = False
                control.interrupt.clear()
                self._advance(TRAINING, name, Event.INTERRUPT)
                self._advance(TRAINING, name, Event.RESTART)
            outputs: dict[str, Any] = {"FinalMetricDataList": result.final_metrics or None}
            if result.model_artifacts:
                outputs["ModelArtifacts"] = {"S3ModelArtifacts": result.model_artifacts}
            self._end(TRAINING, name, active, result, **outputs)
        finally:
            if holding:
                self._slots.release(name)

    def _run_processing(self, name: str, active: ActiveJob) -> None:
        record = self._get(PROCESSING, name)
        control = active.control
        if not self._slots.acquire(name, control, lambda: None):
            result = RunResult(control.check() or EndReason.STOPPED)
            self._end(PROCESSING, name, active, result, exit=result.exit_message)
            return
        try:  # the slot is kept until the job's end is recorded, as for training
            if record.get("StoppingCondition"):
                limit = record["StoppingCondition"]["MaxRuntimeInSeconds"]
                control.runtime_deadline = time.monotonic() + limit
            self.ctx.store.update(
                PROCESSING, name, lambda r: lifecycle.mark_processing_started(r, self.ctx.now())
            )
            job_experiments.mark_started(
                self.experiments, "processing", self._get(PROCESSING, name), self.ctx.now()
            )
            run = ProcessingRun(
                record, report=lambda event: None, **self._job_run_args(PROCESSING, record, active)
            )
            try:
                result = run.run()
            except JobFailure as err:
                result = RunResult(EndReason.FAILED, failure_reason=str(err))
            if result.outcome is EndReason.MAX_RUNTIME:
                limit = record["StoppingCondition"]["MaxRuntimeInSeconds"]
                result.failure_reason = (
                    f"Processing job exceeded MaxRuntimeInSeconds ({limit} s) and was stopped"
                )
            self._end(PROCESSING, name, active, result, exit=result.exit_message)
        finally:
            self._slots.release(name)

    def _end(self, kind: str, name: str, active: ActiveJob, result: RunResult, **fields: Any) -> None:
        """Apply the event that ends a job; whatever raced with it, the job ends terminal."""
        events = {
            EndReason.COMPLETED: Event.COMPLETE,
            EndReason.FAILED: Event.FAIL,
            EndReason.STOPPED: Event.STOPPED,
            EndReason.MAX_RUNTIME: Event.MAX_RUNTIME,
            EndReason.MAX_WAIT: Event.MAX_WAIT,
            EndReason.INTERRUPTED: Event.STOPPED,
        }
        reason = result.failure_reason
        event = events[result.outcome]
        if active.shutting_down and result.outcome is EndReason.STOPPED:
            event, reason = Event.FAIL, SHUTDOWN_REASON
        ended = (
            self._advance(kind, name, event, reason=reason, **fields)
            or self._advance(kind, name, Event.STOPPED, **fields)  # a stop raced with the end
            or self._advance(
                kind, name, Event.FAIL, reason=reason or f"InternalServerError: {event} failed", **fields
            )
        )
        if not ended:
            log.warning("job %s could not be ended by %s", name, event)
        record = self._get(kind, name)
        job_experiments.mark_ended(self.experiments, KINDS[kind].word, record, result)
