"""The failure message: which task failed, and each failed job with its reason and console link.

Pure (no Airflow or AWS imports): a :class:`FailureNotice` in, text out, for SNS (plain text,
:func:`render_text`) and Slack (mrkdwn, :func:`render_slack`: ``&``, ``<``, ``>`` escaped, links
as ``<url|console>``), with a one-line :func:`subject` that fits SNS's rules.

Bounded: at most ``max_jobs`` jobs are listed and the whole text stays within ``max_chars``;
the jobs left out are counted in a last line. Each reason is cut to ``REASON_CHARS``. Text from
outside (reasons, the error) passes :func:`~airflow_sm_provider.redaction.redact` first, so a
message never carries credentials even when a job printed them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from airflow_sm_provider.redaction import redact

__all__ = [
    "MAX_CHARS",
    "MAX_JOBS",
    "FailedJob",
    "FailureNotice",
    "render_slack",
    "render_text",
    "subject",
]

#: Defaults: SNS takes 256 KiB and Slack 40,000 characters, but a message a person reads on a
#: phone should stay short; the task log has everything.
MAX_JOBS = 10
MAX_CHARS = 3500
REASON_CHARS = 400
#: SNS: a subject is at most 100 printable ASCII characters, on one line.
SUBJECT_CHARS = 100


class FailedJob(TypedDict):
    """One job that ended without success, as failure callbacks and notifications read it."""

    kind: str  # a JobKind value
    name: str
    status: str  # "Failed", "Stopped / MaxRuntimeExceeded", ... ("unknown" when not known)
    reason: str  # FailureReason, else the last status or exit message, else ""
    console_url: str  # the job's SageMaker console page ("" when its ARN is not known)


@dataclass(frozen=True)
class FailureNotice:
    """What failed: the task instance and the jobs it reported (:class:`FailedJob` records).

    ``error`` is the task's error, used when the failure carried no jobs (a wait that could
    not poll, a bad config).
    """

    dag_id: str
    run_id: str
    task_id: str = ""
    map_index: int = -1
    try_number: int | None = None
    jobs: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    error: str = ""


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())  # one line: reasons can hold newlines
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _task(notice: FailureNotice) -> str:
    task = notice.task_id or "(the DAG run)"
    if notice.map_index is not None and notice.map_index >= 0:
        task += f" [map index {notice.map_index}]"
    if notice.try_number:
        task += f", try {notice.try_number}"
    return task


def subject(notice: FailureNotice) -> str:
    """One line of at most 100 printable ASCII characters (SNS's rule for subjects)."""
    what = f"{len(notice.jobs)} SageMaker job(s) failed" if notice.jobs else "task failed"
    text = f"Airflow: {what} in {notice.dag_id}.{notice.task_id or 'run'}"
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return text if len(text) <= SUBJECT_CHARS else text[: SUBJECT_CHARS - 3] + "..."


def _render(notice: FailureNotice, escape: Any, link: Any, max_jobs: int, max_chars: int) -> str:
    head = [
        f"DAG: {escape(notice.dag_id)}",
        f"Run: {escape(notice.run_id)}",
        f"Task: {escape(_task(notice))}",
    ]
    if not notice.jobs:
        head.append(f"Error: {escape(_cut(redact(notice.error or 'no reason given'), REASON_CHARS))}")
        return _cap("\n".join(head), max_chars)
    head.append(f"Failed SageMaker jobs ({len(notice.jobs)}):")
    text = "\n".join(head)
    shown = 0
    for job in notice.jobs:
        name, status = escape(str(job.get("name", ""))), escape(str(job.get("status", "")))
        block = f"- {escape(str(job.get('kind', '')))} job {name}: {status}"
        reason = _cut(redact(str(job.get("reason") or "")), REASON_CHARS)
        block += f": {escape(reason)}" if reason else ""
        if job.get("console_url"):
            block += f"\n  {link(str(job['console_url']))}"
        footer = _more(len(notice.jobs) - shown - 1)
        if shown == max_jobs or len(text) + 1 + len(block) + len(footer) + 1 > max_chars:
            break
        text += "\n" + block
        shown += 1
    rest = len(notice.jobs) - shown
    return _cap(text + ("\n" + _more(rest) if rest else ""), max_chars)


def _more(count: int) -> str:
    return f"... and {count} more failed job(s) not shown: see the task log." if count else ""


def _cap(text: str, max_chars: int) -> str:
    """The hard bound, for headers too long to leave room for any job (ids of hundreds of chars)."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def render_text(notice: FailureNotice, *, max_jobs: int = MAX_JOBS, max_chars: int = MAX_CHARS) -> str:
    """The message as plain text (SNS: e-mail, SQS, Lambda subscribers read it as is)."""
    return _render(notice, lambda text: text, lambda url: url, max_jobs, max_chars)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_slack(notice: FailureNotice, *, max_jobs: int = MAX_JOBS, max_chars: int = MAX_CHARS) -> str:
    """The message as Slack mrkdwn: user text escaped, each console link as ``<url|console>``."""
    return _render(notice, _slack_escape, lambda url: f"<{_slack_escape(url)}|console>", max_jobs, max_chars)
