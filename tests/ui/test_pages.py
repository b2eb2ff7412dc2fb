"""The viewer's pure half: report keys, grouping a listing, escaping in its pages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from airflow_sm_provider.s3_keys import report_prefix
from airflow_sm_provider.ui.pages import (
    PAGE_CSP,
    dag_reports_prefix,
    group_reports,
    render_listing,
    render_message,
    report_file_key,
    run_path,
)

RUN = "manual__2026-01-02T03:04:05+00:00"


def test_report_file_keys_stay_under_the_run_prefix() -> None:
    assert report_file_key("p", "dag", RUN, "runs.csv") == report_prefix("p", "dag", RUN) + "runs.csv"
    assert report_file_key("p", "dag", "../../x", "report.html").startswith("p/reports/dag/~2E~2E~2F")


@pytest.mark.parametrize("name", ["../report.html", "report.html/..", "secret.txt", "", "REPORT.HTML"])
def test_only_report_files_are_keys(name: str) -> None:
    with pytest.raises(ValueError, match="not a report file"):
        report_file_key("p", "dag", RUN, name)


def test_dag_prefix_is_the_run_prefix_without_the_run() -> None:
    assert dag_reports_prefix("p/q", "my.dag") == "p/q/reports/my~2Edag/"
    assert report_prefix("p/q", "my.dag", RUN).startswith(dag_reports_prefix("p/q", "my.dag"))


def test_grouping_keeps_report_files_of_decodable_runs_newest_first() -> None:
    dag = dag_reports_prefix("p", "dag")
    old, new = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    objects = [
        {"Key": report_prefix("p", "dag", "a") + "report.html", "Size": 10, "LastModified": old},
        {"Key": report_prefix("p", "dag", "a") + "runs.csv", "Size": 3, "LastModified": old},
        {"Key": report_prefix("p", "dag", RUN) + "report.json", "Size": 5, "LastModified": new},
        {"Key": report_prefix("p", "dag", RUN) + "notes.txt", "Size": 5, "LastModified": new},
        {"Key": dag + "not~encoded:/report.html", "Size": 1, "LastModified": new},
        {"Key": dag + "stray.html", "Size": 1, "LastModified": new},
    ]
    runs = group_reports(objects, dag)
    assert [r.run_id for r in runs] == [RUN, "a"]
    assert runs[0].files == {"report.json": 5}
    assert runs[1].files == {"report.html": 10, "runs.csv": 3}


def test_paths_quote_ids_into_one_segment() -> None:
    assert run_path("/base/", "d", "a/b?c") == "/base/dags/d/runs/a%2Fb%3Fc"
    assert run_path("/base", "d", "r", "runs.csv") == "/base/dags/d/runs/r?file=runs.csv"


def test_listing_and_messages_escape_what_they_show() -> None:
    payload = "<script>alert(1)</script>"
    runs = group_reports(
        [{"Key": report_prefix("p", payload, payload) + "report.html", "Size": 1}],
        dag_reports_prefix("p", payload),
    )
    page = render_listing(payload, runs, location=f"s3://b/{payload}", base="/v")
    message = render_message(payload, payload, back=f'/v/"{payload}')
    for html in (page, message):
        assert "<script>" not in html
        assert "&lt;script&gt;" in html
    assert 'href="/v/dags/%3Cscript%3Ealert%281%29%3C%2Fscript%3E/runs/' in page


def test_own_pages_allow_no_script_and_only_same_origin_framing() -> None:
    assert "script-src" not in PAGE_CSP and "default-src 'none'" in PAGE_CSP
    assert "frame-ancestors 'self'" in PAGE_CSP
