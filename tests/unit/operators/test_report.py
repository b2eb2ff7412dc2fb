"""ComparisonReportOperator's logic on small frames, with the S3 side recorded instead of sent."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from test_plots import FRAME, RUNS, RecordingHook, frame

from airflow_sm_provider._compat import AirflowFailException
from airflow_sm_provider.links import ComparisonReportLink, s3_console_url
from airflow_sm_provider.operators.report import ComparisonReportOperator, check_price_table, report_charts
from airflow_sm_provider.reporting.model import Objective, RunRecord, build_report
from airflow_sm_provider.sweep import SweepRun


class ReportHook(RecordingHook):
    def location(self) -> tuple[str, str]:
        return "aws", "eu-west-1"

    def own_credentials(self) -> tuple[str, ...]:
        return ("AKIDLOCALKEY", "local-secret-key")


class Ti:
    dag_id, run_id = "sweep", "manual__2026-01-02T03:04:05+00:00"

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def operator(**kwargs: Any) -> ComparisonReportOperator:
    args = {"task_id": "report", "jobs": ["good", "slow", "oom"], "objective_metric": "loss", "bucket": "b-1"}
    op = ComparisonReportOperator(**{**args, **kwargs})
    op.hook = ReportHook()
    return op


def test_report_files_uploaded_with_their_types_and_a_small_xcom():
    op = operator(prefix="team/")
    ti = Ti()
    out = op.execute({"ti": ti})
    folder = "s3://b-1/team/reports/sweep/manual__2026-01-02T03~3A04~3A05~2B00~3A00/"
    assert out["files"] == {n: folder + n for n in ("report.html", "report.json", "runs.csv", "metrics.csv")}
    assert {uri: kind for uri, (_, kind) in op.hook.uploads.items()} == {
        folder + "report.html": "text/html; charset=utf-8",
        folder + "report.json": "application/json",
        folder + "runs.csv": "text/csv; charset=utf-8",
        folder + "metrics.csv": "text/csv; charset=utf-8",
    }
    # good's final loss 0.25 beats slow's 2.0; oom failed and has its own section.
    assert (out["best"], out["ranked"], out["failed"]) == ("good", 2, 1)
    report = json.loads(op.hook.uploads[folder + "report.json"][0])
    assert report["failed"][0]["failure_reason"] == "CUDA out of memory"
    assert report["runs"][0]["links"] == {
        "SageMaker job": "https://console.aws.amazon.com/sagemaker/home?region=eu-west-1#/jobs/good"
    }
    assert ti.xcoms[ComparisonReportLink.key] == {
        "partition": "aws",
        "region_name": "eu-west-1",
        "bucket": "b-1",
        "report_key": "team/reports/sweep/manual__2026-01-02T03~3A04~3A05~2B00~3A00/report.html",
    }
    assert len(json.dumps(out)) < 1000


def test_maximize_and_best_ranking_follow_the_arguments():
    op = operator(objective_metric="accuracy", objective_direction="Maximize", rank_by="best")
    assert op.execute({"ti": Ti()})["best"] == "good"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objective_direction": "min"}, "objective_direction: must be 'Minimize' or 'Maximize'"),
        ({"rank_by": "last"}, "rank_by: must be 'final' or 'best'"),
        ({"objective_metric": ""}, "objective_metric: must be a non-empty"),
        ({"jobs": []}, "jobs: no jobs given"),
    ],
)
def test_bad_rendered_arguments_fail_the_task_before_any_call(kwargs, message):
    op = operator(**kwargs)
    with pytest.raises(AirflowFailException, match=message):
        op.execute({"ti": Ti()})
    assert op.hook.uploads == {}


def test_price_table_is_checked_entry_by_entry():
    assert check_price_table({"ml.m5.large": 1}) == {"ml.m5.large": 1.0}
    assert check_price_table(None) is None
    for bad in ({"ml.m5.large": -1}, {"ml.m5.large": "cheap"}, {"ml.m5.large": float("nan")}):
        with pytest.raises(ValueError, match=r"price_table\['ml.m5.large'\]: must be a number >= 0"):
            check_price_table(bad)
    with pytest.raises(ValueError, match="price_table: must map"):
        check_price_table([1])


def test_charts_are_keyed_as_the_renderer_expects():
    runs = [*RUNS, SweepRun(run="x", job="x", status="Completed", hyperparameters={"lr": "0.5"})]
    series = frame(
        {
            **{k: v for k, v in FRAME.groupby(["run", "metric"])["value"].agg(list).items()},
            ("x", "loss"): [2.0, 1.0],
        }
    )
    report = build_report(
        [RunRecord.from_dict(run.record()) for run in runs], series, Objective("loss", "Minimize")
    )
    charts = report_charts(series, runs, report)
    assert set(charts) == {"curves/accuracy", "curves/loss", "params/parallel", "params/scatter/lr"}
    assert all(png[:4] == b"\x89PNG" for png in charts.values())


def test_report_link_is_the_s3_console_page_of_report_html():
    url = s3_console_url(partition="aws-cn", region_name="cn-north-1", bucket="b-1", key="r/a~3A/report.html")
    assert url == "https://console.amazonaws.cn/s3/object/b-1?region=cn-north-1&prefix=r%2Fa~3A%2Freport.html"
    assert s3_console_url(partition="aws-iso-e", region_name="x", bucket="b-1", key="k") == ""
    assert ComparisonReportOperator.operator_extra_links[0].name == "Comparison report"


def test_importing_the_operators_loads_no_pandas_matplotlib_or_boto3():
    code = (
        "import sys, airflow_sm_provider.operators.plots, airflow_sm_provider.operators.report;"
        "print([m for m in ('pandas', 'matplotlib', 'boto3', 'regex') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
