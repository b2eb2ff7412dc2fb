"""The one table of SageMaker job kinds, read by the hook, the trigger, the sensor and the operators.

Each kind names its API (create / describe / stop / list methods, name, ARN and status keys)
once, and :func:`classify` is the one place that turns a job's status into an
:class:`Outcome`. The vocabulary is botocore's service model: TrainingJobStatus InProgress /
Completed / Failed / Stopping / Stopped / Deleting with a SecondaryStatus; ProcessingJobStatus
without one. A user's stop is STOPPED (success only where the caller says ``stopped_ok``);
MaxRuntimeExceeded / MaxWaitTimeExceeded under Stopped are the job running out of time and
always FAILED; Interrupted (spot) is still RUNNING. A status this table does not know is
reported, never crashed on: it counts as RUNNING with a warning.

Waiting and attaching read the same statuses differently: a Stopping job is still RUNNING for
whoever waits on it (it is not over until Stopped), but a retried task must never attach to a
Stopping or Deleting job, which will not succeed; :func:`can_attach` says which jobs a retry may
adopt.

Pure: no AWS, no Airflow imports.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypedDict


def job_leaves(jobs: Any, where: str = "jobs") -> Iterator[tuple[str, Any]]:
    """``(where, item)`` for each job name or summary in ``jobs``, nested lists flattened.

    ``where`` locates the item for error messages (``jobs[1][0]``). A sequence is read whole, by
    slice: a mapped task's output is Airflow 3's lazy XCom sequence, whose iterator asks for
    items one at a time until one is missing, and Airflow logs that miss as ``[error] XCom not
    found ... offset=N`` in every successful run; a slice is one request, with no miss.
    """
    if isinstance(jobs, Mapping | str):
        yield where, jobs
    elif isinstance(jobs, Iterable):
        items = jobs[:] if isinstance(jobs, Sequence) else jobs
        for i, item in enumerate(items):
            yield from job_leaves(item, f"{where}[{i}]")
    else:
        raise ValueError(f"{where}: must be a job name, a job summary or a list of them, not {jobs!r}")


class JobKind(StrEnum):
    """The kinds of SageMaker job this provider runs and waits on."""

    TRAINING = "training"
    PROCESSING = "processing"


class Outcome(StrEnum):
    """Where a job stands, as far as waiting on it is concerned."""

    PENDING = "pending"  # not visible yet (Search/List lag behind Create)
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"  # stopped by a user; failure unless ``stopped_ok``

    @property
    def terminal(self) -> bool:
        return self in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.STOPPED)


@dataclass(frozen=True)
class JobKindSpec:
    """How one job kind is spelled in the SageMaker API (boto3 method names are snake case)."""

    kind: JobKind
    noun: str
    name_key: str
    arn_key: str
    status_key: str
    create_method: str
    describe_method: str
    stop_method: str
    list_method: str
    #: The key of the summaries in the list method's response.
    list_key: str
    log_group: str
    #: The console URL fragment of the kind's jobs: ``.../sagemaker/home?region=R#/<console_path>/<name>``.
    console_path: str
    #: Search ``Resource`` for batched status, or None where Search has none (processing: listed instead).
    search_resource: str | None


KINDS: Mapping[JobKind, JobKindSpec] = {
    JobKind.TRAINING: JobKindSpec(
        kind=JobKind.TRAINING,
        noun="TrainingJob",
        name_key="TrainingJobName",
        arn_key="TrainingJobArn",
        status_key="TrainingJobStatus",
        create_method="create_training_job",
        describe_method="describe_training_job",
        stop_method="stop_training_job",
        list_method="list_training_jobs",
        list_key="TrainingJobSummaries",
        log_group="/aws/sagemaker/TrainingJobs",
        console_path="jobs",
        search_resource="TrainingJob",
    ),
    JobKind.PROCESSING: JobKindSpec(
        kind=JobKind.PROCESSING,
        noun="ProcessingJob",
        name_key="ProcessingJobName",
        arn_key="ProcessingJobArn",
        status_key="ProcessingJobStatus",
        create_method="create_processing_job",
        describe_method="describe_processing_job",
        stop_method="stop_processing_job",
        list_method="list_processing_jobs",
        list_key="ProcessingJobSummaries",
        log_group="/aws/sagemaker/ProcessingJobs",
        console_path="processing-jobs",
        search_resource=None,
    ),
}

_STATUS: Mapping[JobKind, Mapping[str, Outcome]] = {
    JobKind.TRAINING: {
        "InProgress": Outcome.RUNNING,
        "Stopping": Outcome.RUNNING,  # not over until Stopped
        "Completed": Outcome.SUCCEEDED,
        "Failed": Outcome.FAILED,
        "Stopped": Outcome.STOPPED,
        "Deleting": Outcome.FAILED,  # going away: it will never report success
    },
    JobKind.PROCESSING: {
        "InProgress": Outcome.RUNNING,
        "Stopping": Outcome.RUNNING,
        "Completed": Outcome.SUCCEEDED,
        "Failed": Outcome.FAILED,
        "Stopped": Outcome.STOPPED,
    },
}
#: Statuses of a job on its way out: waited through, but never attached to by a retry.
ENDING_STATUSES = frozenset({"Stopping", "Deleting"})
#: Secondary statuses under Stopped that mean "ran out of time", not a user's stop.
OUT_OF_TIME = frozenset({"MaxRuntimeExceeded", "MaxWaitTimeExceeded"})
#: Every SecondaryStatus known when this was written (botocore's enum); others are reported.
KNOWN_SECONDARY = frozenset(
    {
        "Starting",
        "LaunchingMLInstances",
        "PreparingTrainingStack",
        "Downloading",
        "DownloadingTrainingImage",
        "Training",
        "Uploading",
        "Stopping",
        "Stopped",
        "MaxRuntimeExceeded",
        "Completed",
        "Failed",
        "Interrupted",
        "MaxWaitTimeExceeded",
        "Updating",
        "Restarting",
        "Pending",
    }
)


def classify(
    kind: JobKind, status: str | None, secondary_status: str | None = None
) -> tuple[Outcome, str | None]:
    """(outcome, warning) of a job's status; the warning names a value this table does not know."""
    outcome = _STATUS[JobKind(kind)].get(status or "")
    if outcome is None:
        return Outcome.RUNNING, f"unknown {KINDS[JobKind(kind)].status_key} {status!r}: still waiting"
    if outcome == Outcome.STOPPED and secondary_status in OUT_OF_TIME:
        outcome = Outcome.FAILED
    warning = None
    if secondary_status and secondary_status not in KNOWN_SECONDARY:
        warning = f"unknown SecondaryStatus {secondary_status!r} under {status}"
    return outcome, warning


def can_attach(kind: JobKind, status: str | None, secondary_status: str | None = None) -> bool:
    """Whether a retried task may attach to a job in this status: still running, not being stopped."""
    result, _ = classify(kind, status, secondary_status)
    return result in (Outcome.PENDING, Outcome.RUNNING) and status not in ENDING_STATUSES


def outcome(
    kind: JobKind, status: str | None, secondary_status: str | None = None, *, stopped_ok: bool = False
) -> Outcome:
    """The outcome of a status, with a user's stop counted as success when ``stopped_ok``."""
    result, _ = classify(kind, status, secondary_status)
    return Outcome.SUCCEEDED if result == Outcome.STOPPED and stopped_ok else result


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class JobSummary(TypedDict, total=False):
    """The XCom of one job (operators, sensor, trigger events; read by reports and the UI).

    Small and JSON-safe: names, ARNs, statuses, reasons and S3 URIs, never the describe
    response. :func:`job_summary` fills every key; a job that could not be described carries
    only ``kind``, ``name`` (and ``status`` / ``failure_reason`` when known).
    """

    kind: str  # a JobKind value
    name: str
    arn: str | None
    status: str | None
    secondary_status: str | None
    #: The last status message (training) or the exit message (processing).
    message: str | None
    failure_reason: str | None
    billable_seconds: int | None
    start_time: str | None  # ISO 8601
    end_time: str | None
    model_artifacts: str | None  # training: the model.tar.gz URI
    outputs: list[str]  # processing: the output S3 URIs
    #: A tracked training task's run (``tracking.base.RunRef.to_xcom()``: backend, experiment,
    #: run_name, record, arn); set by the operator, not by status polls.
    run: dict[str, str]


def job_summary(kind: JobKind, describe: Mapping[str, Any]) -> JobSummary:
    """The small, JSON-safe XCom of a job, from its describe (or Search) record.

    Every field is read with ``.get``: FailureReason, TrainingStartTime, ModelArtifacts and
    the rest are missing while a job runs or when it failed early.
    """
    kind = JobKind(kind)
    spec = KINDS[kind]
    summary = JobSummary(
        kind=kind.value,
        name=describe.get(spec.name_key),
        arn=describe.get(spec.arn_key),
        status=describe.get(spec.status_key),
        secondary_status=describe.get("SecondaryStatus"),
        message=None,
        failure_reason=describe.get("FailureReason"),
        billable_seconds=describe.get("BillableTimeInSeconds"),
        start_time=_iso(describe.get("TrainingStartTime") or describe.get("ProcessingStartTime")),
        end_time=_iso(describe.get("TrainingEndTime") or describe.get("ProcessingEndTime")),
    )
    if kind == JobKind.TRAINING:
        transitions = describe.get("SecondaryStatusTransitions") or []
        if transitions and isinstance(transitions[-1], Mapping):
            summary["message"] = transitions[-1].get("StatusMessage")
        summary["model_artifacts"] = (describe.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    else:
        summary["message"] = describe.get("ExitMessage")
        outputs = (describe.get("ProcessingOutputConfig") or {}).get("Outputs") or []
        summary["outputs"] = [
            uri for out in outputs if (uri := (out.get("S3Output") or {}).get("S3Uri")) is not None
        ]
    return summary


def may_run(summary: Mapping[str, Any], default_kind: JobKind | None = None) -> bool:
    """Whether a job summary leaves the job possibly running (no terminal status known).

    A job that does not exist carries its reason and no status: it cannot run. A summary of a
    kind this table does not know may be anything, so it may run.
    """
    status = summary.get("status")
    if status is None:
        return not summary.get("failure_reason")
    try:
        kind = JobKind(summary.get("kind") or default_kind)
    except ValueError:
        return True
    return not classify(kind, status, summary.get("secondary_status"))[0].terminal


def failure_lines(summaries: Sequence[Mapping[str, Any]], *, stopped_ok: bool = False) -> list[str]:
    """One line per job summary that is not a success, with its status and reason."""
    lines = []
    for job in summaries:
        status, secondary = job.get("status"), job.get("secondary_status")
        try:
            result = outcome(JobKind(job.get("kind")), status, secondary, stopped_ok=stopped_ok)
        except ValueError:  # not a kind we know: cannot be a success
            result = Outcome.FAILED
        if result == Outcome.SUCCEEDED:
            continue
        shown = " / ".join(str(part) for part in (status, secondary) if part) or "unknown"
        reason = job.get("failure_reason") or job.get("message") or "no reason given"
        lines.append(f"{job.get('kind')} job {job.get('name')} ended {shown}: {reason}")
    return lines
