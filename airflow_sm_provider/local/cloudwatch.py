"""CloudWatch sinks of a local job: its output lines to CloudWatch Logs, its metrics to CloudWatch.

Metric lines are matched with the job's ``MetricDefinitions`` and published as SageMaker does
(namespace ``/aws/sagemaker/TrainingJobs``, dimension ``TrainingJobName``); every match is also
kept (up to a bound) for the job's trial component.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
_MAX_POINTS = 100_000  # metric points kept per job for its trial component


class LogSink:
    """Writes a job's output lines to one CloudWatch Logs stream, in order."""

    def __init__(self, logs: Any, group: str, stream: str) -> None:
        self._logs = logs
        self.group = group
        self.stream = stream
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=group)
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        self._last_ms = 0

    def write(self, lines: Iterable[tuple[float, str]]) -> None:
        events = []
        for ts, text in lines:
            if not text:
                continue  # CloudWatch rejects empty messages
            self._last_ms = max(self._last_ms, int(ts * 1000))
            events.append({"timestamp": self._last_ms, "message": text[:250_000]})
        for start in range(0, len(events), 5000):
            self._logs.put_log_events(
                logGroupName=self.group, logStreamName=self.stream, logEvents=events[start : start + 5000]
            )


class MetricCollector:
    """Applies MetricDefinitions to output lines; publishes to CloudWatch as SageMaker does."""

    def __init__(self, definitions: list[Mapping[str, str]], cloudwatch: Any, job_name: str) -> None:
        self._defs = [(d["Name"], re.compile(d["Regex"])) for d in definitions]
        self._cloudwatch = cloudwatch
        self._job = job_name
        self._pending: list[dict[str, Any]] = []
        self.last: dict[str, tuple[float, float]] = {}
        self.points: list[dict[str, Any]] = []

    def feed(self, ts: float, line: str) -> None:
        for name, pattern in self._defs:
            match = pattern.search(line)
            if not match:
                continue
            try:
                value = float(match.group(1) if pattern.groups else match.group(0))
            except (ValueError, IndexError):
                continue
            if not math.isfinite(value):
                continue
            self.last[name] = (ts, value)
            if len(self.points) < _MAX_POINTS:
                self.points.append({"MetricName": name, "Value": value, "Timestamp": ts})
            self._pending.append(
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": "TrainingJobName", "Value": self._job}],
                    "Timestamp": ts,
                    "Value": value,
                    "StorageResolution": 60,
                }
            )

    def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            self._cloudwatch.put_metric_data(Namespace=METRICS_NAMESPACE, MetricData=batch)

    def final(self) -> list[dict[str, Any]]:
        return [{"MetricName": n, "Value": v, "Timestamp": ts} for n, (ts, v) in sorted(self.last.items())]
