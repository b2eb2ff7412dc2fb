"""CloudWatch sinks of a local job: its output lines to CloudWatch Logs, its metrics to CloudWatch.

Logs: lines go out in PutLogEvents batches within CloudWatch's limits (10,000 events, 1 MiB
counting 26 bytes of overhead per event), in order, timestamps never going backwards.

Metrics: lines are matched with the job's ``MetricDefinitions`` by the provider's one matcher
(:class:`airflow_sm_provider.metrics.matching.LineMatcher`), bounded in time: a definition that
backtracks past its budget is disabled and named once in the job's log, and a definition that
breaks SageMaker's rules (no capture group, say) is named there too and skipped; the others go on.

What CloudWatch then holds is what SageMaker publishes: namespace ``/aws/sagemaker/TrainingJobs``,
one aggregated datum per metric and minute (``StatisticValues``: count, sum, min, max), so
``GetMetricStatistics`` with ``Period=60`` answers one point per minute, as the SageMaker SDK's
``TrainingJobAnalytics`` sees on AWS. The datum is timestamped at the minute's last second, not
its first: the engine's CloudWatch is moto's, which neither rounds a query's ``StartTime`` down
to the minute (``TrainingJobAnalytics`` asks from ``TrainingStartTime``, so a datum at the
minute's start would fall outside) nor aligns periods to the clock (it counts them from the
first datum, and datums 60 s apart fall in separate periods). A client that measures time from
the first point, as ``TrainingJobAnalytics`` does, sees what AWS shows; raw timestamps read
``hh:mm:59`` where AWS says ``hh:mm:00``. Each datum is
published under the dimension ``TrainingJobName`` (what SageMaker uses for algorithm metrics and
what ``TrainingJobAnalytics`` queries) and again under ``Host`` = ``{job}/algo-1`` (the dimension
of SageMaker's per-instance training metrics); CloudWatch matches dimensions exactly, so each
query finds one series. Values that are not finite are not published (CloudWatch refuses them).

``FinalMetricDataList`` takes each metric's last value as the job printed it, NaN and ±inf
included: a run whose loss ended as ``nan`` diverged, and reporting the last finite value
instead would make it look healthy. Every finite match is also kept (up to a bound) for the
job's trial component.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_sm_provider.metrics.matching import LineMatcher, MetricDefinitionError, validate_definitions

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
METRICS_PERIOD_SECONDS = 60
#: Seconds one definition may spend on one batch of lines before it is disabled. Short, because
#: matching runs in the job's reader thread and holds the interpreter while it runs.
MATCH_TIMEOUT_SECONDS = 0.2
_MAX_POINTS = 100_000  # metric points kept per job for its trial component
_MAX_EVENTS = 10_000  # PutLogEvents: events per call
_MAX_BATCH_BYTES = 1_048_576  # PutLogEvents: bytes per call, with _EVENT_OVERHEAD per event
_EVENT_OVERHEAD = 26
_MAX_MESSAGE_BYTES = 256 * 1024 - _EVENT_OVERHEAD
_MAX_DATUMS = 1000  # PutMetricData: datums per call

Line = tuple[float, str]  # (epoch seconds, text)


def _message(text: str) -> bytes:
    """A log message as CloudWatch takes it: UTF-8, cut to the largest event it accepts."""
    data = text.encode("utf-8", errors="replace")
    if len(data) > _MAX_MESSAGE_BYTES:
        data = data[:_MAX_MESSAGE_BYTES].decode("utf-8", errors="ignore").encode()
    return data


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

    def write(self, lines: Sequence[Line]) -> None:
        """Send ``lines`` in as few PutLogEvents calls as CloudWatch's limits allow."""
        events: list[dict[str, Any]] = []
        size = 0
        for ts, text in lines:
            if not text:
                continue  # CloudWatch rejects empty messages
            data = _message(text)
            if events and (
                len(events) == _MAX_EVENTS or size + len(data) + _EVENT_OVERHEAD > _MAX_BATCH_BYTES
            ):
                self._put(events)
                events, size = [], 0
            self._last_ms = max(self._last_ms, int(ts * 1000))
            events.append({"timestamp": self._last_ms, "message": data.decode()})
            size += len(data) + _EVENT_OVERHEAD
        if events:
            self._put(events)

    def _put(self, events: list[dict[str, Any]]) -> None:
        self._logs.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=events)


class _Minute:
    """Statistics of one metric over one minute, as CloudWatch's StatisticValues carry them."""

    __slots__ = ("count", "high", "low", "total")

    def __init__(self) -> None:
        self.count, self.total, self.low, self.high = 0, 0.0, math.inf, -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)

    def statistic_values(self) -> dict[str, float]:
        return {"SampleCount": self.count, "Sum": self.total, "Minimum": self.low, "Maximum": self.high}


class MetricCollector:
    """Applies MetricDefinitions to a job's output; publishes to CloudWatch as SageMaker does.

    :meth:`feed` returns the lines to add to the job's log (definitions skipped or disabled).
    """

    def __init__(
        self,
        definitions: Sequence[Mapping[str, str]],
        cloudwatch: Any,
        job_name: str,
        *,
        timeout: float = MATCH_TIMEOUT_SECONDS,
    ) -> None:
        usable: list[Mapping[str, str]] = []
        self._notices: list[str] = []
        for definition in definitions:
            try:
                validate_definitions([definition])
            except MetricDefinitionError as err:
                self._notices.append(f"[local engine] metric {definition.get('Name')!r} is skipped: {err}")
            else:
                usable.append(definition)
        self._matcher = LineMatcher(usable, step_regex=None, timeout=timeout)
        self._cloudwatch = cloudwatch
        self._dimension_sets = [
            [{"Name": "TrainingJobName", "Value": job_name}],
            [{"Name": "Host", "Value": f"{job_name}/algo-1"}],
        ]
        self._pending: dict[tuple[str, int], _Minute] = {}
        self._fed = 0  # lines fed so far: the matcher numbers lines across batches
        self.last: dict[str, tuple[float, float]] = {}
        self.points: list[dict[str, Any]] = []

    def feed(self, lines: Sequence[Line]) -> list[str]:
        """Match a batch of lines that follows the ones fed before; returns notices for the log."""
        base, self._fed = self._fed, self._fed + len(lines)
        matches = self._matcher.feed([text for _, text in lines])
        # The matcher gives each definition's matches in line order, one definition after another.
        for name, value, index in zip(matches.metric, matches.value, matches.line, strict=True):
            ts = lines[index - base][0]
            if ts >= self.last.get(name, (-math.inf, 0.0))[0]:
                self.last[name] = (ts, value)
            if not math.isfinite(value):
                continue
            if len(self.points) < _MAX_POINTS:
                self.points.append({"MetricName": name, "Value": value, "Timestamp": ts})
            minute = int(ts) - int(ts) % METRICS_PERIOD_SECONDS
            self._pending.setdefault((name, minute), _Minute()).add(value)
        notices, self._notices = self._notices, []
        for disabled in self._matcher.take_disabled():
            notices.append(f"[local engine] metric {disabled.name!r}: {disabled.reason}")
        return notices

    def flush(self, *, final: bool = True) -> None:
        """Publish the minutes aggregated so far; unless ``final``, only the minutes that are over
        (so a minute is one datum, as SageMaker publishes it; a late line may add a second)."""
        now = time.time()
        current = int(now) - int(now) % METRICS_PERIOD_SECONDS
        ready = sorted(key for key in self._pending if final or key[1] < current)
        data = [
            {
                "MetricName": name,
                "Dimensions": dimensions,
                "Timestamp": float(minute + METRICS_PERIOD_SECONDS - 1),
                "StatisticValues": stats,
                "StorageResolution": 60,
            }
            for name, minute in ready
            for stats in [self._pending.pop((name, minute)).statistic_values()]
            for dimensions in self._dimension_sets
        ]
        for start in range(0, len(data), _MAX_DATUMS):
            self._cloudwatch.put_metric_data(
                Namespace=METRICS_NAMESPACE, MetricData=data[start : start + _MAX_DATUMS]
            )

    def final(self) -> list[dict[str, Any]]:
        """FinalMetricDataList: each metric's last value as printed, NaN and ±inf included."""
        return [{"MetricName": n, "Value": v, "Timestamp": ts} for n, (ts, v) in sorted(self.last.items())]
