"""MetricPlotOperator's logic on small frames: which charts, at which keys, on which y-ranges."""

from __future__ import annotations

import math
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from airflow_sm_provider._compat import TaskDeferred
from airflow_sm_provider.metrics.matching import DEFAULT_STEP_REGEX
from airflow_sm_provider.metrics.series import COLUMNS
from airflow_sm_provider.operators import plots
from airflow_sm_provider.operators.plots import (
    MetricPlotOperator,
    SweepCharts,
    metric_direction,
    sweep_metrics,
    upload_charts,
)
from airflow_sm_provider.sweep import SweepRun

RUN_ID = "scheduled__2026-01-02T03:04:05+00:00"


def frame(points: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """A tidy series: (run, metric) -> values at steps 0, 1, 2..."""
    rows = [
        (run, run, metric, step, value, pd.NaT, "logs", math.isfinite(value))
        for (run, metric), values in points.items()
        for step, value in enumerate(values)
    ]
    points = pd.DataFrame(rows, columns=list(COLUMNS))
    points["timestamp"] = points["timestamp"].astype("datetime64[ns]").dt.tz_localize("UTC")
    return points


RUNS = [
    SweepRun(run="good", job="good", status="Completed", hyperparameters={"lr": "0.1"}),
    SweepRun(run="slow", job="slow", status="InProgress", hyperparameters={"lr": "0.01"}),
    SweepRun(
        run="oom",
        job="oom",
        status="Failed",
        failure_reason="CUDA out of memory",
        hyperparameters={"lr": "1"},
        metric_definitions=[{"Name": "loss", "Regex": "loss=(\\S+)"}],
    ),
]
FRAME = frame(
    {
        ("good", "loss"): [1.0, 0.5, 0.25],
        ("good", "accuracy"): [0.5, 0.8, 0.9],
        ("slow", "loss"): [3.0, 2.0],
        ("slow", "accuracy"): [0.1, 0.2],
    }
)


class RecordingHook:
    """Stands in for the S3 side of SageMakerMetricsHook: keeps what would be uploaded."""

    def __init__(self, runs: list[SweepRun] = RUNS, series: pd.DataFrame = FRAME) -> None:
        self.runs, self.series = runs, series
        self.uploads: dict[str, tuple[bytes, str]] = {}

    def describe_runs(self, names: list[str]) -> list[SweepRun]:
        return [run for run in self.runs if run.job in names]

    def collect(self, runs: list[SweepRun], **_: Any) -> pd.DataFrame:
        return self.series[self.series["run"].isin([r.run for r in runs])]

    def upload(self, uri: str, body: bytes, content_type: str) -> str:
        self.uploads[uri] = (body, content_type)
        return uri


def context() -> dict[str, Any]:
    return {"ti": SimpleNamespace(dag_id="sweep", run_id=RUN_ID)}


def test_default_step_regex_is_the_matchers():
    assert plots.DEFAULT_STEP_REGEX == DEFAULT_STEP_REGEX


def test_directions_given_or_guessed_from_the_name():
    assert metric_direction("validation:accuracy") == "max"
    assert metric_direction("train:loss") == "min"
    assert metric_direction("loss", {"loss": "max"}) == "max"
    with pytest.raises(ValueError, match=r"directions\['loss'\]: must be 'min' or 'max'"):
        metric_direction("loss", {"loss": "Minimize"})


def test_metrics_charted_are_those_wanted_else_every_one_defined_or_logged():
    assert sweep_metrics(FRAME, RUNS, ["loss", "loss"]) == ["loss"]
    assert sweep_metrics(FRAME.iloc[0:0], RUNS, None) == ["loss"]  # defined by the failed job only
    assert sweep_metrics(FRAME, RUNS, None) == ["accuracy", "loss"]


def test_one_y_range_per_metric_across_the_overlay_and_every_job_chart():
    charts = SweepCharts(frame=FRAME, runs=RUNS, metrics=["accuracy", "loss"])
    for metric in charts.metrics:
        overlay = charts.overlay(metric).axes[0].get_ylim()
        for run in RUNS[:2]:
            assert charts.job_chart(run, metric).axes[0].get_ylim() == overlay
    low, high = charts.ylimits["loss"]
    assert low < 0.25 and high > 3.0  # spans every run, not just the one drawn


def test_failed_and_pointless_runs_get_a_chart_that_says_why():
    charts = SweepCharts(frame=FRAME, runs=RUNS, metrics=["loss"])
    failed = charts.job_chart(RUNS[2], "loss")
    assert "Failed: CUDA out of memory" in [t.get_text() for t in failed.axes[0].texts]
    waiting = SweepCharts(frame=FRAME.iloc[0:0], runs=RUNS, metrics=["loss"]).job_chart(RUNS[1], "loss")
    assert waiting.axes[0].get_title() == "slow: loss (still running)"
    running = charts.job_chart(RUNS[1], "loss")
    assert running.texts[0].get_text() == "slow: loss (InProgress)"  # the suptitle


def test_log_scale_and_best_point_follow_the_arguments():
    charts = SweepCharts(
        frame=FRAME,
        runs=RUNS,
        metrics=["loss"],
        log_scale_metrics=frozenset({"loss"}),
        directions={"loss": "max"},
    )
    overlay = charts.overlay("loss").axes[0]
    assert overlay.get_yscale() == "log"
    best = [label for label in overlay.get_legend_handles_labels()[1] if label.startswith("best")]
    assert best == ["best (max): 3 at step 0, slow"]


def test_upload_writes_each_chart_once_at_its_documented_key():
    hook = RecordingHook()
    charts = SweepCharts(frame=FRAME, runs=RUNS, metrics=["accuracy", "loss"])
    uris = upload_charts(hook, charts, "bucket", "/team/sweeps/", "sweep", RUN_ID)
    run = "scheduled__2026-01-02T03~3A04~3A05~2B00~3A00"
    assert uris["overlays"] == {
        m: f"s3://bucket/team/sweeps/plots/sweep/{run}/{m}.png" for m in ("accuracy", "loss")
    }
    assert uris["jobs"]["oom"] == {
        m: f"s3://bucket/team/sweeps/oom/metrics/{m}.png" for m in ("accuracy", "loss")
    }
    assert uris["running"] == ["slow"]
    assert len(hook.uploads) == 2 + 3 * 2
    assert all(body[:4] == b"\x89PNG" and kind == "image/png" for body, kind in hook.uploads.values())


def test_execute_publishes_and_live_defers_only_while_a_job_runs():
    op = MetricPlotOperator(task_id="curves", jobs=["good", "slow"], bucket="bucket", aws_conn_id=None)
    op.hook = RecordingHook()  # the cached property's value
    assert op.execute(context())["running"] == ["slow"]  # not live: returns

    live = MetricPlotOperator(
        task_id="curves", jobs=["good", "slow"], bucket="b-1", live=True, republish_every=timedelta(minutes=3)
    )
    live.hook = RecordingHook()
    with pytest.raises(TaskDeferred) as deferred:
        live.execute(context())
    assert deferred.value.method_name == "republish"
    assert len(live.hook.uploads) == 2 + 2 * 2  # published before deferring

    live.hook.runs = [RUNS[0], SweepRun(run="slow", job="slow", status="Completed")]
    assert live.republish(context(), event=None)["running"] == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"republish_every": timedelta(0)}, "republish_every: must be a positive"),
        ({"directions": {"loss": "down"}}, r"directions\['loss'\]"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MetricPlotOperator(task_id="x", jobs=["a"], bucket="b-1", **kwargs)


def test_templated_fields_include_jobs_bucket_prefix_and_aws_args():
    assert {"jobs", "bucket", "prefix", "metrics_json", "aws_conn_id", "region_name"} <= set(
        MetricPlotOperator.template_fields
    )


def test_each_tracked_jobs_charts_are_recorded_on_its_run_under_stable_names():
    from airflow_sm_provider.sweep import Sweep
    from airflow_sm_provider.tracking.base import RunRef

    ref = RunRef("experiments", "sweep", "good-run", "sweep-good-run")
    logged: list[tuple[RunRef, dict[str, str]]] = []
    tracker = SimpleNamespace(log_artifacts=lambda r, artifacts: logged.append((r, artifacts)))
    many = {f"m{i:02d}": f"s3://b-1/good/metrics/m{i:02d}.png" for i in range(25)}
    uris = plots.PlotUris(overlays={}, jobs={"good": many, "slow": {}}, running=[])
    sweep = Sweep(runs=RUNS, series=FRAME, tracked={"good": ref})
    plots.record_on_runs(sweep, uris, lambda backend, uri: tracker, _Log())
    assert len(logged) == 1 and logged[0][0] == ref
    assert list(logged[0][1])[:2] == ["curve:m00", "curve:m01"] and len(logged[0][1]) == 20

    def refuse(r, artifacts):
        raise ValueError("run sweep-good-run: 31 output artifacts, above the SDK's 30")

    log = _Log()
    plots.record_on_runs(sweep, uris, lambda backend, uri: SimpleNamespace(log_artifacts=refuse), log)
    assert any("not recorded on run good-run" in line for line in log.lines)  # and no exception


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, message: str, *args: Any) -> None:
        self.lines.append(message % args)
