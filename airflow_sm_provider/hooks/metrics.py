"""All the AWS I/O of metric plots and reports: describes, series, S3 reads and uploads.

Where a sweep's per-step series come from (``metrics/series.py`` turns each into the tidy
frame, and :func:`~airflow_sm_provider.metrics.series.merge` keeps one point per run, metric
and step, logs first):

- CloudWatch Logs: every stream of the job (``algo-1``, ``algo-2``, a restart's new stream),
  every page, read with :class:`~airflow_sm_provider.hooks.logs.JobLogTailer` and matched with
  the job's own ``MetricDefinitions`` (from ``DescribeTrainingJob``) plus ``step_regex``;
- (the points a script logged on its tracked run are read by its tracker, ``sweep.gather``);
- a metrics JSON the script wrote to S3 (``metrics_json``, a URI with ``{job}`` in it).

A source that fails (no log group yet, a JSON not written) gives no points and a warning,
never an exception: a missing curve is drawn as "no metrics", it does not fail the task.
Every API call is counted in :attr:`SageMakerMetricsHook.calls` (by operation), so callers
and benchmarks can say what collecting cost.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.config import Config
from botocore.exceptions import ClientError

from airflow_sm_provider.hooks.jobs import api_error, with_default_retries
from airflow_sm_provider.hooks.logs import JobLogTailer
from airflow_sm_provider.job_kinds import KINDS, JobKind
from airflow_sm_provider.metrics import series
from airflow_sm_provider.metrics.matching import DEFAULT_STEP_REGEX
from airflow_sm_provider.s3_keys import parse_s3_uri
from airflow_sm_provider.sweep import SweepRun, sweep_run

if TYPE_CHECKING:
    import pandas as pd

    from airflow_sm_provider.aws_args import AwsArgs

__all__ = ["SageMakerMetricsHook", "metrics_hook"]


class SageMakerMetricsHook(AwsBaseHook):
    """Reads a sweep's jobs and series and writes plot and report files, through one AWS connection.

    :param aws_conn_id: Airflow AWS connection; its ``endpoint_url`` may point at the local engine.
    :param region_name: AWS region; default from the connection or boto3.
    :param verify: TLS verification for boto3 (bool or CA bundle path).
    :param config: botocore ``Config`` (or its options as a dict).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "logs"
        super().__init__(*args, **kwargs)
        #: API calls made, by ``service.Operation``.
        self.calls: Counter[str] = Counter()
        self._clients: dict[str, Any] = {}

    @property
    def config(self) -> Config:
        """The connection's botocore config, with throttling retries unless it sets its own."""
        return with_default_retries(self.conn_config.botocore_config)

    def client(self, service: str) -> Any:
        """A boto3 client of ``service`` on this connection (one per service), its calls counted."""
        if service not in self._clients:
            client = self.get_session().client(
                service,
                endpoint_url=self.conn_config.get_service_endpoint_url(service_name=service),
                config=self.config,
                verify=self.verify,
            )
            client.meta.events.register("before-call", self._count)
            self._clients[service] = client
        return self._clients[service]

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    # ------------------------------------------------------------------ runs

    def describe_runs(self, names: Sequence[str]) -> list[SweepRun]:
        """One :class:`SweepRun` per training job name (``SageMakerApiError`` if one is missing)."""
        sagemaker = self.client("sagemaker")
        runs = []
        for name in names:
            try:
                runs.append(sweep_run(sagemaker.describe_training_job(TrainingJobName=name)))
            except ClientError as error:
                raise api_error(error, "DescribeTrainingJob") from error
        return runs

    # ------------------------------------------------------------------ series

    def log_series(self, run: SweepRun, *, step_regex: str | None = DEFAULT_STEP_REGEX) -> pd.DataFrame:
        """The points of the job's CloudWatch Logs (every stream, every page) its definitions match."""
        if not run.metric_definitions:
            return series.empty_frame()
        tailer = JobLogTailer(self.client("logs"), KINDS[JobKind.TRAINING].log_group, run.job)
        events: list[dict[str, Any]] = []
        while lines := tailer.poll():  # a poll reads a bounded number of pages per stream
            events += [
                {"logStreamName": x.stream, "timestamp": x.timestamp, "message": x.message} for x in lines
            ]
        return series.from_log_events(
            events, run.metric_definitions, run=run.run, job=run.job, step_regex=step_regex
        )

    def json_series(self, run: SweepRun, uri: str) -> pd.DataFrame:
        """The points of a metrics JSON in S3 (format: ``series.from_metrics_json``); none if absent."""
        bucket, key = parse_s3_uri(uri)
        try:
            body = self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                self.log.info("No metrics JSON at %s for job %s", uri, run.job)
                return series.empty_frame()
            raise api_error(error, "GetObject") from error
        try:
            return series.from_metrics_json(json.loads(body), run=run.run, job=run.job)
        except ValueError as error:
            self.log.warning("Metrics JSON %s of job %s ignored: %s", uri, run.job, error)
            return series.empty_frame()

    def collect(
        self,
        runs: Sequence[SweepRun],
        *,
        step_regex: str | None = DEFAULT_STEP_REGEX,
        metrics_json: str | None = None,
    ) -> pd.DataFrame:
        """The merged series of ``runs``: logs, then the metrics JSON (``{job}`` in the URI).

        A log source that cannot be read is logged and skipped: the run is drawn without it.
        """
        frames = []
        for run in runs:
            try:
                frames.append(self.log_series(run, step_regex=step_regex))
            except ClientError as error:
                self.log.warning("CloudWatch Logs of job %s not read: %s", run.job, error)
            if metrics_json:
                frames.append(self.json_series(run, metrics_json.replace("{job}", run.job)))
        return series.merge(frames)

    def own_credentials(self) -> tuple[str, ...]:
        """This connection's access key id, secret key and session token, to keep out of reports."""
        credentials = self.get_session().get_credentials()
        if credentials is None:
            return ()
        frozen = credentials.get_frozen_credentials()
        return tuple(value for value in (frozen.access_key, frozen.secret_key, frozen.token) if value)

    def location(self) -> tuple[str, str]:
        """(partition, region) of this connection, for console links."""
        return self.conn_partition, self.conn_region_name

    # ------------------------------------------------------------------ S3

    def upload(self, uri: str, body: bytes, content_type: str) -> str:
        """Write ``body`` to ``uri`` with its Content-Type; returns the URI."""
        bucket, key = parse_s3_uri(uri)
        try:
            self.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        except ClientError as error:
            raise api_error(error, "PutObject") from error
        return uri


def metrics_hook(aws: AwsArgs) -> SageMakerMetricsHook:
    """The hook for an operator's AWS arguments."""
    return SageMakerMetricsHook(**aws.hook_kwargs())
