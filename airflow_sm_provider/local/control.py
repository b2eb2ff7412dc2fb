"""The vocabulary the job runs and the scheduler share: why a run ended, the signals to a
running job (stop, spot interrupt, time limits), the engine-wide run settings, a run's result.

:class:`EndReason` is the engine's own word for how one attempt of a job ended; the scheduler
(:mod:`jobs`) maps it to a lifecycle event, and from there to botocore's statuses. It is not the
provider's ``job_kinds.EndReason`` (a status read by a client): the engine takes its vocabulary
from botocore's model, so the two sides check each other rather than share one mistake.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class EndReason(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    MAX_RUNTIME = "max_runtime"
    MAX_WAIT = "max_wait"
    INTERRUPTED = "interrupted"


@dataclass
class RunResult:
    """How one attempt of a job ended, and what it produced."""

    outcome: EndReason
    failure_reason: str | None = None
    exit_message: str | None = None
    final_metrics: list[dict[str, Any]] = field(default_factory=list)
    metric_points: list[dict[str, Any]] = field(default_factory=list)  # every match, for the job's TC
    model_artifacts: str | None = None
    output_artifacts: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Control:
    """Signals from the API to a running job, and the job's time limits (monotonic clock)."""

    stop: threading.Event = field(default_factory=threading.Event)
    interrupt: threading.Event = field(default_factory=threading.Event)
    runtime_deadline: float | None = None
    wait_deadline: float | None = None

    def limit_reached(self) -> EndReason | None:
        now = time.monotonic()
        if self.wait_deadline is not None and now >= self.wait_deadline:
            return EndReason.MAX_WAIT
        if self.runtime_deadline is not None and now >= self.runtime_deadline:
            return EndReason.MAX_RUNTIME
        return None

    def check(self) -> EndReason | None:
        """Why the job must end now, if it must."""
        if self.stop.is_set():
            return EndReason.STOPPED
        if self.interrupt.is_set():
            return EndReason.INTERRUPTED
        return self.limit_reached()


@dataclass(frozen=True)
class RunSettings:
    """Engine-wide settings every job run shares."""

    endpoint_url: str
    region: str
    data_dir: Path
    stop_grace_seconds: float = 2.0
    log_flush_seconds: float = 0.2
    checkpoint_sync_seconds: float = 5.0
    mount_namespace: bool = False  # jobs run in their own mount and PID namespaces (container.py)
    sdk_config: Path | None = None  # the SDK's telemetry opt-out (EngineContext.sdk_config_path)
