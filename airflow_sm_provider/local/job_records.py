"""The job records of the local engine: the two job kinds, their response fields, List filters.

Records are describe-shaped dicts in the Store (kind "TrainingJob"/"ProcessingJob");
:func:`to_describe_training` and :func:`to_describe_processing` pick the response fields
explicitly, as botocore's shapes name them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_sm_provider.local import lifecycle
from airflow_sm_provider.local.experiment_records import JobType
from airflow_sm_provider.local.responses import pick
from airflow_sm_provider.local.store import Record

TRAINING = "TrainingJob"
PROCESSING = "ProcessingJob"

_TRAINING_FIELDS = (
    "TrainingJobName", "TrainingJobArn", "ModelArtifacts", "TrainingJobStatus", "SecondaryStatus",
    "FailureReason", "HyperParameters", "AlgorithmSpecification", "RoleArn", "InputDataConfig",
    "OutputDataConfig", "ResourceConfig", "VpcConfig", "StoppingCondition", "CreationTime",
    "TrainingStartTime", "TrainingEndTime", "LastModifiedTime", "SecondaryStatusTransitions",
    "FinalMetricDataList", "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption",
    "EnableManagedSpotTraining", "CheckpointConfig", "TrainingTimeInSeconds", "BillableTimeInSeconds",
    "DebugHookConfig", "ExperimentConfig", "DebugRuleConfigurations", "TensorBoardOutputConfig",
    "ProfilerConfig", "Environment", "RetryStrategy", "MlflowConfig", "MlflowDetails",
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


@dataclass(frozen=True)
class Kind:
    """What the API handlers of one job kind differ in; keys follow the API's ``<kind>Name`` form."""

    kind: str  # the Store kind and the API's noun, e.g. "TrainingJob"
    word: JobType  # in messages, the ARN's resource type and the experiments job type
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


KINDS = {
    TRAINING: Kind(
        TRAINING, "training", _TRAINING_FIELDS, _TRAINING_SUMMARY_FIELDS,
        frozenset(s.value for s in lifecycle.TRAINING_TERMINAL),
        lifecycle.new_training_state, lifecycle.advance_training,
    ),
    PROCESSING: Kind(
        PROCESSING, "processing", _PROCESSING_FIELDS, _PROCESSING_SUMMARY_FIELDS,
        frozenset(s.value for s in lifecycle.PROCESSING_TERMINAL),
        lifecycle.new_processing_state, lifecycle.advance_processing,
    ),
}  # fmt: skip


def to_describe_training(record: Record) -> dict[str, Any]:
    """DescribeTrainingJob response of a job record."""
    return pick(record, _TRAINING_FIELDS)


def to_describe_processing(record: Record) -> dict[str, Any]:
    """DescribeProcessingJob response of a job record."""
    return pick(record, _PROCESSING_FIELDS)


def filter_sort(
    records: list[Record], params: Mapping[str, Any], status_key: str, name_key: str
) -> list[Record]:
    """The records a List call's filters keep, in its SortBy / SortOrder."""

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
