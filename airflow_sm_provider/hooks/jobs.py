"""Create (idempotently), describe, stop and batch-poll SageMaker jobs.

Idempotence: :meth:`SageMakerJobsHook.start_job` derives the job's name from the user's name
and the task's :class:`~airflow_sm_provider.naming.JobIdentity`, so a retried task looks up the
job its earlier try started before creating anything. A job found under our name must carry our
identity tag (a stranger's job is never adopted); a running one is attached to, a completed one
with the same config hash is reused (unless ``force_new``), and a failed or stopped one (or a
completed one with another config) moves on to the next deterministic name.

Errors: every ``ClientError`` is re-raised as :class:`SageMakerApiError` with the AWS code and
message. Throttling is retried by botocore (``adaptive`` retry mode, 10 attempts, unless the
connection or ``config`` sets ``retries``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.config import Config
from botocore.exceptions import ClientError

from airflow_sm_provider.aws_args import AwsArgs
from airflow_sm_provider.errors import (
    JobNamesExhaustedError,
    JobOwnershipError,
    SageMakerApiError,
    is_not_found,
    is_not_stoppable,
)
from airflow_sm_provider.job_kinds import KINDS, JobKind, Outcome, can_attach, classify
from airflow_sm_provider.naming import (
    CONFIG_HASH_TAG,
    IDENTITY_TAG,
    TAG_PREFIX,
    JobIdentity,
    config_hash,
    identity_tags,
    job_name,
)
from airflow_sm_provider.status_poll import JobState, denied_warning, run_poll

__all__ = ["SageMakerJobsHook", "StartedJob", "api_error", "jobs_hook"]

#: Read-only: botocore rewrites the ``retries`` dict it is given (max_attempts -> total_max_attempts).
DEFAULT_RETRIES: Mapping[str, object] = MappingProxyType({"mode": "adaptive", "max_attempts": 10})
#: How many deterministic names a task instance may go through (one per failed/stopped try).
MAX_NAME_ATTEMPTS = 100


@dataclass(frozen=True)
class StartedJob:
    """The job a task runs: created now, attached to (still running) or reused (completed)."""

    name: str
    arn: str
    action: Literal["created", "attached", "reused"]


def api_error(error: ClientError, operation: str) -> SageMakerApiError:
    """Our exception for a botocore ``ClientError``, keeping its code and message."""
    details = error.response.get("Error", {})
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return SageMakerApiError(
        operation, details.get("Code", "Unknown"), details.get("Message", str(error)), status
    )


def with_default_retries(config: Config | None) -> Config:
    """``config`` with botocore's adaptive retry mode unless it already sets ``retries``."""
    config = config or Config()
    if config.retries:
        return config
    return config.merge(Config(retries=dict(DEFAULT_RETRIES)))  # a copy each time: botocore edits it


class SageMakerJobsHook(AwsBaseHook):
    """SageMaker jobs through the Amazon provider's AWS connection (``aws_conn_id``).

    :param aws_conn_id: Airflow AWS connection; its ``endpoint_url`` may point at the local engine.
    :param region_name: AWS region; default from the connection or boto3.
    :param verify: TLS verification for boto3 (bool or CA bundle path).
    :param config: botocore ``Config`` (or its options as a dict).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "sagemaker"
        super().__init__(*args, **kwargs)
        #: Listing methods the connection's IAM policy denies; later polls describe instead.
        self.denied_listings: set[str] = set()

    @property
    def config(self) -> Config:
        """The connection's botocore config, with throttling retries unless it sets its own."""
        return with_default_retries(self.conn_config.botocore_config)

    # ------------------------------------------------------------------ calls

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One SageMaker API call by boto3 method name; ``ClientError`` -> ``SageMakerApiError``."""
        try:
            return getattr(self.conn, method)(**params)
        except ClientError as error:
            raise api_error(error, error.operation_name or method) from error

    def describe_job(self, kind: JobKind, name: str) -> dict[str, Any]:
        """The job's describe response."""
        spec = KINDS[JobKind(kind)]
        return self.call(spec.describe_method, **{spec.name_key: name})

    def find_job(self, kind: JobKind, name: str) -> dict[str, Any] | None:
        """The job's describe response, or None when no job has that name."""
        try:
            return self.describe_job(kind, name)
        except SageMakerApiError as error:
            if is_not_found(error.code, error.message):
                return None
            raise

    def stop_job(self, kind: JobKind, name: str) -> bool:
        """Ask SageMaker to stop the job; False when it is no longer running (or does not exist).

        Any other refusal (a malformed name, access denied) is raised.
        """
        spec = KINDS[JobKind(kind)]
        try:
            self.call(spec.stop_method, **{spec.name_key: name})
        except SageMakerApiError as error:
            if is_not_stoppable(error.code, error.message):
                self.log.info("Job %s not stopped: %s", name, error.message)
                return False
            raise
        return True

    def job_tags(self, arn: str) -> dict[str, str]:
        """The resource's tags as a dict."""
        tags: dict[str, str] = {}
        params: dict[str, Any] = {"ResourceArn": arn, "MaxResults": 100}
        while True:
            page = self.call("list_tags", **params)
            tags.update({t["Key"]: t.get("Value", "") for t in page.get("Tags") or []})
            if not page.get("NextToken"):
                return tags
            params["NextToken"] = page["NextToken"]

    def job_states(self, jobs: Sequence[tuple[JobKind, str]]) -> dict[str, JobState]:
        """Batched status of many jobs (see ``status_poll``), keyed by job name.

        A name must not be given as two kinds in one call (``ValueError``). Where the IAM policy
        denies Search / ListProcessingJobs, jobs are described one by one (logged once).
        """
        poll = run_poll(jobs, lambda call: self.call(call.method, **call.params), skip=self.denied_listings)
        for method, message in poll.denied.items():
            self.log.warning(denied_warning(method, message))
        self.denied_listings.update(poll.denied)
        return poll.states()

    # ------------------------------------------------------------------ start

    def start_job(
        self, kind: JobKind, config: Mapping[str, Any], identity: JobIdentity, *, force_new: bool = False
    ) -> StartedJob:
        """Create the job of this task instance, or attach to / reuse the one an earlier try made.

        :param config: the Create request in the API's shape; its job name is the readable prefix.
        :param force_new: start a new job even when a completed one has the same config.
        """
        kind = JobKind(kind)
        spec = KINDS[kind]
        prefix = str(config.get(spec.name_key) or kind.value)
        fingerprint = config_hash({k: v for k, v in config.items() if k != spec.name_key})
        attempt, races = 1, 0
        while attempt <= MAX_NAME_ATTEMPTS:
            name = job_name(prefix, identity, "" if attempt == 1 else str(attempt))
            describe = self.find_job(kind, name)
            if describe is None:
                try:
                    arn = self._create(kind, config, name, identity, fingerprint)
                except SageMakerApiError as error:
                    races += 1
                    if error.code == "ResourceInUse" and races <= 3:  # created meanwhile: look again
                        continue
                    raise
                return StartedJob(name, arn, "created")
            arn = describe[spec.arn_key]
            tags = self._own_tags(kind, name, arn, identity)
            status, secondary = describe.get(spec.status_key), describe.get("SecondaryStatus")
            same_config = tags.get(CONFIG_HASH_TAG) == fingerprint
            if can_attach(kind, status, secondary):
                if not same_config:
                    self.log.warning("Attaching to running job %s although its config differs", name)
                return StartedJob(name, arn, "attached")
            result, _ = classify(kind, status, secondary)
            if result == Outcome.SUCCEEDED and same_config and not force_new:
                return StartedJob(name, arn, "reused")
            self.log.info(
                "Job %s of an earlier try is %s%s; starting the next attempt",
                name,
                status,
                "" if same_config else " with another config",
            )
            attempt += 1
        raise JobNamesExhaustedError(f"gave up after {MAX_NAME_ATTEMPTS} job names for {identity.key()}")

    def latest_job(self, kind: JobKind, prefix: str, identity: JobIdentity) -> dict[str, Any] | None:
        """The describe of the last job this task instance started, or None if it started none.

        Walks the same deterministic names as :meth:`start_job` (one per try that ended without
        success) and creates nothing: how a task that lost track of its job (resumed without its
        trigger's event) finds it again. A job under our name without our identity tag raises
        ``JobOwnershipError``.
        """
        kind = JobKind(kind)
        found = None
        for attempt in range(1, MAX_NAME_ATTEMPTS + 1):
            name = job_name(prefix, identity, "" if attempt == 1 else str(attempt))
            describe = self.find_job(kind, name)
            if describe is None:
                break
            self._own_tags(kind, name, describe[KINDS[kind].arn_key], identity)
            found = describe
        return found

    def _own_tags(self, kind: JobKind, name: str, arn: str, identity: JobIdentity) -> dict[str, str]:
        """The job's tags, after checking it carries this task's identity (else ``JobOwnershipError``)."""
        tags = self.job_tags(arn)
        if tags.get(IDENTITY_TAG) != identity.digest():
            raise JobOwnershipError(
                f"SageMaker {kind.value} job {name} exists but was not started by this task "
                f"({identity.dag_id}.{identity.task_id}, run {identity.run_id}, map index "
                f"{identity.map_index}, namespace {identity.namespace}); refusing to adopt it"
            )
        return tags

    def _create(
        self, kind: JobKind, config: Mapping[str, Any], name: str, identity: JobIdentity, fingerprint: str
    ) -> str:
        spec = KINDS[kind]
        user_tags = [t for t in config.get("Tags") or [] if not str(t.get("Key", "")).startswith(TAG_PREFIX)]
        request = {**config, spec.name_key: name, "Tags": [*user_tags, *identity_tags(identity, fingerprint)]}
        return self.call(spec.create_method, **request)[spec.arn_key]


def jobs_hook(aws: AwsArgs) -> SageMakerJobsHook:
    """The hook for an operator's, sensor's or trigger's AWS arguments."""
    return SageMakerJobsHook(**aws.hook_kwargs())
