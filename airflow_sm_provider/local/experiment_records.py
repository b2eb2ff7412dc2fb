"""Records of SageMaker Experiments in the local engine: kinds, names, ARNs, response shapes.

Experiments, trials and trial components live in the engine's Store under the kinds
``Experiment``, ``Trial`` and ``TrialComponent``. Every response is built here by an explicit
function listing the members of its botocore shape; the small conversions (wire timestamps,
ARNs, parameter and artifact values) and the model's map limits live here too, so the
experiments and the metrics backends read records the same way.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any, Literal

from airflow_sm_provider.local.errors import ValidationException
from airflow_sm_provider.local.responses import pick
from airflow_sm_provider.local.search import iso_to_epoch, record_key
from airflow_sm_provider.local.store import Record

JobType = Literal["training", "processing"]

EXPERIMENT, TRIAL, COMPONENT = "Experiment", "Trial", "TrialComponent"
ARN_TYPES = {
    EXPERIMENT: "experiment",
    TRIAL: "experiment-trial",
    COMPONENT: "experiment-trial-component",
}
NOUNS = {EXPERIMENT: "Experiment", TRIAL: "Trial", COMPONENT: "Trial Component"}
JOB_SOURCE_TYPES = {"training": "SageMakerTrainingJob", "processing": "SageMakerProcessingJob"}
JOB_ARN_TYPES: dict[str, JobType] = {"training-job": "training", "processing-job": "processing"}
_MAX_PARAMETERS = 300  # TrialComponentParameters map limit of the model, after merging
_MAX_ARTIFACTS = 60  # TrialComponentArtifacts map limit of the model, after merging


def job_component_name(job_name: str, job_type: JobType) -> str:
    """Name SageMaker gives the trial component of a job: ``<job>-aws-<type>-job``."""
    return f"{job_name}-aws-{job_type}-job"


# -- response builders (members as botocore's shapes name them) ------------------------------

_EXPERIMENT_FIELDS = (
    "ExperimentName",
    "ExperimentArn",
    "DisplayName",
    "Source",
    "Description",
    "CreationTime",
    "LastModifiedTime",
)
_TRIAL_FIELDS = (
    "TrialName",
    "TrialArn",
    "DisplayName",
    "ExperimentName",
    "Source",
    "CreationTime",
    "LastModifiedTime",
    "MetadataProperties",
)
_COMPONENT_FIELDS = (
    "TrialComponentName",
    "TrialComponentArn",
    "DisplayName",
    "Source",
    "Status",
    "StartTime",
    "EndTime",
    "CreationTime",
    "LastModifiedTime",
    "Parameters",
    "InputArtifacts",
    "OutputArtifacts",
    "MetadataProperties",
)


def describe_experiment(record: Record) -> dict[str, Any]:
    return pick(record, _EXPERIMENT_FIELDS)


def search_experiment(record: Record) -> dict[str, Any]:
    return {**pick(record, _EXPERIMENT_FIELDS), "Tags": record["Tags"]}


def experiment_summary(record: Record) -> dict[str, Any]:
    summary = pick(
        record, ("ExperimentArn", "ExperimentName", "DisplayName", "CreationTime", "LastModifiedTime")
    )
    if "Source" in record:
        summary["ExperimentSource"] = record["Source"]
    return summary


def describe_trial(record: Record) -> dict[str, Any]:
    return pick(record, _TRIAL_FIELDS)


def search_trial(record: Record, components: list[Record]) -> dict[str, Any]:
    key = record["TrialName"].lower()
    members = [c for c in components if any(p["TrialName"].lower() == key for p in c["Parents"])]
    return {
        **pick(record, _TRIAL_FIELDS),
        "Tags": record["Tags"],
        "TrialComponentSummaries": [component_simple_summary(c) for c in members],
    }


def trial_summary(record: Record) -> dict[str, Any]:
    summary = pick(record, ("TrialArn", "TrialName", "DisplayName", "CreationTime", "LastModifiedTime"))
    if "Source" in record:
        summary["TrialSource"] = record["Source"]
    return summary


def describe_component(record: Record, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    response = pick(record, _COMPONENT_FIELDS)
    if metrics:
        response["Metrics"] = metrics
    return response


def search_component(record: Record, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    response = {**describe_component(record, metrics), "Tags": record["Tags"], "Parents": record["Parents"]}
    if "Source" in record:
        response["SourceDetail"] = {"SourceArn": record["Source"]["SourceArn"]}
    if "RunName" in record:
        response["RunName"] = record["RunName"]
    return response


def component_summary(record: Record) -> dict[str, Any]:
    summary = pick(
        record,
        (
            "TrialComponentName",
            "TrialComponentArn",
            "DisplayName",
            "Status",
            "StartTime",
            "EndTime",
            "CreationTime",
            "LastModifiedTime",
        ),
    )
    if "Source" in record:
        summary["TrialComponentSource"] = record["Source"]
    return summary


def component_simple_summary(record: Record) -> dict[str, Any]:
    summary = pick(record, ("TrialComponentName", "TrialComponentArn", "CreationTime"))
    if "Source" in record:
        summary["TrialComponentSource"] = record["Source"]
    return summary


# -- small conversions -----------------------------------------------------------------------
def to_epoch(value: Any) -> float:
    """Epoch seconds of a wire timestamp: a number, a numeric string or ISO 8601."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    try:
        return float(value)
    except ValueError:
        epoch = iso_to_epoch(str(value))
    if epoch is None:
        raise ValidationException(f"Value '{value}' is not a valid timestamp.")
    return epoch


def kind_of_arn(arn: str) -> str | None:
    resource_type = arn.split(":", 5)[-1].partition("/")[0] if arn.startswith("arn:") else ""
    return next((kind for kind, type_ in ARN_TYPES.items() if type_ == resource_type), None)


def name_of(name_or_arn: str) -> str:
    """The entity name of a name or an ARN (DescribeTrialComponent accepts both)."""
    return name_or_arn.rsplit("/", 1)[-1] if name_or_arn.startswith("arn:") else name_or_arn


def parameter(value: str | float) -> dict[str, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"NumberValue": float(value)}
    return {"StringValue": str(value)}


def artifact(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {"Value": str(value)}


def check_map_sizes(parameters: dict, inputs: dict, outputs: dict) -> None:
    if len(parameters) > _MAX_PARAMETERS:
        raise ValidationException(
            f"A trial component can have at most {_MAX_PARAMETERS} parameters, got {len(parameters)}."
        )
    for label, artifacts in (("input", inputs), ("output", outputs)):
        if len(artifacts) > _MAX_ARTIFACTS:
            raise ValidationException(
                f"A trial component can have at most {_MAX_ARTIFACTS} {label} artifacts, "
                f"got {len(artifacts)}."
            )


def created_between(records: list[Record], params: dict[str, Any]) -> list[Record]:
    after, before = params.get("CreatedAfter"), params.get("CreatedBefore")
    if after is not None:
        records = [r for r in records if r["CreationTime"] > to_epoch(after)]
    if before is not None:
        records = [r for r in records if r["CreationTime"] < to_epoch(before)]
    return records


@functools.cache
def search_record_members(resource: str) -> frozenset[str]:
    """Members of the SearchRecord shape of a resource, from botocore's SageMaker model."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    member = model.shape_for("SearchRecord").members.get(record_key(resource))
    return frozenset(member.members) if member is not None else frozenset()
