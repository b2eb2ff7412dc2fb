"""SageMakerJobsNotifier for real: SNS on the local engine read back through an SQS
subscription, Slack through a stub webhook on 127.0.0.1 (standing in for hooks.slack.com, the
one part that cannot run here), and a failing job under ``dag.test()``."""

from __future__ import annotations

import json
import runpy
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from jobs_support import training_config, upload_script

from airflow_sm_provider._compat import AIRFLOW_V3, DAG
from airflow_sm_provider.notifications.failures import jobs_failed
from airflow_sm_provider.notifications.message import FailureNotice, render_slack, render_text
from airflow_sm_provider.notifications.notifier import SageMakerJobsNotifier

pytestmark = pytest.mark.integration

ARN = "arn:aws:sagemaker:us-east-1:123456789012:training-job/digits-c02-ab12"
SUMMARIES = [
    {"kind": "training", "name": "digits-c01-ab12", "status": "Completed", "arn": ARN.replace("c02", "c01")},
    {
        "kind": "training",
        "name": "digits-c02-ab12",
        "status": "Failed",
        "arn": ARN,
        "failure_reason": "loss <nan>",
    },
]


@pytest.fixture
def topic(aws_env, engine) -> Iterator[SimpleNamespace]:
    """An SNS topic on the engine with an SQS queue subscribed to it (the SNS envelope kept)."""
    sns, sqs = engine.client("sns"), engine.client("sqs")
    suffix = uuid.uuid4().hex[:8]
    topic_arn = sns.create_topic(Name=f"alerts-{suffix}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"alerts-{suffix}")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    queue_arn = attributes["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def receive(wait: float = 10) -> dict:
        messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=int(wait)).get("Messages", [])
        assert len(messages) == 1, messages
        return json.loads(messages[0]["Body"])  # the SNS envelope: Subject, Message, ...

    yield SimpleNamespace(arn=topic_arn, receive=receive)
    sns.delete_topic(TopicArn=topic_arn)
    sqs.delete_queue(QueueUrl=queue_url)


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """A stub Slack incoming webhook on 127.0.0.1 and a ``slackwebhook`` connection to it."""
    received: list[tuple[str, dict]] = []
    state = SimpleNamespace(status=200, received=received, conn_id="slack_stub")

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(state.status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if state.status == 200 else b"invalid_payload")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    connection = {
        "conn_type": "slackwebhook",
        "host": f"http://127.0.0.1:{server.server_port}/services",
        "password": "T000/B000/XXXX",
    }
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_STUB", json.dumps(connection))
    yield state
    server.shutdown()
    server.server_close()


def context() -> dict:
    ti = SimpleNamespace(
        dag_id="sweep", run_id="manual__1", task_id="wait_training", map_index=-1, try_number=1
    )
    # Airflow 2.11's notifier renders its templates with the context's DAG; Airflow 3's does not need one.
    return {"ti": ti, "dag": DAG("sweep", schedule=None), "exception": jobs_failed(SUMMARIES)}


EXPECTED = FailureNotice(
    "sweep",
    "manual__1",
    "wait_training",
    try_number=1,
    jobs=jobs_failed(SUMMARIES).failed_jobs,
)


def test_sns_and_slack_get_the_failed_job_with_reason_and_link(topic, slack):
    SageMakerJobsNotifier(sns_topic_arn=topic.arn, slack_webhook_conn_id=slack.conn_id)(context())
    envelope = topic.receive()
    assert envelope["Subject"] == "Airflow: 1 SageMaker job(s) failed in sweep.wait_training"
    assert envelope["Message"] == render_text(EXPECTED)
    assert "digits-c02-ab12: Failed: loss <nan>" in envelope["Message"]
    assert "#/jobs/digits-c02-ab12" in envelope["Message"] and "digits-c01" not in envelope["Message"]
    [(path, body)] = slack.received
    assert path == "/services/T000/B000/XXXX"
    assert body["text"] == render_slack(EXPECTED) and "loss &lt;nan&gt;" in body["text"]


def test_a_slack_error_does_not_stop_sns_and_is_raised(topic, slack, caplog):
    slack.status = 500
    notifier = SageMakerJobsNotifier(
        sns_topic_arn="{{ params.topic }}", slack_webhook_conn_id="{{ params.slack }}"
    )
    context_ = {**context(), "params": {"topic": topic.arn, "slack": slack.conn_id}}
    if AIRFLOW_V3:
        with pytest.raises(RuntimeError, match="failure notification not sent to Slack"):
            notifier(context_)
    else:  # Airflow 2.11's BaseNotifier.__call__ logs what notify() raised, at ERROR
        notifier(context_)
        assert "failure notification not sent to Slack" in caplog.text
    assert "digits-c02-ab12" in topic.receive()["Message"]
    assert len(slack.received) == 1


def test_no_target_rendered_sends_nothing(slack):
    SageMakerJobsNotifier(sns_topic_arn="{{ params.topic }}")({**context(), "params": {"topic": ""}})
    assert slack.received == []


def test_a_failure_without_jobs_sends_its_error(slack):
    error = ValueError("config.RoleArn: must be an IAM role ARN\n(and more lines)")
    SageMakerJobsNotifier(slack_webhook_conn_id=slack.conn_id)({**context(), "exception": error})
    [(_, body)] = slack.received
    assert body["text"].endswith("Error: ValueError: config.RoleArn: must be an IAM role ARN")


def test_a_job_failing_inside_the_deferred_wait_reaches_sqs_with_its_reason(
    airflow_db, aws_env, engine, s3_bucket, topic, monkeypatch
):
    """Real Airflow: the sensor defers, the job fails, the callback publishes to SNS."""
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__MIN_FIRST_POLL_SECONDS", "0")
    script = "import sys, time\ntime.sleep(2)\nsys.exit('diverged: loss-is-nan-7')\n"
    config = training_config(s3_bucket, upload_script(engine.client("s3"), s3_bucket, script), "doomed")
    dag_id = f"itest_notify_{uuid.uuid4().hex[:8]}"
    notifier = f"SageMakerJobsNotifier(sns_topic_arn={topic.arn!r}, aws_conn_id=None)"
    path = airflow_db / "dags" / f"{dag_id}.py"
    path.write_text(
        "from datetime import datetime\n"
        "from airflow_sm_provider._compat import DAG\n"
        "from airflow_sm_provider.notifications.notifier import SageMakerJobsNotifier\n"
        "from airflow_sm_provider.operators.jobs import TrainingJobOperator\n"
        "from airflow_sm_provider.sensors.jobs import JobSensor\n"
        f"with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1)) as dag:\n"
        f"    train = TrainingJobOperator(task_id='train', config={config!r}, aws_conn_id=None,\n"
        "                                wait_for_completion=False)\n"
        "    JobSensor(task_id='wait', jobs=train.output, aws_conn_id=None, poke_interval=0.5,\n"
        f"              on_failure_callback={notifier})\n"
    )
    dag_run = runpy.run_path(str(path))["dag"].test()
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"train": "success", "wait": "failed"}
    name = dag_run.get_task_instances()[0].xcom_pull(task_ids="train")["name"]
    reason = engine.client("sagemaker").describe_training_job(TrainingJobName=name)["FailureReason"]
    assert "loss-is-nan-7" in reason
    envelope = topic.receive()
    assert f"Run: {dag_run.run_id}" in envelope["Message"] and "Task: wait, try 1" in envelope["Message"]
    expected = f"- training job {name}: Failed: {' '.join(reason.split())[:200]}"
    assert expected in envelope["Message"]
    assert f"#/jobs/{name}" in envelope["Message"]
