"""Per-epoch learning curves of a sweep's training jobs, as PNGs in S3, also while the jobs run.

``MetricPlotOperator`` reads each job's series (``hooks/metrics.py``: CloudWatch Logs matched
with the job's ``MetricDefinitions``, optionally a metrics JSON), draws them with
``plotting.py`` and uploads (keys from ``s3_keys.py``)::

    s3://{bucket}/{prefix}/{job}/metrics/{metric}.png                 one job, one metric
    s3://{bucket}/{prefix}/plots/{dag_id}/{run_id}/{metric}.png       all jobs, one metric

One metric has one y-range in every chart (``plotting.metric_ylimits`` over the whole sweep),
so the charts of different jobs compare by eye. A job that failed, or has no points yet, gets
a chart that says so at each of its keys, rather than a stale or missing file.

Live curves: with ``live=True`` the task publishes, then, while any job still runs, defers to
a ``TimeDeltaTrigger`` for ``republish_every`` and publishes again when it fires, until every
job has ended. The rendering happens on the worker each time; the trigger only sleeps (drawing
inside a trigger would block the triggerer's event loop). Put it beside the wait::

    train = TrainingJobOperator.partial(task_id="train", wait_for_completion=False).expand(config=configs)
    JobSensor(task_id="wait", jobs=train.output)
    MetricPlotOperator(task_id="curves", jobs=train.output, bucket="my-bucket", prefix="sweeps",
                       live=True, republish_every=timedelta(minutes=5))

Parse cost: pandas, matplotlib and boto3 are imported inside the methods that run on a worker.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from airflow_sm_provider._compat import BaseOperator
from airflow_sm_provider.aws_args import AwsArgs, AwsArgsMixin, aws_template_fields

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from airflow_sm_provider._compat import Context
    from airflow_sm_provider.hooks.metrics import SageMakerMetricsHook
    from airflow_sm_provider.sweep import Sweep, SweepRun

PNG = "image/png"
#: Plots recorded on one tracked run at most: a run holds 30 output artifacts (its model too).
PLOT_ARTIFACTS_PER_RUN = 20
#: ``metrics.matching.DEFAULT_STEP_REGEX`` (a test checks they agree); importing that module
#: would load the ``regex`` package at DAG parse time.
DEFAULT_STEP_REGEX = r"epoch[=: ]+(\d+)"
DEFAULT_REPUBLISH_EVERY = timedelta(minutes=5)
#: Metric names that are better when larger; any other metric is better when smaller.
_HIGHER_IS_BETTER = re.compile(r"acc|auc|f1|precision|recall|score|map\b|r2|iou|bleu|rouge", re.IGNORECASE)


class PlotUris(TypedDict):
    """The XCom of ``MetricPlotOperator``: where each chart is."""

    overlays: dict[str, str]  # metric -> s3://.../plots/{dag_id}/{run_id}/{metric}.png
    jobs: dict[str, dict[str, str]]  # job -> metric -> s3://.../{job}/metrics/{metric}.png
    running: list[str]  # jobs still running when the charts were drawn


def metric_direction(metric: str, directions: Mapping[str, str] | None = None) -> str:
    """``"min"`` or ``"max"``: as given, else ``max`` for accuracy-like names, ``min`` for the rest."""
    given = (directions or {}).get(metric)
    if given is not None:
        if given not in ("min", "max"):
            raise ValueError(f"directions[{metric!r}]: must be 'min' or 'max', got {given!r}")
        return given
    return "max" if _HIGHER_IS_BETTER.search(metric) else "min"


@dataclass
class SweepCharts:
    """The charts of one sweep, keyed by what they show; figures are built when asked for."""

    frame: pd.DataFrame
    runs: Sequence[SweepRun]
    metrics: list[str]
    log_scale_metrics: frozenset[str] = frozenset()
    directions: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def ylimits(self) -> dict[str, tuple[float, float]]:
        from airflow_sm_provider.plotting import metric_ylimits

        return metric_ylimits(self.frame, log_metrics=self.log_scale_metrics)

    def overlay(self, metric: str) -> Figure:
        """All runs of the sweep, one metric, against step."""
        from airflow_sm_provider.plotting import overlay_figure

        return overlay_figure(
            self.frame,
            metric,
            hyperparameters_by_run={run.run: run.hyperparameters for run in self.runs},
            direction=metric_direction(metric, self.directions),
            ylim=self.ylimits.get(metric),
            log_scale=metric in self.log_scale_metrics,
        )

    def job_chart(self, run: SweepRun, metric: str) -> Figure:
        """One run, one metric; a failed run or one without points says so."""
        from airflow_sm_provider.plotting import run_figure, status_figure

        points = self.frame[(self.frame["run"] == run.run) & (self.frame["metric"] == metric)]
        state = f" ({run.status}{': ' + run.failure_reason if run.failure_reason else ''})"
        if points.empty:
            if run.failed:
                return status_figure(f"{run.job}: {metric}", reason=run.failure_reason or run.status)
            return status_figure(f"{run.job}: {metric}" + (" (still running)" if run.running else ""))
        return run_figure(
            points,
            run.run,
            ylimits=self.ylimits,
            log_metrics=self.log_scale_metrics,
            directions={metric: metric_direction(metric, self.directions)},
            title=f"{run.job}: {metric}" + (state if run.failed or run.running else ""),
        )


def sweep_metrics(frame: pd.DataFrame, runs: Iterable[SweepRun], wanted: Sequence[str] | None) -> list[str]:
    """The metrics to chart: ``wanted`` if given, else every metric with points or a definition."""
    if wanted:
        return list(dict.fromkeys(wanted))
    names = set(frame["metric"].unique()) | {d["Name"] for run in runs for d in run.metric_definitions}
    return sorted(names)


class MetricPlotOperator(AwsArgsMixin, BaseOperator):
    """Draw each metric of a sweep's training jobs per epoch and publish the PNGs to S3.

    :param jobs: the training jobs (templated): names, job summaries (the XCom of
        ``TrainingJobOperator``, e.g. a mapped task's ``.output``), or a list of them. None:
        the runs the tracker finds for this DAG run (tracked tasks, jobs ended).
    :param experiment: with ``jobs=None``, look in this experiment only.
    :param tracking_backend: with ``jobs=None``, the backend to look in: ``experiments`` or
        ``mlflow`` (templated). Job summaries carry their own run's backend and tracking URI.
    :param tracking_uri: with ``jobs=None`` and ``mlflow``, the tracking URI (templated);
        default ``MLFLOW_TRACKING_URI``.
    :param bucket: S3 bucket of the charts (templated).
    :param prefix: key prefix (templated); keys as in the module docstring.
    :param metrics: the metrics to chart; default every metric the jobs define or log.
    :param log_scale_metrics: metrics drawn on a log y-axis.
    :param directions: per metric, ``"min"`` or ``"max"``: which point is starred as best
        (default ``max`` for accuracy-like names, else ``min``).
    :param step_regex: regex whose first group is the step on a metric line (the
        ``MetricDefinitions`` give none); None numbers each metric's lines 0, 1, 2...
    :param metrics_json: optional S3 URI of a metrics JSON per job, ``{job}`` standing for the
        job's name (templated), e.g. ``s3://bucket/metrics/{job}.json``.
    :param live: republish every ``republish_every`` while any job runs (deferring between).
    :param republish_every: the interval of live republication.
    :param aws_conn_id, region_name, verify, botocore_config: how to reach AWS (templated);
        see ``aws_args.AwsArgs``.

    Returns :class:`PlotUris`.
    """

    template_fields: Sequence[str] = aws_template_fields(
        "jobs", "tracking_backend", "tracking_uri", "bucket", "prefix", "metrics", "metrics_json"
    )
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        bucket: str,
        jobs: Any = None,
        experiment: str | None = None,
        tracking_backend: str = "experiments",
        tracking_uri: str | None = None,
        prefix: str = "",
        metrics: Sequence[str] | None = None,
        log_scale_metrics: Iterable[str] = (),
        directions: Mapping[str, str] | None = None,
        step_regex: str | None = DEFAULT_STEP_REGEX,
        metrics_json: str | None = None,
        live: bool = False,
        republish_every: timedelta = DEFAULT_REPUBLISH_EVERY,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if republish_every <= timedelta(0):
            raise ValueError("republish_every: must be a positive timedelta")
        for metric, direction in (directions or {}).items():
            metric_direction(metric, {metric: direction})
        self.jobs = jobs
        self.experiment = experiment
        self.tracking_backend = tracking_backend
        self.tracking_uri = tracking_uri
        self.bucket = bucket
        self.prefix = prefix
        self.metrics = metrics
        self.log_scale_metrics = frozenset(log_scale_metrics)
        self.directions = dict(directions or {})
        self.step_regex = step_regex
        self.metrics_json = metrics_json
        self.live = live
        self.republish_every = republish_every
        AwsArgs(aws_conn_id, region_name, verify, botocore_config).apply(self)

    @cached_property
    def hook(self) -> SageMakerMetricsHook:
        """Built on first use on the worker, never at DAG parse time."""
        from airflow_sm_provider.hooks.metrics import metrics_hook

        return metrics_hook(self.aws)

    def execute(self, context: Context) -> PlotUris:
        uris = self.publish(context)
        if self.live and uris["running"]:
            self.log.info(
                "%d job(s) still running; publishing again in %s", len(uris["running"]), self.republish_every
            )
            self.defer(trigger=_sleep(self.republish_every), method_name="republish")
        return uris

    def republish(self, context: Context, event: Any = None) -> PlotUris:
        """Resumed by the trigger: publish again, and defer again while a job runs."""
        return self.execute(context)

    def publish(self, context: Context) -> PlotUris:
        """Draw every chart of the sweep as it is now and upload it; the URIs by chart."""
        from airflow_sm_provider.sweep import tracker_opener

        ti = context["ti"]
        trackers = tracker_opener(self.aws)
        sweep = read_sweep(self, context, trackers)
        charts = SweepCharts(
            frame=sweep.series,
            runs=sweep.runs,
            metrics=sweep_metrics(sweep.series, sweep.runs, self.metrics),
            log_scale_metrics=self.log_scale_metrics,
            directions=self.directions,
        )
        uris = upload_charts(self.hook, charts, self.bucket, self.prefix, ti.dag_id, ti.run_id)
        record_on_runs(sweep, uris, trackers, self.log)
        return uris


class SweepArguments(Protocol):
    """The arguments the plot and report operators share for reading their sweep."""

    hook: SageMakerMetricsHook
    jobs: Any
    experiment: str | None
    tracking_backend: str
    tracking_uri: str | None
    step_regex: str | None
    metrics_json: str | None


def read_sweep(op: SweepArguments, context: Context, trackers: Callable[[str, str], Any]) -> Sweep:
    """The sweep of a plot or report operator, from its rendered arguments."""
    from airflow_sm_provider.operators.base import default_namespace
    from airflow_sm_provider.sweep import DagRunRuns, gather

    ti = context["ti"]
    lookup = DagRunRuns(
        default_namespace(),
        ti.dag_id,
        ti.run_id,
        op.experiment,
        backend=op.tracking_backend,
        tracking_uri=op.tracking_uri or "",
    )
    return gather(
        op.hook,
        op.jobs,
        tracker=trackers,
        step_regex=op.step_regex,
        metrics_json=op.metrics_json,
        lookup=lookup,
    )


def plot_artifact_name(metric: str) -> str:
    """The stable name a job's chart of ``metric`` has on its run (republishing replaces it)."""
    return f"curve:{metric}"[:128]


def record_on_runs(sweep: Sweep, uris: PlotUris, trackers: Callable[[str, str], Any], log: Any) -> None:
    """Log each tracked job's chart URIs on its run (``log_artifact``, no second upload).

    Recording is a convenience: a tracker that refuses is logged, and the task goes on.
    """
    for job, ref in sweep.tracked.items():
        charts = list(uris["jobs"].get(job, {}).items())
        if len(charts) > PLOT_ARTIFACTS_PER_RUN:
            log.warning(
                "Run %s: recording %d of its %d charts (a run holds 30 artifacts)",
                ref.run_name,
                PLOT_ARTIFACTS_PER_RUN,
                len(charts),
            )
        artifacts = {plot_artifact_name(m): uri for m, uri in charts[:PLOT_ARTIFACTS_PER_RUN]}
        try:
            trackers(ref.backend, ref.tracking_uri).log_artifacts(ref, artifacts)
        except Exception as error:  # whatever the backend raises: the charts are published already
            log.warning("Charts of job %s not recorded on run %s: %s", job, ref.run_name, error)


def upload_charts(
    hook: SageMakerMetricsHook, charts: SweepCharts, bucket: str, prefix: str, dag_id: str, run_id: str
) -> PlotUris:
    """Render and upload every chart of ``charts`` (one figure in memory at a time)."""
    from airflow_sm_provider import s3_keys
    from airflow_sm_provider.plotting import figure_png

    def put(key: str, figure: Figure) -> str:
        return hook.upload(s3_keys.join_s3_uri(bucket, key), figure_png(figure), PNG)

    uris = PlotUris(overlays={}, jobs={}, running=[run.job for run in charts.runs if run.running])
    for metric in charts.metrics:
        uris["overlays"][metric] = put(
            s3_keys.overlay_key(prefix, dag_id, run_id, metric), charts.overlay(metric)
        )
    for run in charts.runs:
        uris["jobs"][run.job] = {
            metric: put(s3_keys.job_metric_key(prefix, run.job, metric), charts.job_chart(run, metric))
            for metric in charts.metrics  # every job shows each metric, or says why not
        }
    return uris


def _sleep(delta: timedelta) -> Any:
    """A trigger that fires after ``delta`` (the standard provider's; Airflow 2.11 core's)."""
    try:
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
    except ImportError:  # Airflow 2.11 without the standard provider
        from airflow.triggers.temporal import TimeDeltaTrigger  # type: ignore[no-redef]
    return TimeDeltaTrigger(delta)
