"""ComparisonReportOperator against the local engine: a good, a diverging and a failed run."""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

import pytest
from jobs_support import LOSS_DEFINITIONS, training_config, upload_script, wait_terminal

from airflow_sm_provider.hooks.jobs import SageMakerJobsHook
from airflow_sm_provider.links import ComparisonReportLink
from airflow_sm_provider.operators.report import ComparisonReportOperator

pytestmark = pytest.mark.integration

RUN_ID = "manual__2026-01-02T03:04:05+00:00"
# mode "good": the loss falls; "diverge": it falls, then grows and turns NaN (the job still
# completes); "fail": the script writes a failure reason and exits 1 at epoch 6.
SCRIPT = """
import json, math, os, sys
hp = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")))
mode, lr = hp["mode"], float(hp["lr"])
for epoch in range(20):
    if mode == "fail" and epoch == 6:
        with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as failure:
            failure.write("CUDA out of memory <script>alert(1)</script>")
        sys.exit(1)
    loss = 1.0 / (1.0 + lr * epoch)
    if mode == "diverge" and epoch >= 8:
        loss = float("nan") if epoch >= 12 else loss * 4 ** (epoch - 7)
    print(f"epoch={epoch} train_loss={loss:.6f}", flush=True)
    print(f"epoch={epoch} val_loss={loss * 1.05:.6f}", flush=True)
"""


def start_job(engine: Any, bucket: str, code: str, mode: str, lr: str) -> str:
    name = f"{mode}-{uuid.uuid4().hex[:8]}"
    config = training_config(bucket, code, name=name)
    config["AlgorithmSpecification"]["MetricDefinitions"] = LOSS_DEFINITIONS
    config["HyperParameters"].update({"mode": mode, "lr": lr})
    engine.client("sagemaker").create_training_job(**config)
    return name


class Ti:
    dag_id, run_id, task_id, map_index = "sweep_dag", RUN_ID, "report", -1

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def test_good_diverging_and_failed_runs(aws_env, engine, s3_bucket):
    code = upload_script(engine.client("s3"), s3_bucket, SCRIPT)
    good = start_job(engine, s3_bucket, code, "good", "0.5")
    diverging = start_job(engine, s3_bucket, code, "diverge", "0.5")
    failed = start_job(engine, s3_bucket, code, "fail", "0.1")
    hook = SageMakerJobsHook(aws_conn_id=None)
    summaries = [{"kind": "training", "name": name} for name in (good, diverging, failed)]
    assert [wait_terminal(hook, s["name"])["TrainingJobStatus"] for s in summaries] == [
        "Completed",
        "Completed",
        "Failed",
    ]

    op = ComparisonReportOperator(
        task_id="report",
        jobs=summaries,
        objective_metric="validation:loss",
        bucket=s3_bucket,
        prefix="team",
        aws_conn_id=None,
    )
    assert op.trigger_rule == "all_done"
    ti = Ti()
    out = op.execute({"ti": ti})

    folder = "team/reports/sweep_dag/manual__2026-01-02T03~3A04~3A05~2B00~3A00/"
    assert out["files"] == {
        name: f"s3://{s3_bucket}/{folder}{name}"
        for name in ("report.html", "report.json", "runs.csv", "metrics.csv")
    }
    assert out["report"] == out["files"]["report.html"]
    assert (out["best"], out["failed"]) == (good, 1)
    s3 = engine.client("s3")
    bodies = {}
    for name, content_type in {
        "report.html": "text/html; charset=utf-8",
        "report.json": "application/json",
        "runs.csv": "text/csv; charset=utf-8",
        "metrics.csv": "text/csv; charset=utf-8",
    }.items():
        obj = s3.get_object(Bucket=s3_bucket, Key=folder + name)
        assert obj["ContentType"] == content_type
        bodies[name] = obj["Body"].read()

    report = json.loads(bodies["report.json"])
    assert [run["name"] for run in report["runs"]] == [good, diverging]
    assert report["runs"][0]["rank"] == 1
    flags = {flag["rule"]: flag for flag in report["runs"][1]["health"]}
    assert flags["non_finite"]["step"] == 12 and "is nan" in flags["non_finite"]["reason"]
    assert flags["divergence"]["step"] is not None and flags["divergence"]["reason"]
    assert not [f for f in report["runs"][0]["health"] if f["rule"] in ("non_finite", "divergence")]
    assert [run["name"] for run in report["failed"]] == [failed]
    assert "CUDA out of memory" in report["failed"][0]["failure_reason"]
    assert report["runs"][0]["links"]["SageMaker job"].endswith(f"/jobs/{good}")

    html = bodies["report.html"].decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("data:image/png;base64,") >= 3  # two overlays and the parameter chart
    rows = list(csv.DictReader(io.StringIO(bodies["runs.csv"].decode())))
    assert {row["name"] for row in rows} == {good, diverging, failed}
    assert bodies["metrics.csv"].decode().count(f"{good},") >= 40

    link = ti.xcoms[ComparisonReportLink.key]
    assert link["bucket"] == s3_bucket and link["report_key"] == folder + "report.html"
