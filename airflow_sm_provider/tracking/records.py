"""What a tracked run records about its training job, from the API's own shapes.

:func:`run_start` reads the CreateTrainingJob request (parameters and input artifacts logged
when the job starts); :func:`run_end` reads the DescribeTrainingJob response (outcome, times,
final metrics and the model artifact logged when the job ends). Both return plain records any
tracking backend can write, so SageMaker Experiments and MLflow log the same content.

Parameter names: hyperparameters keep their own names (``sagemaker_*`` keys, which the SDK's
framework estimators add for their containers, are left out); facts about the job are under
``job.``; final metrics (``FinalMetricDataList``) under ``final.``. Hyperparameters arrive as
strings (the API's type); a value that reads as a JSON number or string is logged as that
number or string, so ``"0.01"`` stays a number and ``"\\"adam\\""`` (the SDK's JSON encoding)
becomes ``adam``.

Pure: no AWS or Airflow imports.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

Parameter = str | float | int
#: Most artifacts the SDK's ``Run`` accepts in each direction.
MAX_RUN_ARTIFACTS = 30
#: Longest status message a trial component takes (TrialComponentStatusMessage).
MAX_MESSAGE_LENGTH = 1024
MODEL_ARTIFACT = "model"
CODE_ARTIFACT = "code"
#: Parameters :func:`run_end` writes: a new try clears those of the try before it.
OUTCOME_PARAMETERS = frozenset(
    {"job.name", "job.status", "job.secondary_status", "job.training_seconds", "job.billable_seconds"}
)
FINAL_METRIC_PREFIX = "final."


class RunStatus(StrEnum):
    """A run's state, as trial components name it (TrialComponentPrimaryStatus)."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


#: TrainingJobStatus -> the run's status; a status added to the API later maps to InProgress.
_RUN_STATUS = {
    "Completed": RunStatus.COMPLETED,
    "Failed": RunStatus.FAILED,
    "Stopping": RunStatus.STOPPING,
    "Stopped": RunStatus.STOPPED,
}


@dataclass(frozen=True)
class RunStart:
    """What is logged on a run when its job starts."""

    parameters: dict[str, Parameter] = field(default_factory=dict)
    #: artifact name -> S3 URI: the channels (20 at most) and the code, within the SDK's 30
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunEnd:
    """What is logged on a run when its job has ended (or is found ended)."""

    status: RunStatus
    message: str = ""
    parameters: dict[str, Parameter] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    end_time: datetime | None = None


def parameter_value(text: Any) -> Parameter:
    """A hyperparameter (a string in the API) as the run should show it: numbers stay numbers.

    Non-finite numbers and JSON booleans, lists or objects stay text as given (the SDK drops
    NaN and infinities); text is kept on one line (see :func:`one_line`).
    """
    text = str(text)
    try:
        value = json.loads(text)
    except ValueError:
        return one_line(text)
    if isinstance(value, str):
        return one_line(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return one_line(text)


def one_line(text: str) -> str:
    """``text`` with its line breaks as spaces: trial components take strings matching ``.*``,
    which (as in Java, where the service checks it) matches no line terminator, while a
    FailureReason spans lines."""
    return " ".join(text.splitlines())


def run_start(request: Mapping[str, Any]) -> RunStart:
    """Parameters and input artifacts of a CreateTrainingJob request."""
    hyperparameters = request.get("HyperParameters") or {}
    parameters: dict[str, Parameter] = {
        key: parameter_value(value)
        for key, value in hyperparameters.items()
        if not str(key).startswith("sagemaker_")
    }
    algorithm = request.get("AlgorithmSpecification") or {}
    resources = request.get("ResourceConfig") or {}
    facts: dict[str, Any] = {
        "job.image": algorithm.get("TrainingImage") or algorithm.get("AlgorithmName"),
        "job.instance_type": resources.get("InstanceType"),
        "job.instance_count": resources.get("InstanceCount"),
        "job.spot": "true" if request.get("EnableManagedSpotTraining") else "false",
    }
    parameters.update({key: value for key, value in facts.items() if value is not None})
    inputs: dict[str, str] = {}
    for channel in request.get("InputDataConfig") or []:
        uri = ((channel.get("DataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
        if uri:
            inputs[str(channel.get("ChannelName"))] = uri
    code = parameter_value(hyperparameters.get("sagemaker_submit_directory", ""))
    if isinstance(code, str) and code.startswith("s3://"):
        inputs.setdefault(CODE_ARTIFACT, code)
    return RunStart(parameters=parameters, inputs=inputs)


def is_outcome_parameter(name: str) -> bool:
    """Whether a parameter records a job's outcome (and belongs to one try only)."""
    return name in OUTCOME_PARAMETERS or name.startswith(FINAL_METRIC_PREFIX)


def run_status(job_status: str | None) -> RunStatus:
    """The run's status for a TrainingJobStatus (InProgress, or unknown, while it runs)."""
    return _RUN_STATUS.get(job_status or "", RunStatus.IN_PROGRESS)


def run_end(describe: Mapping[str, Any]) -> RunEnd:
    """Outcome, times, final metrics and model artifact of a DescribeTrainingJob response."""
    status = run_status(describe.get("TrainingJobStatus"))
    secondary = describe.get("SecondaryStatus")
    reason = describe.get("FailureReason") or ""
    if status == RunStatus.STOPPED and secondary and secondary != "Stopped":
        reason = f"{secondary}: {reason}" if reason else str(secondary)  # e.g. MaxRuntimeExceeded
    facts: dict[str, Any] = {
        "job.name": describe.get("TrainingJobName"),
        "job.status": describe.get("TrainingJobStatus"),
        "job.secondary_status": secondary,
        "job.training_seconds": describe.get("TrainingTimeInSeconds"),
        "job.billable_seconds": describe.get("BillableTimeInSeconds"),
    }
    parameters: dict[str, Parameter] = {key: value for key, value in facts.items() if value is not None}
    for metric in describe.get("FinalMetricDataList") or []:
        value = metric.get("Value")
        if metric.get("MetricName") and isinstance(value, int | float) and math.isfinite(value):
            parameters[f"{FINAL_METRIC_PREFIX}{metric['MetricName']}"] = value
    model = (describe.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    end_time = describe.get("TrainingEndTime")
    return RunEnd(
        status=status,
        message=one_line(reason)[:MAX_MESSAGE_LENGTH],
        parameters=parameters,
        outputs={MODEL_ARTIFACT: model} if model else {},
        end_time=end_time if isinstance(end_time, datetime) else None,
    )
