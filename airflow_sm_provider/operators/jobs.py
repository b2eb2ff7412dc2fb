"""Processing and Training job operators: each only names its kind and console link.

Everything else (validation, idempotent start, waiting, deferral, on_kill, XCom) lives once
in ``SageMakerJobOperator``; its docstring documents the parameters.
"""

from __future__ import annotations

from airflow_sm_provider.job_kinds import JobKind
from airflow_sm_provider.links import ProcessingJobLink, TrainingJobLink
from airflow_sm_provider.operators.base import SageMakerJobOperator

__all__ = ["ProcessingJobOperator", "TrainingJobOperator"]


class ProcessingJobOperator(SageMakerJobOperator):
    """Run a SageMaker Processing job; ``config`` is a CreateProcessingJob request.

    Returns the job summary (name, ARN, status, exit message, failure reason, output S3 URIs).
    """

    job_kind = JobKind.PROCESSING
    link_class = ProcessingJobLink
    operator_extra_links = (ProcessingJobLink(),)


class TrainingJobOperator(SageMakerJobOperator):
    """Run a SageMaker Training job; ``config`` is a CreateTrainingJob request.

    Returns the job summary (name, ARN, status, secondary status, failure reason, billable
    seconds, model artifacts URI).
    """

    job_kind = JobKind.TRAINING
    link_class = TrainingJobLink
    operator_extra_links = (TrainingJobLink(),)
