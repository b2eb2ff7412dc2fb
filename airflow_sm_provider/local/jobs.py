"""Training and processing jobs of the local engine: API handlers, scheduling, persistence.

Requests arrive already validated against botocore's service model; the handlers check the
service rules the model cannot express (unique names, spot rules, what the engine can run),
write the job record to the Store (kind "TrainingJob"/"ProcessingJob") and start one thread
per job. The thread waits for a job slot (FIFO, ``max_concurrent_jobs``; a training job waits
with SecondaryStatus Pending), runs the job through :mod:`runner` and applies lifecycle events
to the record. Records are describe-shaped dicts; :func:`to_describe_training` and
:func:`to_describe_processing` pick the response fields explicitly.

Each running job gets a random token and fake, job-scoped credentials, served by the engine at
``/_engine/credentials/<job>`` (:meth:`JobsBackend.job_credentials`) the way SageMaker serves a
job's role. :meth:`JobsBackend.interrupt` simulates a spot interruption of a managed spot job so
that resuming from checkpoints can be tested. Job directories stay in ``<data dir>/jobs`` after
the job ends, for debugging. A running job's record keeps its process group (with the leader's
start time), so that after the engine dies :meth:`JobsBackend.recover` can end what it left
running, and only that.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import re
import secrets
import string
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partialmethod
from typing import Any, Literal

from airflow_sm_provider.local import lifecycle
from airflow_sm_provider.local.context import EngineContext
from airflow_sm_provider.local.errors import ResourceInUse, ValidationException
from airflow_sm_provider.local.lifecycle import Event, IllegalTransition
from airflow_sm_provider.local.runner import (
    Control,
    JobFailure,
    Outcome,
    ProcessGroup,
    ProcessingRun,
    RunResult,
    RunSettings,
    TrainingRun,
    end_process_groups,
    is_container_path,
    mount_namespace_available,
)
from airflow_sm_provider.local.runtimes import RuntimeSpec, resolve_runtime
from airflow_sm_provider.local.store import AlreadyExists, Record

log = logging.getLogger(__name__)

TRAINING = "TrainingJob"
PROCESSING = "ProcessingJob"
DEFAULT_TRAINING_RUNTIME = 24 * 3600  # "The default value is 1 day."
RESTART_REASON = "InternalServerError: the local engine restarted while the job was running"
SHUTDOWN_REASON = "InternalServerError: the local engine shut down while the job was running"
_CREDENTIALS_TTL = 6 * 3600
_PROCESS_GROUP = "_ProcessGroup"  # engine-only record field: [pgid, start ticks] of the running job

_TRAINING_FIELDS = (
    "TrainingJobName", "TrainingJobArn", "ModelArtifacts", "TrainingJobStatus", "SecondaryStatus",
    "FailureReason", "HyperParameters", "AlgorithmSpecification", "RoleArn", "InputDataConfig",
    "OutputDataConfig", "ResourceConfig", "VpcConfig", "StoppingCondition", "CreationTime",
    "TrainingStartTime", "TrainingEndTime", "LastModifiedTime", "SecondaryStatusTransitions",
    "FinalMetricDataList", "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption",
    "EnableManagedSpotTraining", "CheckpointConfig", "TrainingTimeInSeconds", "BillableTimeInSeconds",
    "DebugHookConfig", "ExperimentConfig", "DebugRuleConfigurations", "TensorBoardOutputConfig",
    "ProfilerConfig", "Environment", "RetryStrategy",
)  # fmt: skip
_TRAINING_SUMMARY_FIELDS = (
    "TrainingJobName", "TrainingJobArn", "CreationTime", "TrainingEndTime", "LastModifiedTime",
    "TrainingJobStatus", "SecondaryStatus",
)  # fmt: skip
_PROCESSING_FIELDS = (
    "ProcessingInputs", "ProcessingOutputConfig", "ProcessingJobName", "ProcessingResources",
    "StoppingCondition", "AppSpecification", "Environment", "NetworkConfig", "RoleArn",
    "ExperimentConfig", "ProcessingJobArn", "ProcessingJobStatus", "ExitMessage", "FailureReason",
    "ProcessingEndTime", "ProcessingStartTime", "LastModifiedTime", "CreationTime",
)  # fmt: skip
_PROCESSING_SUMMARY_FIELDS = (
    "ProcessingJobName", "ProcessingJobArn", "CreationTime", "ProcessingEndTime", "LastModifiedTime",
    "ProcessingJobStatus", "FailureReason", "ExitMessage",
)  # fmt: skip


def _pick(record: Record, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: record[name] for name in fields if name in record}


@dataclass(frozen=True)
class _Kind:
    """What the API handlers of one job kind differ in; keys follow the API's ``<kind>Name`` form."""

    kind: str  # the Store kind and the API's noun, e.g. "TrainingJob"
    word: Literal[
        "training", "processing"
    ]  # in messages, the ARN's resource type and the experiments job type
    fields: tuple[str, ...]
    summary_fields: tuple[str, ...]
    terminal: frozenset[str]
    new_state: Callable[[float], Record]
    advance: Callable[..., Record]

    @property
    def name_key(self) -> str:
        return f"{self.kind}Name"

    @property
    def arn_key(self) -> str:
        return f"{self.kind}Arn"

    @property
    def status_key(self) -> str:
        return f"{self.kind}Status"


_KINDS = {
    TRAINING: _Kind(
        TRAINING, "training", _TRAINING_FIELDS, _TRAINING_SUMMARY_FIELDS,
        frozenset(s.value for s in lifecycle.TRAINING_TERMINAL),
        lifecycle.new_training_state, lifecycle.advance_training,
    ),
    PROCESSING: _Kind(
        PROCESSING, "processing", _PROCESSING_FIELDS, _PROCESSING_SUMMARY_FIELDS,
        frozenset(s.value for s in lifecycle.PROCESSING_TERMINAL),
        lifecycle.new_processing_state, lifecycle.advance_processing,
    ),
}  # fmt: skip


def to_describe_training(record: Record) -> dict[str, Any]:
    """DescribeTrainingJob response of a job record."""
    return _pick(record, _TRAINING_FIELDS)


def to_describe_processing(record: Record) -> dict[str, Any]:
    """DescribeProcessingJob response of a job record."""
    return _pick(record, _PROCESSING_FIELDS)


def run_component_name(experiment_config: Mapping[str, str]) -> dict[str, str]:
    """ExperimentConfig with RunName as the run's trial component, ``<experiment>-<run>`` lower case.

    That is the form the SageMaker SDK sends and what ``load_run()`` inside a job parses back;
    a bare run name given by hand is brought to that form.
    """
    config = dict(experiment_config)
    run, experiment = config.get("RunName"), config.get("ExperimentName")
    if run and experiment:
        prefix = f"{experiment.lower()}-"
        config["RunName"] = run.lower() if run.lower().startswith(prefix) else prefix + run.lower()
    return config


class _Slots:
    """At most ``limit`` jobs hold a slot; the others wait in FIFO order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running: set[str] = set()
        self._waiting: deque[str] = deque()
        self._cond = threading.Condition()

    def acquire(self, name: str, control: Control, on_queue: Callable[[], None]) -> bool:
        """Take a slot; False if the job must end while waiting (stop, time limit)."""
        with self._cond:
            self._waiting.append(name)
            queued = False
            try:
                while not (len(self._running) < self.limit and self._waiting[0] == name):
                    if control.check() is not None:
                        return False
                    if not queued:
                        queued = True
                        self._cond.release()
                        try:
                            on_queue()
                        finally:
                            self._cond.acquire()
                        continue
                    self._cond.wait(timeout=0.1)
                self._running.add(name)
                return True
            finally:
                self._waiting.remove(name)
                self._cond.notify_all()

    def release(self, name: str) -> None:
        with self._cond:
            self._running.discard(name)
            self._cond.notify_all()


@dataclass
class _Active:
    """In-memory state of a job whose thread is alive."""

    control: Control
    token: str
    credentials: dict[str, str]
    thread: threading.Thread | None = None
    shutting_down: bool = False
    run_seconds: float = 0.0  # time spent holding a slot, across spot restarts


def _fake_credentials() -> dict[str, str]:
    alphabet = string.ascii_uppercase + string.digits
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=_CREDENTIALS_TTL)
    return {
        "AccessKeyId": "ASIA" + "".join(secrets.choice(alphabet) for _ in range(16)),
        "SecretAccessKey": secrets.token_urlsafe(30),
        "Token": secrets.token_urlsafe(48),
        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _page(items: list[dict[str, Any]], params: Mapping[str, Any], key: str) -> dict[str, Any]:
    """One page of a List call (offset NextToken)."""
    start = 0
    if token := params.get("NextToken"):
        try:
            start = int(json.loads(base64.b64decode(token))["offset"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValidationException("Invalid pagination token") from err
    size = int(params.get("MaxResults") or 10)
    page = {key: items[start : start + size]}
    if start + size < len(items):
        page["NextToken"] = base64.b64encode(json.dumps({"offset": start + size}).encode()).decode()
    return page


def _filter_sort(
    records: list[Record], params: Mapping[str, Any], status_key: str, name_key: str
) -> list[Record]:
    def keep(r: Record) -> bool:
        checks = (
            ("CreationTimeAfter", lambda v: r["CreationTime"] > v),
            ("CreationTimeBefore", lambda v: r["CreationTime"] < v),
            ("LastModifiedTimeAfter", lambda v: r["LastModifiedTime"] > v),
            ("LastModifiedTimeBefore", lambda v: r["LastModifiedTime"] < v),
            ("NameContains", lambda v: v.lower() in r[name_key].lower()),
            ("StatusEquals", lambda v: r[status_key] == v),
        )
        return all(check(params[k]) for k, check in checks if params.get(k) is not None)

    sort_key = {"Name": name_key, "Status": status_key}.get(
        params.get("SortBy", "CreationTime"), "CreationTime"
    )
    return sorted(
        (r for r in records if keep(r)),
        key=lambda r: (r[sort_key], r["CreationTime"]),
        reverse=params.get("SortOrder", "Ascending") == "Descending",
    )


def _s3_only(uri: str, field_name: str) -> None:
    if not uri.startswith("s3://"):
        raise ValidationException(f"{field_name} {uri}: the local engine reads and writes s3:// URIs only")


class JobsBackend:
    """SageMaker training and processing jobs, run for real as local subprocesses."""

    def __init__(
        self,
        ctx: EngineContext,
        experiments: Any = None,
        max_concurrent_jobs: int | None = None,
        runtimes: Mapping[str, RuntimeSpec] | None = None,
        *,
        stop_grace_seconds: float = 2.0,
        mount_namespace: bool | None = None,
    ) -> None:
        """``mount_namespace``: None detects whether jobs can see their directory at /opt/ml."""
        self.ctx = ctx
        self.experiments = experiments
        self.runtimes = runtimes
        self.stop_grace_seconds = stop_grace_seconds
        self._mount_namespace = mount_namespace
        self._slots = _Slots(max_concurrent_jobs or os.cpu_count() or 1)
        self._active: dict[str, _Active] = {}  # key: (kind, lower-case name)
        self._lock = threading.Lock()

    def operations(self) -> dict[str, Callable[[dict], dict]]:
        return {
            "CreateTrainingJob": self.create_training_job,
            "DescribeTrainingJob": self.describe_training_job,
            "ListTrainingJobs": self.list_training_jobs,
            "StopTrainingJob": self.stop_training_job,
            "DeleteTrainingJob": self.delete_training_job,
            "CreateProcessingJob": self.create_processing_job,
            "DescribeProcessingJob": self.describe_processing_job,
            "ListProcessingJobs": self.list_processing_jobs,
            "StopProcessingJob": self.stop_processing_job,
            "AddTags": self.add_tags,
            "ListTags": self.list_tags,
            "DeleteTags": self.delete_tags,
        }

    # -- settings --------------------------------------------------------------------------
    @property
    def settings(self) -> RunSettings:
        if self._mount_namespace is None:
            self._mount_namespace = mount_namespace_available()
        return RunSettings(
            endpoint_url=self.ctx.endpoint_url,
            region=self.ctx.region,
            data_dir=self.ctx.data_dir,
            stop_grace_seconds=self.stop_grace_seconds,
            mount_namespace=self._mount_namespace,
            sdk_config=self.ctx.sdk_config_path(),
        )

    # -- training --------------------------------------------------------------------------
    def create_training_job(self, params: dict) -> dict:
        self._check_training(params)
        defaults = {
            "StoppingCondition": params.get("StoppingCondition")
            or {"MaxRuntimeInSeconds": DEFAULT_TRAINING_RUNTIME},
            "EnableNetworkIsolation": params.get("EnableNetworkIsolation", False),
            "EnableInterContainerTrafficEncryption": params.get(
                "EnableInterContainerTrafficEncryption", False
            ),
            "EnableManagedSpotTraining": params.get("EnableManagedSpotTraining", False),
        }
        return self._create(_KINDS[TRAINING], params, defaults, self._run_training)

    def _create(
        self, k: _Kind, params: dict, defaults: Mapping[str, Any], target: Callable[[str, _Active], None]
    ) -> dict:
        """Store a new job and start it; a name taken (even by a concurrent create) is ResourceInUse.

        The record goes in before the trial component, so a refused duplicate creates none; if
        linking refuses the job (an unknown trial), the record goes again.
        """
        name = params[k.name_key]
        arn = self.ctx.arn(f"{k.word}-job", name)
        now = self.ctx.now()
        record: Record = {key: v for key, v in params.items() if key != "Tags"}
        record.update({k.arn_key: arn, "CreationTime": now, **defaults, "Tags": params.get("Tags", [])})
        record.update(k.new_state(now))
        if params.get("ExperimentConfig"):
            record["ExperimentConfig"] = run_component_name(params["ExperimentConfig"])
        try:
            self.ctx.store.insert(k.kind, name, record)
        except AlreadyExists as err:
            raise ResourceInUse(
                f"{k.word.capitalize()} job names must be unique within an AWS account and region, and a "
                f"{k.word} job with this name already exists ({arn})"
            ) from err
        try:
            self._link_experiment(k.word, record)
        except BaseException:
            self.ctx.store.delete(k.kind, name)
            raise
        self._start(k.kind, name, target)
        return {k.arn_key: arn}

    def _describe(self, k: _Kind, params: dict) -> dict:
        return _pick(self._get(k.kind, params[k.name_key]), k.fields)

    def _list(self, k: _Kind, params: dict) -> dict:
        records = _filter_sort(self.ctx.store.list(k.kind), params, k.status_key, k.name_key)
        return _page([_pick(r, k.summary_fields) for r in records], params, f"{k.kind}Summaries")

    def _stop(self, k: _Kind, params: dict) -> dict:
        name = params[k.name_key]
        self._get(k.kind, name)
        try:
            self._advance(k.kind, name, Event.STOP, strict=True)
        except IllegalTransition as err:
            status = self._get(k.kind, name)[k.status_key]
            raise ValidationException(
                f"The request was rejected because the {k.word} job is in status {status}."
            ) from err
        self._signal_stop(k.kind, name)
        return {}

    describe_training_job = partialmethod(_describe, _KINDS[TRAINING])
    list_training_jobs = partialmethod(_list, _KINDS[TRAINING])
    stop_training_job = partialmethod(_stop, _KINDS[TRAINING])
    describe_processing_job = partialmethod(_describe, _KINDS[PROCESSING])
    list_processing_jobs = partialmethod(_list, _KINDS[PROCESSING])
    stop_processing_job = partialmethod(_stop, _KINDS[PROCESSING])

    def _check_training(self, params: Mapping[str, Any]) -> None:
        """Service rules the model cannot express, and what the engine cannot run."""
        algo = params.get("AlgorithmSpecification")
        if not algo or not algo.get("TrainingImage"):
            raise ValidationException("AlgorithmSpecification.TrainingImage is required by the local engine")
        if algo.get("TrainingInputMode", "File") == "Pipe" or any(
            c.get("InputMode") == "Pipe" for c in params.get("InputDataConfig", [])
        ):
            raise ValidationException("Pipe input mode is not supported by the local engine; use File")
        resources = params.get("ResourceConfig")
        if not resources:
            raise ValidationException("ResourceConfig is required")
        if resources.get("InstanceCount", 1) != 1:
            raise ValidationException(
                "The local engine runs one instance: ResourceConfig.InstanceCount must be 1"
            )
        names = [c["ChannelName"] for c in params.get("InputDataConfig", [])]
        if len(names) != len(set(names)):
            raise ValidationException("Channel names must be unique")
        for channel in params.get("InputDataConfig", []):
            source = channel["DataSource"].get("S3DataSource")
            if source is None:
                raise ValidationException("The local engine supports S3DataSource channels only")
            _s3_only(source["S3Uri"], "S3Uri")
        _s3_only(params["OutputDataConfig"]["S3OutputPath"], "S3OutputPath")
        stopping = params.get("StoppingCondition") or {}
        runtime, wait = stopping.get("MaxRuntimeInSeconds"), stopping.get("MaxWaitTimeInSeconds")
        if params.get("EnableManagedSpotTraining"):
            if wait is None:
                raise ValidationException("MaxWaitTimeInSeconds is required for managed spot training")
            if wait < (runtime or DEFAULT_TRAINING_RUNTIME):
                raise ValidationException(
                    "MaxWaitTimeInSeconds must be greater than or equal to MaxRuntimeInSeconds"
                )
        elif wait is not None:
            raise ValidationException("MaxWaitTimeInSeconds is only valid with EnableManagedSpotTraining")
        checkpoint = params.get("CheckpointConfig")
        if checkpoint:
            _s3_only(checkpoint["S3Uri"], "CheckpointConfig.S3Uri")
            if checkpoint.get("LocalPath") and not is_container_path(checkpoint["LocalPath"]):
                raise ValidationException(
                    "The local engine supports a CheckpointConfig.LocalPath under /opt/ml"
                )
        for definition in algo.get("MetricDefinitions", []):
            try:
                re.compile(definition["Regex"])
            except re.error as err:
                raise ValidationException(
                    f"Invalid regular expression for metric {definition['Name']}: {err}"
                ) from err

    def delete_training_job(self, params: dict) -> dict:
        name = params["TrainingJobName"]
        record = self._get(TRAINING, name)
        if record["TrainingJobStatus"] not in _KINDS[TRAINING].terminal:
            raise ValidationException(
                f"The training job {name} is in status {record['TrainingJobStatus']}; "
                "only a completed, failed or stopped training job can be deleted."
            )
        self.ctx.store.delete(TRAINING, name)
        return {}

    def interrupt(self, job_name: str) -> None:
        """Simulate a spot interruption: the job checkpoints, stops, and restarts from S3 checkpoints."""
        record = self._get(TRAINING, job_name)
        if not record.get("EnableManagedSpotTraining"):
            raise ValidationException(f"Training job {job_name} is not a managed spot training job")
        active = self._active.get(f"{TRAINING}/{job_name.lower()}")
        if active is None or record["SecondaryStatus"] not in ("Downloading", "Training"):
            raise ValidationException(f"Training job {job_name} is not running")
        active.control.interrupt.set()

    def search_records_training(self) -> list[dict[str, Any]]:
        """DescribeTrainingJob-shaped records with their Tags, for Search."""
        return [{**to_describe_training(r), "Tags": r.get("Tags", [])} for r in self.ctx.store.iter(TRAINING)]

    # -- processing ------------------------------------------------------------------------
    def create_processing_job(self, params: dict) -> dict:
        self._check_processing(params)
        return self._create(_KINDS[PROCESSING], params, {}, self._run_processing)

    def _check_processing(self, params: Mapping[str, Any]) -> None:
        if params["ProcessingResources"]["ClusterConfig"].get("InstanceCount", 1) != 1:
            raise ValidationException("The local engine runs one instance: InstanceCount must be 1")
        if not params["AppSpecification"].get("ContainerEntrypoint"):
            raise ValidationException(
                "The local engine runs no container images: AppSpecification.ContainerEntrypoint is required"
            )
        inputs = params.get("ProcessingInputs", [])
        outputs = (params.get("ProcessingOutputConfig") or {}).get("Outputs", [])
        for label, items in (("input", inputs), ("output", outputs)):
            names = [i.get("InputName") or i.get("OutputName") for i in items]
            if len(names) != len(set(names)):
                raise ValidationException(f"Processing {label} names must be unique")
        for item in inputs:
            if "S3Input" not in item:
                raise ValidationException("The local engine supports S3Input processing inputs only")
        for item, key in [(i["S3Input"], "S3Uri") for i in inputs] + [
            (o["S3Output"], "S3Uri") for o in outputs if "S3Output" in o
        ]:
            _s3_only(item[key], key)
            path = item.get("LocalPath", "")
            if not (path.startswith("/opt/ml/processing/") and is_container_path(path)):
                raise ValidationException(
                    f"LocalPath {path} must be an absolute path under /opt/ml/processing/"
                )

    # -- tags ------------------------------------------------------------------------------
    def _experiments_own(self, arn: str) -> bool:
        """Experiments, trials and trial components keep their tags in the experiments backend."""
        return self.experiments is not None and bool(self.experiments.owns_arn(arn))

    def _tagged(self, arn: str) -> tuple[str, str]:
        """Store kind and name of a job's ARN; its tags live in the record's ``Tags`` list."""
        match = re.fullmatch(r"arn:aws[a-z-]*:sagemaker:[^:]*:\d*:(training-job|processing-job)/(.+)", arn)
        if match is None:
            raise ValidationException(f"The local engine cannot tag resource {arn}")
        kind = TRAINING if match.group(1) == "training-job" else PROCESSING
        if self.ctx.store.get(kind, match.group(2)) is None:
            raise ValidationException(f"Resource {arn} does not exist")
        return kind, match.group(2)

    def add_tags(self, params: dict) -> dict:
        arn, tags = params["ResourceArn"], params["Tags"]
        if self._experiments_own(arn):
            return {"Tags": self.experiments.add_tags(arn, tags)}
        kind, name = self._tagged(arn)

        def change(record: Record) -> None:
            merged = {t["Key"]: t["Value"] for t in record.get("Tags", [])}
            merged.update({t["Key"]: t.get("Value", "") for t in tags})
            if len(merged) > 50:
                raise ValidationException("A resource can have at most 50 tags")
            record["Tags"] = [{"Key": k, "Value": v} for k, v in merged.items()]

        self.ctx.store.update(kind, name, change)
        return {"Tags": tags}

    def list_tags(self, params: dict) -> dict:
        arn = params["ResourceArn"]
        if self._experiments_own(arn):
            tags = self.experiments.list_tags(arn)
        else:
            tags = (self.ctx.store.get(*self._tagged(arn)) or {}).get("Tags", [])
        return _page(list(tags), {**params, "MaxResults": params.get("MaxResults") or 50}, "Tags")

    def delete_tags(self, params: dict) -> dict:
        arn, keys = params["ResourceArn"], params["TagKeys"]
        if self._experiments_own(arn):
            self.experiments.delete_tags(arn, keys)
            return {}
        kind, name = self._tagged(arn)
        self.ctx.store.update(
            kind, name, lambda r: r.update(Tags=[t for t in r.get("Tags", []) if t["Key"] not in set(keys)])
        )
        return {}

    # -- credentials, restart, shutdown ----------------------------------------------------
    def job_credentials(self, job_name: str, token: str) -> dict[str, str] | None:
        """Container credentials of a running job, if ``token`` is that job's token."""
        for kind in (TRAINING, PROCESSING):
            active = self._active.get(f"{kind}/{job_name.lower()}")
            if active is not None and secrets.compare_digest(active.token.encode(), token.encode()):
                return dict(active.credentials)
        return None

    def recover(self) -> None:
        """After a restart, jobs that were running are Failed, and processes an engine that died
        left running are ended (SIGTERM, grace, SIGKILL) if they are still the jobs' own."""
        now = self.ctx.now()
        groups = []
        for k in _KINDS.values():
            for record in self.ctx.store.list(k.kind):
                if record[k.status_key] not in k.terminal:
                    if record.get(_PROCESS_GROUP):
                        groups.append(ProcessGroup(*record[_PROCESS_GROUP]))
                    failed = k.advance(record, Event.FAIL, now, failure_reason=RESTART_REASON)
                    self.ctx.store.put(k.kind, record[k.name_key], failed)
        end_process_groups(groups, self.stop_grace_seconds)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every running job (SIGTERM, grace, SIGKILL); their records say the engine shut down."""
        with self._lock:
            active = list(self._active.values())
        for job in active:
            job.shutting_down = True
            job.control.stop.set()
        deadline = time.monotonic() + timeout
        for job in active:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))

    # -- job threads -----------------------------------------------------------------------
    def _get(self, kind: str, name: str) -> Record:
        record = self.ctx.store.get(kind, name)
        if record is None:
            if kind == TRAINING:
                raise ValidationException("Requested resource not found.")
            raise ValidationException(f"Could not find requested job with name {name}")
        return record

    def _advance(self, kind: str, name: str, event: Event, *, strict: bool = False, **fields: Any) -> bool:
        """Apply a lifecycle event to a stored job; False (or IllegalTransition if strict) if illegal."""
        now = self.ctx.now()
        extra = {k: v for k, v in fields.items() if v is not None and k not in ("message", "reason", "exit")}

        def change(record: Record) -> Record:
            if kind == TRAINING:
                new = lifecycle.advance_training(
                    record, event, now, message=fields.get("message"), failure_reason=fields.get("reason")
                )
            else:
                new = lifecycle.advance_processing(
                    record, event, now, exit_message=fields.get("exit"), failure_reason=fields.get("reason")
                )
            new.update(extra)
            return new

        try:
            self.ctx.store.update(kind, name, change)
        except IllegalTransition:
            if strict:
                raise
            return False
        return True

    def _signal_stop(self, kind: str, name: str) -> None:
        active = self._active.get(f"{kind}/{name.lower()}")
        if active is not None:
            active.control.stop.set()
        else:  # no thread (cannot happen while the engine runs, kept for a consistent record)
            self._advance(kind, name, Event.STOPPED)

    def _start(self, kind: str, name: str, target: Callable[[str, _Active], None]) -> None:
        token = secrets.token_urlsafe(32)
        active = _Active(control=Control(), token=token, credentials=_fake_credentials())
        with self._lock:
            self._active[f"{kind}/{name.lower()}"] = active
        active.thread = threading.Thread(target=self._guard, args=(kind, name, target, active), daemon=True)
        active.thread.start()

    def _guard(self, kind: str, name: str, target: Callable[[str, _Active], None], active: _Active) -> None:
        try:
            target(name, active)
        except Exception:
            log.exception("job %s failed inside the engine", name)
            self._advance(
                kind, name, Event.FAIL, reason="InternalServerError: the local engine failed the job"
            )
        finally:
            with self._lock:
                self._active.pop(f"{kind}/{name.lower()}", None)

    def _job_run_args(self, kind: str, record: Record, active: _Active) -> dict[str, Any]:
        k = _KINDS[kind]
        name = record[k.name_key]
        image = (
            record["AlgorithmSpecification"]["TrainingImage"]
            if kind == TRAINING
            else record["AppSpecification"]["ImageUri"]
        )

        def remember(group: ProcessGroup) -> None:
            self.ctx.store.update(
                kind, name, lambda r: r.update({_PROCESS_GROUP: [group.pgid, group.start_ticks]})
            )

        return {
            "arn": record[k.arn_key],
            "on_process": remember,
            "job_dir": self.ctx.data_dir / "jobs" / kind / name,
            "settings": self.settings,
            "runtime": resolve_runtime(self.runtimes, image),
            "clients": self.ctx.client,
            "control": active.control,
            "credentials_uri": f"{self.ctx.endpoint_url}/_engine/credentials/{name}",
            "token": active.token,
        }

    def _run_training(self, name: str, active: _Active) -> None:
        record = self._get(TRAINING, name)
        stopping = record["StoppingCondition"]
        control = active.control
        if stopping.get("MaxWaitTimeInSeconds"):
            control.wait_deadline = time.monotonic() + stopping["MaxWaitTimeInSeconds"]
        budget = float(stopping.get("MaxRuntimeInSeconds") or DEFAULT_TRAINING_RUNTIME)
        while True:
            control.runtime_deadline = None  # the runtime budget does not run while waiting for a slot
            if not self._slots.acquire(name, control, lambda: self._advance(TRAINING, name, Event.QUEUE)):
                result = RunResult(control.check() or Outcome.STOPPED)
                break
            started = time.monotonic()
            try:
                if not self._advance(TRAINING, name, Event.DOWNLOAD):
                    result = RunResult(control.check() or Outcome.STOPPED)
                    break
                self._experiment_status("training", name)
                control.runtime_deadline = started + budget - active.run_seconds
                run = TrainingRun(
                    self._get(TRAINING, name),
                    report=lambda event: self._advance(TRAINING, name, event),
                    **self._job_run_args(TRAINING, record, active),
                )
                try:
                    result = run.run()
                except JobFailure as err:
                    result = RunResult(Outcome.FAILED, failure_reason=str(err))
            finally:
                active.run_seconds += time.monotonic() - started
                self._slots.release(name)
            if result.outcome is not Outcome.INTERRUPTED or control.stop.is_set():
                break
            control.interrupt.clear()
            self._advance(TRAINING, name, Event.INTERRUPT)
            self._advance(TRAINING, name, Event.RESTART)
        outputs: dict[str, Any] = {"FinalMetricDataList": result.final_metrics or None}
        if result.model_artifacts:
            outputs["ModelArtifacts"] = {"S3ModelArtifacts": result.model_artifacts}
        self._end(TRAINING, name, active, result, **outputs)

    def _run_processing(self, name: str, active: _Active) -> None:
        record = self._get(PROCESSING, name)
        control = active.control
        if not self._slots.acquire(name, control, lambda: None):
            result = RunResult(control.check() or Outcome.STOPPED)
        else:
            try:
                if record.get("StoppingCondition"):
                    limit = record["StoppingCondition"]["MaxRuntimeInSeconds"]
                    control.runtime_deadline = time.monotonic() + limit
                self.ctx.store.update(
                    PROCESSING, name, lambda r: lifecycle.mark_processing_started(r, self.ctx.now())
                )
                self._experiment_status("processing", name)
                run = ProcessingRun(
                    record, report=lambda event: None, **self._job_run_args(PROCESSING, record, active)
                )
                try:
                    result = run.run()
                except JobFailure as err:
                    result = RunResult(Outcome.FAILED, failure_reason=str(err))
            finally:
                self._slots.release(name)
        if result.outcome is Outcome.MAX_RUNTIME:
            limit = record["StoppingCondition"]["MaxRuntimeInSeconds"]
            result.failure_reason = f"Processing job exceeded MaxRuntimeInSeconds ({limit} s) and was stopped"
        self._end(PROCESSING, name, active, result, exit=result.exit_message)

    def _end(self, kind: str, name: str, active: _Active, result: RunResult, **fields: Any) -> None:
        """Apply the event that ends a job; whatever raced with it, the job ends terminal."""
        events = {
            Outcome.COMPLETED: Event.COMPLETE,
            Outcome.FAILED: Event.FAIL,
            Outcome.STOPPED: Event.STOPPED,
            Outcome.MAX_RUNTIME: Event.MAX_RUNTIME,
            Outcome.MAX_WAIT: Event.MAX_WAIT,
            Outcome.INTERRUPTED: Event.STOPPED,
        }
        reason = result.failure_reason
        event = events[result.outcome]
        if active.shutting_down and result.outcome is Outcome.STOPPED:
            event, reason = Event.FAIL, SHUTDOWN_REASON
        ended = (
            self._advance(kind, name, event, reason=reason, **fields)
            or self._advance(kind, name, Event.STOPPED, **fields)  # a stop raced with the end
            or self._advance(
                kind, name, Event.FAIL, reason=reason or f"InternalServerError: {event} failed", **fields
            )
        )
        if not ended:
            log.warning("job %s could not be ended by %s", name, event)
        record = self._get(kind, name)
        self._experiment_done(kind, record, result)

    # -- experiments -----------------------------------------------------------------------
    def _link_experiment(self, job_type: Literal["training", "processing"], record: Record) -> None:
        """Give the job its trial component (every job has one in SageMaker) and join its trial."""
        if self.experiments is None:
            return
        config = record.get("ExperimentConfig") or {}
        if job_type == "training":
            name, arn = record["TrainingJobName"], record["TrainingJobArn"]
            resources = record.get("ResourceConfig", {})
            parameters: dict[str, str | float] = {
                k: v
                for k, v in (
                    (k, _number_or_text(v)) for k, v in (record.get("HyperParameters") or {}).items()
                )
            }
            parameters.update(
                {
                    "SageMaker.InstanceType": resources.get("InstanceType", ""),
                    "SageMaker.InstanceCount": float(resources.get("InstanceCount", 1)),
                    "SageMaker.VolumeSizeInGB": float(resources.get("VolumeSizeInGB", 0)),
                }
            )
            inputs = {
                c["ChannelName"]: {"Value": c["DataSource"]["S3DataSource"]["S3Uri"]}
                for c in record.get("InputDataConfig", [])
            }
            inputs["SageMaker.ImageUri"] = {"Value": record["AlgorithmSpecification"]["TrainingImage"]}
        else:
            name, arn = record["ProcessingJobName"], record["ProcessingJobArn"]
            cluster = record["ProcessingResources"]["ClusterConfig"]
            parameters = {
                "SageMaker.InstanceType": cluster.get("InstanceType", ""),
                "SageMaker.InstanceCount": float(cluster.get("InstanceCount", 1)),
                "SageMaker.VolumeSizeInGB": float(cluster.get("VolumeSizeInGB", 0)),
            }
            inputs = {
                i["InputName"]: {"Value": i["S3Input"]["S3Uri"]} for i in record.get("ProcessingInputs", [])
            }
            inputs["SageMaker.ImageUri"] = {"Value": record["AppSpecification"]["ImageUri"]}
        self.experiments.link_job(job_type, name, arn, config, parameters, inputs, {})

    def _experiment_status(self, job_type: Literal["training", "processing"], name: str) -> None:
        """The job's trial component is InProgress from the moment the job holds an instance."""
        if self.experiments is None:
            return
        record = self._get(TRAINING if job_type == "training" else PROCESSING, name)
        start = record.get("TrainingStartTime") or record.get("ProcessingStartTime") or self.ctx.now()
        status = {"PrimaryStatus": "InProgress", "Message": "InProgress"}
        try:
            self.experiments.update_job_component(name, job_type, status, start, None, None, {})
        except Exception:
            log.exception("updating the trial component of job %s failed", name)

    def _experiment_done(self, kind: str, record: Record, result: RunResult) -> None:
        if self.experiments is None:
            return
        job_type: Literal["training", "processing"] = "training" if kind == TRAINING else "processing"
        name = record.get("TrainingJobName") or record["ProcessingJobName"]
        status = record.get("TrainingJobStatus") or record["ProcessingJobStatus"]
        start = record.get("TrainingStartTime") or record.get("ProcessingStartTime")
        end = record.get("TrainingEndTime") or record.get("ProcessingEndTime")
        outputs = dict(result.output_artifacts)
        if result.model_artifacts:
            outputs["SageMaker.ModelArtifact"] = {"Value": result.model_artifacts}
        message = record.get("FailureReason") or status
        try:
            self.experiments.update_job_component(
                name, job_type, {"PrimaryStatus": status, "Message": message}, start, end,
                result.metric_points or None, outputs,
            )  # fmt: skip
        except Exception:
            log.exception("updating the trial component of job %s failed", name)


def _number_or_text(value: str) -> str | float:
    try:
        return float(value)
    except ValueError:
        return value
