"""The comparison report of a sweep's runs, written to S3 once every run has ended.

``ComparisonReportOperator`` runs with ``trigger_rule="all_done"`` so failed and stopped runs
are reported too. It reads the runs and their per-step series the way ``MetricPlotOperator``
does (``sweep.job_names``, ``SageMakerMetricsHook``), ranks them and evaluates the health rules
with the pure report library (``reporting.model``), draws the overlays and parameter charts
(``plotting.py``, through ``operators.plots.SweepCharts``), renders ``report.html``,
``report.json``, ``runs.csv`` and ``metrics.csv`` (``reporting.render``) and uploads each with
its Content-Type to::

    s3://{bucket}/{prefix}/reports/{dag_id}/{run_id}/

The task's extra link opens ``report.html`` in the S3 console.

Parse cost: pandas, matplotlib, Jinja2 and boto3 are imported inside ``execute``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypedDict

from airflow_sm_provider._compat import AirflowFailException, BaseOperator
from airflow_sm_provider.aws_args import AwsArgs, AwsArgsMixin, aws_template_fields
from airflow_sm_provider.links import ComparisonReportLink, console_url
from airflow_sm_provider.operators.plots import DEFAULT_STEP_REGEX, SweepCharts, read_sweep, sweep_metrics

if TYPE_CHECKING:
    import pandas as pd

    from airflow_sm_provider._compat import Context
    from airflow_sm_provider.hooks.metrics import SageMakerMetricsHook
    from airflow_sm_provider.metrics.health import HealthConfig
    from airflow_sm_provider.reporting.model import Report
    from airflow_sm_provider.sweep import SweepRun

DIRECTIONS = {"Minimize": "min", "Maximize": "max"}
RANK_BY = ("final", "best")


class ReportUris(TypedDict):
    """The XCom of ``ComparisonReportOperator``."""

    report: str  # s3://.../report.html
    files: dict[str, str]  # file name -> S3 URI (report.html, report.json, runs.csv, metrics.csv)
    best: str | None  # the top-ranked run, if any run has an objective value
    ranked: int  # runs with an objective value
    failed: int  # failed or stopped runs
    flags: int  # health flags raised


def check_price_table(prices: Mapping[str, Any] | None) -> dict[str, float] | None:
    """``{instance type: USD per hour}``, each a finite number >= 0; ``ValueError`` names the entry."""
    if prices is None:
        return None
    if not isinstance(prices, Mapping):
        raise ValueError("price_table: must map instance types to USD per hour")
    table = {}
    for instance, price in prices.items():
        if (
            isinstance(price, bool)
            or not isinstance(price, int | float)
            or not math.isfinite(price)
            or price < 0
        ):
            raise ValueError(
                f"price_table[{instance!r}]: must be a number >= 0 (USD per hour), got {price!r}"
            )
        table[str(instance)] = float(price)
    return table


def report_charts(frame: pd.DataFrame, runs: Sequence[SweepRun], report: Report) -> dict[str, bytes]:
    """The report's charts as PNG bytes, keyed as ``reporting.render`` expects them."""
    from airflow_sm_provider.plotting import figure_png, parallel_coordinates_figure, param_scatter_figures

    objective = report.objective
    direction = DIRECTIONS[objective.direction]
    charts = SweepCharts(
        frame=frame,
        runs=runs,
        metrics=sweep_metrics(frame, runs, None),
        directions={objective.metric: direction},
    )
    pngs = {f"curves/{metric}": figure_png(charts.overlay(metric)) for metric in charts.metrics}
    value = "objective_final" if report.rank_by == "final" else "objective_best"
    objective_by_run = {run.name: getattr(run, value) for run in report.runs}
    params = {run.name: run.hyperparameters for run in report.runs}
    kwargs = {"objective_name": objective.metric, "direction": direction}
    pngs["params/parallel"] = figure_png(parallel_coordinates_figure(params, objective_by_run, **kwargs))
    for name, figure in param_scatter_figures(params, objective_by_run, **kwargs).items():
        pngs[f"params/scatter/{name}"] = figure_png(figure)
    return pngs


def run_links(run: SweepRun, partition: str, region_name: str) -> dict[str, str]:
    """The links a run's row shows: its job in the SageMaker console."""
    url = console_url("training", partition=partition, region_name=region_name, job_name=run.job)
    return {"SageMaker job": url} if url else {}


class ComparisonReportOperator(AwsArgsMixin, BaseOperator):
    """Write the comparison of a sweep's runs (leaderboard, curves, parameter effects, health) to S3.

    :param jobs: the training jobs (templated): names, job summaries (a mapped training
        task's ``.output``), or a list of them. None: the runs the tracker finds for this DAG
        run (tracked tasks, jobs ended).
    :param experiment: with ``jobs=None``, look in this experiment only.
    :param tracking_backend: with ``jobs=None``, the backend to look in: ``experiments`` or
        ``mlflow`` (templated). Job summaries carry their own run's backend and tracking URI.
    :param tracking_uri: with ``jobs=None`` and ``mlflow``, the tracking URI (templated);
        default ``MLFLOW_TRACKING_URI``.
    :param objective_metric: the metric the sweep optimises (templated), e.g. ``validation:loss``.
    :param objective_direction: ``"Minimize"`` or ``"Maximize"`` (templated).
    :param rank_by: ``"final"`` (the last value, or the job's FinalMetricDataList entry: what
        SageMaker tuning ranks by) or ``"best"`` (the best value over the steps) (templated).
    :param bucket: S3 bucket of the report (templated).
    :param prefix: key prefix (templated); files go to ``{prefix}/reports/{dag_id}/{run_id}/``.
    :param price_table: ``{instance type: USD per hour}`` for the cost column; default the
        report library's on-demand table (``reporting.model.DEFAULT_PRICES_USD_PER_HOUR``).
    :param health_config: thresholds of the health rules (``metrics.health.HealthConfig``).
    :param step_regex: see ``MetricPlotOperator``.
    :param metrics_json: see ``MetricPlotOperator``.
    :param trigger_rule: ``all_done`` by default, so a sweep with failed runs is reported.
    :param aws_conn_id, region_name, verify, botocore_config: how to reach AWS (templated);
        see ``aws_args.AwsArgs``.

    Returns :class:`ReportUris`.
    """

    template_fields: Sequence[str] = aws_template_fields(
        "jobs",
        "experiment",
        "tracking_backend",
        "tracking_uri",
        "objective_metric",
        "objective_direction",
        "rank_by",
        "bucket",
        "prefix",
        "metrics_json",
    )
    operator_extra_links = (ComparisonReportLink(),)
    ui_color = "#fdf1dc"

    def __init__(
        self,
        *,
        objective_metric: str,
        bucket: str,
        jobs: Any = None,
        experiment: str | None = None,
        tracking_backend: str = "experiments",
        tracking_uri: str | None = None,
        prefix: str = "",
        objective_direction: str = "Minimize",
        rank_by: str = "final",
        price_table: Mapping[str, float] | None = None,
        health_config: HealthConfig | None = None,
        step_regex: str | None = DEFAULT_STEP_REGEX,
        metrics_json: str | None = None,
        trigger_rule: str = "all_done",
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(trigger_rule=trigger_rule, **kwargs)
        self.jobs = jobs
        self.experiment = experiment
        self.tracking_backend = tracking_backend
        self.tracking_uri = tracking_uri
        self.objective_metric = objective_metric
        self.objective_direction = objective_direction
        self.rank_by = rank_by
        self.bucket = bucket
        self.prefix = prefix
        self.price_table = check_price_table(price_table)
        self.health_config = health_config
        self.step_regex = step_regex
        self.metrics_json = metrics_json
        AwsArgs(aws_conn_id, region_name, verify, botocore_config).apply(self)

    @cached_property
    def hook(self) -> SageMakerMetricsHook:
        """Built on first use on the worker, never at DAG parse time."""
        from airflow_sm_provider.hooks.metrics import metrics_hook

        return metrics_hook(self.aws)

    def check_arguments(self) -> None:
        """The rendered arguments (they may come from Params), before any AWS call."""
        if not isinstance(self.objective_metric, str) or not self.objective_metric:
            raise ValueError("objective_metric: must be a non-empty metric name")
        if self.objective_direction not in DIRECTIONS:
            raise ValueError(
                f"objective_direction: must be 'Minimize' or 'Maximize', got {self.objective_direction!r}"
            )
        if self.rank_by not in RANK_BY:
            raise ValueError(f"rank_by: must be 'final' or 'best', got {self.rank_by!r}")

    def execute(self, context: Context) -> ReportUris:
        from airflow_sm_provider import s3_keys
        from airflow_sm_provider.redaction import redact_values
        from airflow_sm_provider.reporting.model import Objective, RunRecord, build_report
        from airflow_sm_provider.reporting.render import render_artifacts
        from airflow_sm_provider.sweep import job_names, tracker_opener

        try:
            self.check_arguments()
            if self.jobs is not None:
                job_names(self.jobs)
        except ValueError as error:  # a retry cannot fix the arguments
            raise AirflowFailException(str(error)) from error
        ti = context["ti"]
        sweep = read_sweep(self, context, tracker_opener(self.aws))
        runs, frame = sweep.runs, sweep.series
        partition, region_name = self.hook.location()
        # A job's failure reason and hyperparameters are whatever its author put there.
        secrets = self.hook.own_credentials()
        report = build_report(
            [
                RunRecord.from_dict(
                    redact_values(run.record(run_links(run, partition, region_name)), secrets)
                )
                for run in runs
            ],
            frame,
            Objective(self.objective_metric, self.objective_direction),  # type: ignore[arg-type]
            rank_by=self.rank_by,  # type: ignore[arg-type]
            prices=self.price_table,
            health_config=self.health_config,
        )
        artifacts = render_artifacts(report, frame, report_charts(frame, runs, report))
        folder = s3_keys.report_prefix(self.prefix, ti.dag_id, ti.run_id)
        files = {
            name: self.hook.upload(s3_keys.join_s3_uri(self.bucket, folder + name), body, content_type)
            for name, (body, content_type) in artifacts.items()
        }
        ComparisonReportLink.persist(
            context,
            self,
            partition=partition,
            region_name=region_name,
            bucket=self.bucket,
            key=folder + "report.html",
        )
        ranked = [run for run in report.runs if run.rank is not None]
        self.log.info("Comparison report of %d runs: %s", len(runs), files["report.html"])
        return ReportUris(
            report=files["report.html"],
            files=files,
            best=ranked[0].name if ranked else None,
            ranked=len(ranked),
            failed=len(report.failed),
            flags=len(report.health),
        )
