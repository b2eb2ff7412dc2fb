"""The failure message: content, Slack escaping, bounds and redaction (pure)."""

from __future__ import annotations

from airflow_sm_provider.notifications.message import (
    SUBJECT_CHARS,
    FailureNotice,
    render_slack,
    render_text,
    subject,
)

URL = "https://console.aws.amazon.com/sagemaker/home?region=eu-west-1#/jobs/digits-c02-ab12"


def job(name: str, reason: str = "AlgorithmError: loss is NaN", url: str = URL) -> dict:
    return {"kind": "training", "name": name, "status": "Failed", "reason": reason, "console_url": url}


def notice(*jobs: dict, **fields) -> FailureNotice:
    base = {"dag_id": "sweep", "run_id": "manual__2026-01-01T00:00:00+00:00", "task_id": "wait_training"}
    return FailureNotice(**{**base, **fields}, jobs=jobs)


def test_text_names_dag_run_task_and_each_job_with_reason_and_link():
    text = render_text(notice(job("digits-c02-ab12"), map_index=3, try_number=2))
    assert text.splitlines() == [
        "DAG: sweep",
        "Run: manual__2026-01-01T00:00:00+00:00",
        "Task: wait_training [map index 3], try 2",
        "Failed SageMaker jobs (1):",
        "- training job digits-c02-ab12: Failed: AlgorithmError: loss is NaN",
        f"  {URL}",
    ]


def test_without_jobs_the_error_is_the_message():
    text = render_text(notice(error="the wait for the SageMaker job failed"))
    assert text.endswith("Error: the wait for the SageMaker job failed")
    assert subject(notice()) == "Airflow: task failed in sweep.wait_training"


def test_many_jobs_are_cut_with_a_count_and_the_text_stays_bounded():
    jobs = [job(f"digits-c{i:02d}-ab12", reason="x" * 1000) for i in range(250)]
    text = render_text(notice(*jobs), max_jobs=10, max_chars=3500)
    assert len(text) <= 3500
    assert text.count("- training job") == 6  # reasons cut to 400 chars: six fit in 3500
    assert text.endswith("... and 244 more failed job(s) not shown: see the task log.")
    few = render_text(notice(*jobs[:12]), max_jobs=3, max_chars=100_000)
    assert few.count("- training job") == 3
    assert few.endswith("... and 9 more failed job(s) not shown: see the task log.")


def test_a_huge_header_is_still_cut_to_the_bound():
    assert len(render_text(notice(job("a"), run_id="r" * 5000), max_chars=500)) == 500


def test_slack_escapes_user_text_and_links_the_console():
    text = render_slack(notice(job("digits-c01", reason="expected <tensor> & got <none>")))
    assert "expected &lt;tensor&gt; &amp; got &lt;none&gt;" in text
    assert f"<{URL}|console>" in text


def test_subject_is_one_short_printable_ascii_line():
    long = subject(notice(job("a"), job("b"), dag_id="d" * 300, task_id="tâsk\nx"))
    assert len(long) == SUBJECT_CHARS and long.isascii() and "\n" not in long
    assert subject(notice(job("a"), job("b"))) == "Airflow: 2 SageMaker job(s) failed in sweep.wait_training"


def test_credentials_in_reasons_never_reach_the_message():
    reason = (
        "boto said AKIAABCDEFGHIJKLMNOP; url https://b.s3.amazonaws.com/k?X-Amz-Signature=abc123&x=1 "
        "password=hunter2 aws_secret_access_key: wJalrXUtnFEMI"
    )
    text = render_text(notice(job("a", reason=reason)))
    for secret in ("AKIAABCDEFGHIJKLMNOP", "abc123", "hunter2", "wJalrXUtnFEMI"):
        assert secret not in text
    assert "X-Amz-Signature=[redacted]&x=1" in text
