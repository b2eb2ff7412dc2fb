"""The ``sagemaker-metrics`` API of the local engine: BatchPutMetrics and BatchGetMetrics.

Metric points (``BatchPutMetrics``, or a job's ``MetricDefinitions`` matches) are kept in the
Store's metrics table keyed by the trial component's ARN, with their step when they have one.
BatchGetMetrics reads them back per step (Period and XAxisType ``IterationNumber``) or per time
period; the ``Metrics`` summaries of DescribeTrialComponent and Search are computed from the same
points on read (:func:`metric_summaries`).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from airflow_sm_provider.local.context import EngineContext
from airflow_sm_provider.local.experiment_records import (
    COMPONENT,
    JOB_ARN_TYPES,
    job_component_name,
    to_epoch,
)
from airflow_sm_provider.local.responses import Handler
from airflow_sm_provider.local.store import Record, Store

#: BatchPutMetrics accepts timestamps from two weeks before to two hours after now.
_METRIC_PAST_S, _METRIC_FUTURE_S = 14 * 24 * 3600, 2 * 3600
_PERIOD_SECONDS = {"OneMinute": 60, "FiveMinute": 300, "OneHour": 3600}


class MetricsBackend:
    """Handlers of the ``sagemaker-metrics`` (rest-json) operations."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.store = ctx.store

    def operations(self) -> dict[str, Handler]:
        return {"BatchPutMetrics": self.batch_put_metrics, "BatchGetMetrics": self.batch_get_metrics}

    def batch_put_metrics(self, params: dict[str, Any]) -> dict[str, Any]:
        """Store metric points; per-point failures come back in ``Errors`` as the API does."""
        data = params["MetricData"]
        record = self.store.get(COMPONENT, params["TrialComponentName"])
        if record is None:
            return {"Errors": [{"Code": "VALIDATION_ERROR", "MetricIndex": i} for i in range(len(data))]}
        now = self.ctx.now()
        errors, points = [], []
        for index, point in enumerate(data):
            timestamp = to_epoch(point["Timestamp"])
            value = float(point["Value"])
            step = point.get("Step")
            if (
                not now - _METRIC_PAST_S <= timestamp <= now + _METRIC_FUTURE_S
                or not math.isfinite(value)
                or (step is not None and step < 0)
            ):
                errors.append({"Code": "VALIDATION_ERROR", "MetricIndex": index})
                continue
            points.append((point["MetricName"], step, timestamp, value))
        if points:
            self.store.add_metrics(record["TrialComponentArn"], points)
        return {"Errors": errors} if errors else {}

    def batch_get_metrics(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"MetricQueryResults": [self._metric_query(q) for q in params["MetricQueries"]]}

    def _metric_query(self, query: dict[str, Any]) -> dict[str, Any]:
        period, axis = query["Period"], query["XAxisType"]
        if (period == "IterationNumber") != (axis == "IterationNumber"):
            return _query_error(
                f"Period {period} cannot be combined with XAxisType {axis}: IterationNumber "
                "periods go with the IterationNumber x-axis, time periods with Timestamp."
            )
        component = self._component_by_arn(query["ResourceArn"])
        if component is None:
            return _query_error(f"Resource {query['ResourceArn']} was not found.")
        points = self.store.metric_points(component["TrialComponentArn"], query["MetricName"])
        start, end = query.get("Start"), query.get("End")
        points = [p for p in points if (start is None or p[1] >= start) and (end is None or p[1] <= end)]
        groups: dict[int, list[float]] = {}
        for step, timestamp, value in points:
            if axis == "IterationNumber":
                if step is None:
                    continue
                x = int(step)
            else:
                width = _PERIOD_SECONDS[period]
                x = int(timestamp // width * width)
            groups.setdefault(x, []).append(value)
        xs = sorted(groups)
        return {
            "Status": "Complete",
            "XAxisValues": xs,
            "MetricValues": [_statistic(query["MetricStat"], groups[x]) for x in xs],
        }

    def _component_by_arn(self, arn: str) -> Record | None:
        """The trial component metrics of an ARN live on: the component, or a job's component."""
        resource = arn.split(":", 5)[-1]
        kind, _, name = resource.partition("/")
        if kind == "experiment-trial-component":
            return self.store.get(COMPONENT, name)
        if kind in JOB_ARN_TYPES:
            return self.store.get(COMPONENT, job_component_name(name, JOB_ARN_TYPES[kind]))
        return None


def metric_summaries(store: Store, component: Record) -> list[dict[str, Any]]:
    """The ``Metrics`` of a trial component: one summary per metric name, from its points."""
    arn = component["TrialComponentArn"]
    source_arn = component.get("Source", {}).get("SourceArn", arn)
    return [
        _metric_summary(name, source_arn, store.metric_points(arn, name)) for name in store.metric_names(arn)
    ]


def _metric_summary(
    name: str, source_arn: str, points: list[tuple[int | None, float, float]]
) -> dict[str, Any]:
    """Summary of a metric's points; Last is the value with the latest timestamp."""
    values = [value for _, _, value in points]
    last_index = max(range(len(points)), key=lambda i: (points[i][1], i))
    return {
        "MetricName": name,
        "SourceArn": source_arn,
        "TimeStamp": points[last_index][1],
        "Max": max(values),
        "Min": min(values),
        "Last": values[last_index],
        "Count": len(values),
        "Avg": statistics.fmean(values),
        "StdDev": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def _statistic(stat: str, values: list[float]) -> float:
    """One MetricStat over the values that share an x-axis point (insertion order)."""
    if stat == "Min":
        return min(values)
    if stat == "Max":
        return max(values)
    if stat == "Avg":
        return statistics.fmean(values)
    if stat == "Count":
        return float(len(values))
    if stat == "StdDev":
        return statistics.stdev(values) if len(values) > 1 else 0.0
    return values[-1]


def _query_error(message: str) -> dict[str, Any]:
    return {"Status": "ValidationError", "Message": message, "XAxisValues": [], "MetricValues": []}
