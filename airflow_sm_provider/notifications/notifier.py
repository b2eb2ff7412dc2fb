"""``SageMakerJobsNotifier``: tell SNS and/or Slack which SageMaker jobs failed, and why.

An Airflow notifier (``BaseNotifier``: the task SDK's on Airflow 3, ``airflow.notifications`` on
2.11), so it goes wherever a callback goes::

    notify = SageMakerJobsNotifier(sns_topic_arn="arn:aws:sns:...:ml-alerts", slack_webhook_conn_id="slack")
    JobSensor(task_id="wait_training", jobs=train.output, on_failure_callback=notify)

On a task's failure it reads the failed jobs from ``context["exception"]`` (see
:mod:`.failures`), builds the message (:mod:`.message`: DAG, run, task, each job with its
reason and console link, bounded) and sends it:

* SNS, when ``sns_topic_arn`` is set: the Amazon provider's ``SnsHook`` on ``aws_conn_id``
  (subject and plain text; subscribers such as e-mail, SQS or Lambda get it as is);
* Slack, when ``slack_webhook_conn_id`` is set: the Slack provider's ``SlackWebhookHook``
  (an incoming-webhook connection, ``conn_type`` ``slackwebhook``; install the ``slack`` extra).

Both are templated, so a DAG can make notifications opt-in through Params: a target that
renders empty is skipped. A failure to send to one target does not stop the other; the
notifier then raises, and Airflow logs it with the callback ("Failed to run task callback")
without changing the task's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:  # Airflow 3.x: the task SDK
    from airflow.sdk import BaseNotifier
except ImportError:  # Airflow 2.11
    from airflow.notifications.basenotifier import BaseNotifier  # type: ignore[no-redef]

from airflow_sm_provider.notifications.failures import failed_jobs_of
from airflow_sm_provider.notifications.message import (
    MAX_CHARS,
    MAX_JOBS,
    FailureNotice,
    render_slack,
    render_text,
    subject,
)

__all__ = ["SageMakerJobsNotifier", "failure_notice"]

#: Below this a message could not hold the header and one job.
MIN_CHARS = 500


def failure_notice(context: Any) -> FailureNotice:
    """What failed, from a callback's context: a task's (``ti``, ``exception``) or a DAG run's."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    error = context.get("exception")
    jobs = failed_jobs_of(error if isinstance(error, BaseException) else None)
    if error:  # the first line names the problem; the task log has the rest
        reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
    else:  # a DAG run's callback: Airflow's reason, e.g. "task_failure"
        reason = str(context.get("reason") or "")
    return FailureNotice(
        dag_id=str(getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or ""),
        run_id=str(getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None) or ""),
        task_id=str(getattr(ti, "task_id", "") or ""),
        map_index=getattr(ti, "map_index", -1) if getattr(ti, "map_index", None) is not None else -1,
        try_number=getattr(ti, "try_number", None),
        jobs=jobs,
        error="" if jobs else reason,
    )


class SageMakerJobsNotifier(BaseNotifier):  # noqa: AIR301 (the name is the 2.11 fallback's too)
    """Send the failed SageMaker jobs of a task to an SNS topic and/or a Slack webhook.

    :param sns_topic_arn: SNS topic to publish to (templated); empty: no SNS message.
    :param aws_conn_id: AWS connection for SNS (templated; default ``aws_default``).
    :param region_name: region of the SNS client (templated); default the connection's.
    :param slack_webhook_conn_id: Slack incoming-webhook connection (templated); empty: no
        Slack message. Needs the ``slack`` extra (``apache-airflow-providers-slack``).
    :param max_jobs: most jobs listed in one message (the rest are counted).
    :param max_chars: longest message, in characters (at least 500).
    """

    template_fields: Sequence[str] = ("sns_topic_arn", "aws_conn_id", "region_name", "slack_webhook_conn_id")

    def __init__(
        self,
        *,
        sns_topic_arn: str | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        slack_webhook_conn_id: str | None = None,
        max_jobs: int = MAX_JOBS,
        max_chars: int = MAX_CHARS,
    ) -> None:
        super().__init__()
        if not isinstance(max_jobs, int) or max_jobs < 1:
            raise ValueError(f"max_jobs: must be a positive integer, got {max_jobs!r}")
        if not isinstance(max_chars, int) or max_chars < MIN_CHARS:
            raise ValueError(f"max_chars: must be an integer of at least {MIN_CHARS}, got {max_chars!r}")
        self.sns_topic_arn = sns_topic_arn
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.slack_webhook_conn_id = slack_webhook_conn_id
        self.max_jobs = max_jobs
        self.max_chars = max_chars

    def notify(self, context: Any) -> None:
        """Send the message to every target set; raise after trying all if any failed."""
        targets = {
            "SNS": (self.sns_topic_arn, self._send_sns),
            "Slack": (self.slack_webhook_conn_id, self._send_slack),
        }
        chosen = {name: send for name, (target, send) in targets.items() if target}
        if not chosen:
            self.log.info("No SNS topic or Slack connection set: no failure notification sent")
            return
        notice = failure_notice(context)
        errors = []
        for name, send in chosen.items():
            try:
                send(notice)
            except Exception as error:
                errors.append(f"{name}: {error}")
                self.log.warning("Failure notification to %s not sent: %s", name, error)
            else:
                self.log.info("Failure notification sent to %s (%d failed job(s))", name, len(notice.jobs))
        if errors:
            raise RuntimeError("failure notification not sent to " + "; ".join(errors))

    def _send_sns(self, notice: FailureNotice) -> None:
        from airflow.providers.amazon.aws.hooks.sns import SnsHook

        text = render_text(notice, max_jobs=self.max_jobs, max_chars=self.max_chars)
        SnsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).publish_to_target(
            target_arn=str(self.sns_topic_arn), message=text, subject=subject(notice)
        )

    def _send_slack(self, notice: FailureNotice) -> None:
        try:
            from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook
        except ImportError as error:
            raise RuntimeError(
                "slack_webhook_conn_id needs apache-airflow-providers-slack: "
                "pip install 'airflow-sm-provider[slack]'"
            ) from error
        text = render_slack(notice, max_jobs=self.max_jobs, max_chars=self.max_chars)
        SlackWebhookHook(slack_webhook_conn_id=str(self.slack_webhook_conn_id)).send(text=text)
