"""Every user-controlled string of a report comes out of report.html escaped.

Each field gets its own payload (named after the field, so a failure says which one leaked):
run and job names, status, failure reason, hyperparameter names and values, instance type,
metric names (in the series, the final metrics and the objective), the model URI, links, tags
and Debugger rule names. ``tests/unit/reporting/test_report_render.py`` and
``tests/ui/test_report_viewer.py`` cover the same for a smaller set of fields and for the UI
plugin's pages.
"""

from __future__ import annotations

import pandas as pd

from airflow_sm_provider.reporting.model import Objective, RunRecord, build_report
from airflow_sm_provider.reporting.render import render_html


def payload(field: str) -> str:
    return f"<script>alert('{field}')</script><img src=x onerror=alert('{field}')>"


def test_every_user_string_of_the_report_is_escaped():
    metric = payload("metric")
    run = RunRecord(
        name=payload("name"),
        job_name=payload("job_name"),
        status=payload("status"),
        failure_reason=payload("failure_reason"),
        hyperparameters={payload("hp_name"): payload("hp_value")},
        instance_type=payload("instance_type"),
        final_metrics={metric: 0.5},
        model_artifact=payload("model_artifact"),
        links={payload("link_name"): f"javascript:alert('link')//{payload('link')}"},
        tags={payload("tag_key"): payload("tag_value")},
        debug_rule_statuses={payload("rule"): payload("rule_status")},
    )
    failed = RunRecord(name=payload("failed"), status="Failed", failure_reason=payload("reason2"))
    series = pd.DataFrame(
        {
            "run": run.name,
            "job": run.job_name,
            "metric": metric,
            "step": range(3),
            "value": [1.0, 0.7, 0.5],
            "timestamp": pd.date_range("2026-11-30T20:00Z", periods=3, freq="10s"),
            "source": "logs",
            "finite": True,
        }
    )
    html = render_html(build_report([run, failed], series, Objective(metric))).html.decode()
    assert html.count("<script") == 1  # the report's own, hashed in its CSP
    assert "<img src=x" not in html  # only as text: &lt;img src=x ...
    assert 'href="javascript:' not in html
    for field in ("name", "job_name", "hp_name", "hp_value", "metric", "failed", "reason2"):
        assert f"&lt;script&gt;alert(&#39;{field}&#39;)&lt;/script&gt;" in html, field  # shown, escaped
