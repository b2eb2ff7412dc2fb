"""Renderers: escaping of hostile strings, CSV injection, the CSP hashes, self-contained HTML."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
from collections.abc import Callable
from datetime import datetime

import pandas as pd
import pytest

from airflow_sm_provider.reporting.model import Objective, Report, RunRecord, build_report
from airflow_sm_provider.reporting.render import (
    metrics_csv,
    neutralise,
    render_artifacts,
    render_html,
    runs_csv,
)

SeriesFactory = Callable[[dict[tuple[str, str], list[float]]], pd.DataFrame]
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.fixture
def hostile(make_series: SeriesFactory, now: datetime) -> Report:
    series = make_series({(SCRIPT, "loss"): [1.0, 0.5, 0.2], (IMG, "loss"): [1.0, 0.6, 0.3]})
    runs = [
        RunRecord(
            name=SCRIPT,
            status="Completed",
            hyperparameters={SCRIPT: IMG, "lr": "0.1"},
            tags={IMG: SCRIPT},
            links={"job": "javascript:alert(1)", "run": f"https://example.com/?q={IMG}"},
            debug_rule_statuses={SCRIPT: "IssuesFound"},
        ),
        RunRecord(name=IMG, status="Completed", hyperparameters={SCRIPT: SCRIPT, "lr": "0.2"}),
        RunRecord(name="broken", status="Failed", failure_reason=f"{SCRIPT} {IMG}"),
    ]
    return build_report(runs, series, Objective("loss"), now=now)


def test_hostile_strings_come_out_escaped(hostile: Report) -> None:
    html = render_html(hostile).html.decode()
    assert SCRIPT not in html
    assert "<img src=x" not in html
    assert html.count("<script") == 1  # our own, at the end
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'href="javascript:' not in html
    assert 'href="https://example.com/?q=&#34;&gt;&lt;img' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;: IssuesFound" in html  # a Debugger rule's name


def _inline(html: str, tag: str) -> list[str]:
    return re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_csp_allows_exactly_the_inline_script_and_style(report: Report) -> None:
    rendered = render_html(report)
    html = rendered.html.decode()
    (script,) = _inline(html, "script")
    (style,) = _inline(html, "style")
    assert "sortable" in script
    policy = rendered.csp
    assert f"script-src {_hash(script)};" in policy
    assert f"style-src {_hash(style)};" in policy
    assert {"default-src 'none'", "img-src data:", "frame-ancestors 'self'"} <= set(policy.split("; "))
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', html)
    assert meta is not None
    # frame-ancestors only counts in a header; everything else is the same in the page.
    assert meta.group(1).replace("&#39;", "'") == policy.replace("; frame-ancestors 'self'", "")
    assert " style=" not in html  # style attributes would need 'unsafe-inline'


def test_page_is_self_contained_with_charts_inline(report: Report) -> None:
    charts = {"curves/validation:loss": PNG, "params/parallel": PNG, "params/scatter/eta": PNG}
    html = render_html(report, charts).html.decode()
    sources = re.findall(r'<img src="([^"]*)"', html)
    assert len(sources) == 3
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert not re.search(r'src="(https?:)?//', html)


@pytest.mark.parametrize(
    ("charts", "message"),
    [
        ({"curves/loss": b"<svg onload=alert(1)>"}, "must be PNG bytes"),
        ({"elsewhere/loss": PNG}, "unknown key 'elsewhere/loss'"),
    ],
)
def test_bad_charts_are_refused(report: Report, charts: dict[str, bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_html(report, charts)


def test_parameter_table_marks_differing_and_constant_columns(
    make_series: SeriesFactory, now: datetime
) -> None:
    runs = [
        RunRecord(name=n, status="Completed", hyperparameters={"lr": lr, "opt": "adam"})
        for n, lr in (("a", "0.1"), ("b", "0.1"), ("c", "0.5"))
    ]
    html = render_html(build_report(runs, None, Objective("loss"), now=now)).html.decode()
    table = html[html.index('id="params-table"') :]
    assert table.count('<td class="same">adam</td>') == 3
    assert table.count('<td class="diff">0.5</td>') == 1
    assert table.count('<td class="">0.1</td>') == 2
    assert 'id="diff-only"' in html


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-0.5", "-0.5"),
        ("+1e-3", "+1e-3"),
        ("plain", "plain"),
    ],
)
def test_neutralise(cell: str, expected: str) -> None:
    assert neutralise(cell) == expected


def _rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode())))


def test_runs_csv_neutralises_text_and_leaves_numbers(make_series: SeriesFactory, now: datetime) -> None:
    series = make_series({("=evil()", "score"): [-3.0, -1.5]})
    runs = [
        RunRecord(
            name="=evil()",
            status="Completed",
            hyperparameters={"@p": "-1+1", "shift": "-0.5"},
            tags={"k": "=1"},
            final_metrics={"other": -2.0},
        ),
        RunRecord(name="gone", status="Failed", failure_reason="-oops"),
    ]
    body = runs_csv(build_report(runs, series, Objective("score", "Maximize"), now=now))
    header = body.decode().splitlines()[0].split(",")
    assert "hp:@p" in header  # the prefix keeps a column name from starting a formula
    first, failed = _rows(body)
    assert first["name"] == "'=evil()"
    assert first["objective_final"] == "-1.5" and first["metric:other"] == "-2.0"
    assert first["hp:@p"] == "'-1+1" and first["hp:shift"] == "-0.5"
    assert json.loads(first["tags"]) == {"k": "=1"}
    assert failed["failure_reason"] == "'-oops"


def test_metrics_csv_is_the_tidy_series_neutralised(make_series: SeriesFactory) -> None:
    series = make_series({("@run", "-loss"): [-1.0, float("nan"), float("inf")], ('o,"k"', "loss"): [0.5]})
    rows = _rows(metrics_csv(series))
    assert [(r["run"], r["metric"], r["step"], r["value"], r["finite"]) for r in rows] == [
        ("'@run", "'-loss", "0", "-1.0", "True"),
        ("'@run", "'-loss", "1", "nan", "False"),
        ("'@run", "'-loss", "2", "inf", "False"),
        ('o,"k"', "loss", "0", "0.5", "True"),
    ]
    assert rows[0]["timestamp"] == "2026-11-30T20:00:00.000Z"
    assert rows[0]["job"] == "'@run-job"


def test_render_artifacts_returns_every_file_with_its_content_type(
    report: Report, sweep: tuple[list[RunRecord], pd.DataFrame]
) -> None:
    artifacts = render_artifacts(report, sweep[1], {"curves/validation:loss": PNG})
    assert {name: kind for name, (_, kind) in artifacts.items()} == {
        "report.html": "text/html; charset=utf-8",
        "report.json": "application/json",
        "runs.csv": "text/csv; charset=utf-8",
        "metrics.csv": "text/csv; charset=utf-8",
    }
    assert all(isinstance(body, bytes) and body for body, _ in artifacts.values())
    assert len(_rows(artifacts["metrics.csv"][0])) == len(sweep[1])


def test_a_curve_logged_under_two_names_gives_one_badge_per_rule_and_step(
    make_series: SeriesFactory, now: datetime
) -> None:
    """``val_loss`` (the log) and ``validation:loss`` (the tracker) are one curve: one badge."""
    curve = [1.0, 0.5, 0.4, float("nan")]
    series = make_series({("r", "val_loss"): curve, ("r", "validation:loss"): curve})
    report = build_report(
        [RunRecord(name="r", status="Completed")], series, Objective("validation:loss"), now=now
    )
    flags = [(f.rule, f.step) for f in report.runs[0].health]
    assert flags.count(("non_finite", 3)) == 2  # the model keeps both findings...
    leaderboard = re.search(r'<td class="health".*?</td>', render_html(report).html.decode()).group(0)
    assert leaderboard.count("non_finite @3") == 1  # ...the leaderboard shows the rule once
    assert leaderboard.count("val_loss") == leaderboard.count("validation:loss") == 1  # both reasons
    [row] = _rows(runs_csv(report))
    assert row["health"].split("; ").count("non_finite@3") == 1
