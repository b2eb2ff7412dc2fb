"""The tidy per-step series of a sweep's metrics: one pandas DataFrame, one row per point.

Columns (:data:`COLUMNS`): ``run`` and ``job`` (str), ``metric`` (str), ``step`` (int64),
``value`` (float64; NaN and ±inf kept), ``timestamp`` (``datetime64[ns, UTC]``; NaT where the
source has none), ``source`` (``"logs"``, ``"run"`` or ``"s3"``) and ``finite`` (bool, False for
NaN/±inf, so a chart or a health rule can flag them instead of losing them).

Sources, each turned into this frame by a pure function here (the hooks do the I/O):

- CloudWatch Logs events, matched with the job's ``MetricDefinitions``
  (:func:`from_log_events`);
- the points a script logged on its tracked run, as its tracker reads them back
  (``Tracker.metric_series``: BatchGetMetrics for Experiments, the metric history for MLflow)
  (:func:`from_points`);
- a metrics JSON the training script writes (:func:`from_metrics_json`).

:func:`merge` keeps one point per (run, metric, step): logs before run before s3, since the
logs hold every value the script printed (``log_metric`` drops NaN/inf).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_sm_provider.metrics.matching import (
    DEFAULT_STEP_REGEX,
    DEFAULT_TIMEOUT_SECONDS,
    LineMatcher,
    validate_definitions,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

COLUMNS = ("run", "job", "metric", "step", "value", "timestamp", "source", "finite")
DTYPES = {
    "run": "object",
    "job": "object",
    "metric": "object",
    "step": "int64",
    "value": "float64",
    "timestamp": "datetime64[ns, UTC]",
    "source": "object",
    "finite": "bool",
}
# Precedence in merge(): earlier wins for the same (run, metric, step).
SOURCES = ("logs", "run", "s3")
_HOST = re.compile(r"algo-(\d+)")


def empty_frame() -> pd.DataFrame:
    """A series with no rows and the right dtypes (what a job without metrics gives)."""
    return _frame({name: [] for name in COLUMNS if name != "finite"})


def _frame(columns: Mapping[str, Any]) -> pd.DataFrame:
    """Builds the frame from columns (all but ``finite``), fixing dtypes and order."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(
        {
            "run": pd.Series(columns["run"], dtype="object"),
            "job": pd.Series(columns["job"], dtype="object"),
            "metric": pd.Series(columns["metric"], dtype="object"),
            "step": pd.Series(columns["step"], dtype="int64"),
            "value": pd.Series(columns["value"], dtype="float64"),
            "timestamp": pd.to_datetime(
                pd.Series(columns["timestamp"], dtype="float64"), unit="ms", utc=True
            ).astype("datetime64[ns, UTC]"),
            "source": pd.Series(columns["source"], dtype="object"),
        }
    )
    frame["finite"] = np.isfinite(frame["value"].to_numpy())
    return frame[list(COLUMNS)]


def _host_rank(stream: str) -> tuple[int, str]:
    """``algo-1`` first, then ``algo-2``...; streams without a host number after them."""
    found = _HOST.search(stream)
    return (int(found.group(1)), "") if found else (1 << 30, stream)


def from_log_events(
    events: Iterable[Mapping[str, Any]],
    definitions: Sequence[Mapping[str, Any]],
    *,
    run: str,
    job: str,
    step_regex: str | None = DEFAULT_STEP_REGEX,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> pd.DataFrame:
    """The series a job's CloudWatch Logs events hold, from all its streams.

    ``events`` are ``GetLogEvents`` / ``FilterLogEvents`` events (``logStreamName``,
    ``timestamp`` in ms, ``message``), in the order the API returned them per stream. Each
    stream is matched on its own (the fallback step order counts per stream).

    One point per (metric, step) is kept: from the primary host (``algo-1``) where it has the
    step, else from the next host that has it (``algo-2``, ...), so a multi-host job whose hosts
    all print the same epochs gives each point once, while a metric only a worker prints still
    shows. Within that host the latest log timestamp wins (then the later line), so a spot
    restart that repeats steps keeps the latest attempt. Definitions that time out are logged
    once by name and skipped; the others still give their points.
    """
    import pandas as pd

    validate_definitions(definitions)
    by_stream: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        by_stream.setdefault(str(event.get("logStreamName", "")), []).append(event)
    parts: list[pd.DataFrame] = []
    disabled_in: dict[tuple[str, str], list[str]] = {}
    for stream, stream_events in by_stream.items():
        matcher = LineMatcher(definitions, step_regex=step_regex, timeout=timeout)
        found = matcher.feed([str(e.get("message", "")).rstrip("\r\n") for e in stream_events])
        for disabled in matcher.take_disabled():
            disabled_in.setdefault((disabled.name, disabled.reason), []).append(stream)
        if not found:
            continue
        stamps = [float(stream_events[i].get("timestamp", math.nan)) for i in found.line]
        part = pd.DataFrame(
            {
                "metric": found.metric,
                "step": found.step,
                "value": found.value,
                "timestamp": stamps,
                "line": found.line,
            }
        )
        part["host"] = [_host_rank(stream)] * len(part)
        parts.append(part)
    for (name, reason), streams in disabled_in.items():
        log.warning("Metric %r disabled for job %s (streams %s): %s", name, job, ", ".join(streams), reason)
    if not parts:
        return empty_frame()
    points = pd.concat(parts, ignore_index=True)
    points = points.sort_values(["host", "timestamp", "line"], ascending=[True, False, False], kind="stable")
    points = points.drop_duplicates(["metric", "step"], keep="first").sort_values(["metric", "step"])
    n = len(points)
    return _frame(
        {
            "run": [run] * n,
            "job": [job] * n,
            "metric": points["metric"].tolist(),
            "step": points["step"].tolist(),
            "value": points["value"].tolist(),
            "timestamp": points["timestamp"].tolist(),
            "source": ["logs"] * n,
        }
    )


def from_points(
    series: Iterable[tuple[str, str, str, Sequence[int], Sequence[float]]],
) -> pd.DataFrame:
    """The points a tracker read back from runs, as ``(run, job, metric, steps, values)``
    (source ``"run"``; no timestamps, as BatchGetMetrics by step gives none)."""
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS if name != "finite"}
    for run, job, metric, steps, values in series:
        if len(steps) != len(values):
            raise ValueError(f"{metric} of {run}: {len(steps)} steps for {len(values)} values")
        n = len(steps)
        columns["run"] += [run] * n
        columns["job"] += [job] * n
        columns["metric"] += [metric] * n
        columns["step"] += [int(step) for step in steps]
        columns["value"] += [float(value) for value in values]
        columns["timestamp"] += [math.nan] * n
        columns["source"] += ["run"] * n
    return _frame(columns)


def _json_value(value: Any, where: str) -> float:
    """A JSON number, null (NaN) or one of the strings NaN/Infinity/-Infinity, as a float."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{where}: must be a number, null or 'NaN'/'Infinity'/'-Infinity'")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not a number") from None


def from_metrics_json(obj: Mapping[str, Any], run: str, job: str) -> pd.DataFrame:
    """The series of a metrics JSON a training script wrote (source ``"s3"``).

    Accepted format::

        {"metrics": {"<metric>": [0.9, 0.7, ...]}}                       # steps 0, 1, ...
        {"metrics": {"<metric>": [{"step": 1, "value": 0.9, "timestamp": 1700000000.5}, ...]}}

    ``value`` may be null (NaN) or "NaN"/"Infinity"/"-Infinity" (JSON has no such numbers);
    ``timestamp`` (optional) is in seconds since the epoch. Other top-level keys are ignored.
    """
    metrics = obj.get("metrics") if isinstance(obj, Mapping) else None
    if not isinstance(metrics, Mapping):
        raise ValueError("metrics JSON: needs a 'metrics' object mapping metric names to lists of points")
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS if name != "finite"}
    for name, points in metrics.items():
        if not isinstance(points, list):
            raise ValueError(f"metrics.{name}: must be a list of numbers or of {{step, value}} objects")
        for i, point in enumerate(points):
            where = f"metrics.{name}[{i}]"
            if isinstance(point, Mapping):
                step = point.get("step")
                if isinstance(step, bool) or not isinstance(step, int):
                    raise ValueError(f"{where}.step: must be an integer")
                value = _json_value(point.get("value"), f"{where}.value")
                stamp = point.get("timestamp")
                if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, int | float)):
                    raise ValueError(f"{where}.timestamp: must be seconds since the epoch")
                millis = math.nan if stamp is None else float(stamp) * 1000
            else:
                step, value, millis = i, _json_value(point, where), math.nan
            columns["run"].append(run)
            columns["job"].append(job)
            columns["metric"].append(str(name))
            columns["step"].append(step)
            columns["value"].append(value)
            columns["timestamp"].append(millis)
            columns["source"].append("s3")
    return _frame(columns)


def merge(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """One series from several sources: per (run, metric, step), logs > run > s3.

    The logs hold every value printed (NaN/inf too, which ``log_metric`` drops) at full step
    resolution; the Run's points come next; the script's JSON fills what neither has.
    """
    import pandas as pd

    parts = [f for f in frames if len(f)]
    if not parts:
        return empty_frame()
    joined = pd.concat(parts, ignore_index=True)
    rank = joined["source"].map({s: i for i, s in enumerate(SOURCES)}).fillna(len(SOURCES))
    joined = joined.assign(_rank=rank).sort_values(["_rank"], kind="stable")
    joined = joined.drop_duplicates(["run", "metric", "step"], keep="first")
    joined = joined.sort_values(["run", "metric", "step"], kind="stable").drop(columns="_rank")
    return joined.reset_index(drop=True).astype(DTYPES)[list(COLUMNS)]
