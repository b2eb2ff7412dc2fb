"""Experiment glue of the local engine's jobs: every job's trial component, kept in step.

SageMaker gives every training and processing job a trial component; the jobs backend calls
these functions when a job is created, starts and ends. ``experiments`` is the
:class:`ExperimentsBackend` (or None when the engine runs without one).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow_sm_provider.local.control import RunResult
from airflow_sm_provider.local.experiment_records import JobType
from airflow_sm_provider.local.store import Record

log = logging.getLogger(__name__)


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


def link_job(experiments: Any, job_type: JobType, record: Record) -> None:
    """Give the job its trial component (every job has one in SageMaker) and join its trial."""
    if experiments is None:
        return
    config = record.get("ExperimentConfig") or {}
    if job_type == "training":
        name, arn = record["TrainingJobName"], record["TrainingJobArn"]
        resources = record.get("ResourceConfig", {})
        parameters: dict[str, str | float] = {
            k: v
            for k, v in ((k, _number_or_text(v)) for k, v in (record.get("HyperParameters") or {}).items())
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
    experiments.link_job(job_type, name, arn, config, parameters, inputs, {})


def mark_started(experiments: Any, job_type: JobType, record: Record, now: float) -> None:
    """The job's trial component is InProgress from the moment the job holds an instance."""
    if experiments is None:
        return
    name = record.get("TrainingJobName") or record["ProcessingJobName"]
    start = record.get("TrainingStartTime") or record.get("ProcessingStartTime") or now
    status = {"PrimaryStatus": "InProgress", "Message": "InProgress"}
    try:
        experiments.update_job_component(name, job_type, status, start, None, None, {})
    except Exception:
        log.exception("updating the trial component of job %s failed", name)


def mark_ended(experiments: Any, job_type: JobType, record: Record, result: RunResult) -> None:
    """The job's trial component takes the job's end status, times, artifacts and metric points."""
    if experiments is None:
        return
    name = record.get("TrainingJobName") or record["ProcessingJobName"]
    status = record.get("TrainingJobStatus") or record["ProcessingJobStatus"]
    start = record.get("TrainingStartTime") or record.get("ProcessingStartTime")
    end = record.get("TrainingEndTime") or record.get("ProcessingEndTime")
    outputs = dict(result.output_artifacts)
    if result.model_artifacts:
        outputs["SageMaker.ModelArtifact"] = {"Value": result.model_artifacts}
    message = record.get("FailureReason") or status
    try:
        experiments.update_job_component(
            name, job_type, {"PrimaryStatus": status, "Message": message}, start, end,
            result.metric_points or None, outputs,
        )  # fmt: skip
    except Exception:
        log.exception("updating the trial component of job %s failed", name)


def _number_or_text(value: str) -> str | float:
    """A hyperparameter as a number parameter if it reads as one (SageMaker's NumberValue)."""
    try:
        return float(value)
    except ValueError:
        return value
