"""Processing and Training job operators: each names its kind and console link; training
adds run tracking.

Everything else (validation, idempotent start, waiting, deferral, on_kill, XCom, the tracked
run's start and end) lives once in ``SageMakerJobOperator``; its docstring documents the
parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_sm_provider.errors import ConfigValidationError
from airflow_sm_provider.job_kinds import JobKind
from airflow_sm_provider.links import ProcessingJobLink, TrackedRunLink, TrainingJobLink
from airflow_sm_provider.operators.base import SageMakerJobOperator

if TYPE_CHECKING:
    from airflow_sm_provider.tracking.base import TrackingConfig

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

    :param experiment: track the job as a run in this experiment (templated; created when
        missing): a SageMaker Experiments run, or an MLflow run (``tracking_backend``). Each
        task instance gets one run, continued by its retries, named from the job's name prefix
        (or ``run_name``) and a hash of the task's identity, tagged with namespace, dag_id,
        run_id, task_id and map_index. The job gets the run's ``ExperimentConfig``, so
        ``load_run()`` in the training script logs onto it. Lower-cased; 1 to 59 letters,
        digits and hyphens.
    :param run_name: readable prefix of the run's name (templated, up to 48 characters);
        default the job's name prefix.
    :param tracking_backend: ``experiments`` (SageMaker Experiments, the default) or ``mlflow``
        (templated). With ``mlflow`` the run is an MLflow run found by the same identity tags,
        and the job gets ``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME`` and ``MLFLOW_RUN_ID``
        in its ``Environment`` (plus ``MlflowConfig`` when the URI is a SageMaker MLflow ARN), so
        ``mlflow.log_metric(..., step=epoch)`` in the script logs onto the run.
    :param tracking_uri: MLflow tracking URI (templated; ``mlflow`` only): a server's URL or a
        SageMaker managed MLflow tracking server / MLflow App ARN; default ``MLFLOW_TRACKING_URI``.

    Returns the job summary (name, ARN, status, secondary status, failure reason, billable
    seconds, model artifacts URI, and ``run`` when tracked).
    """

    job_kind = JobKind.TRAINING
    link_class = TrainingJobLink
    operator_extra_links = (TrainingJobLink(), TrackedRunLink())
    template_fields: Sequence[str] = (
        *SageMakerJobOperator.template_fields,
        "experiment",
        "run_name",
        "tracking_backend",
        "tracking_uri",
    )

    def __init__(
        self,
        *,
        experiment: str | None = None,
        run_name: str | None = None,
        tracking_backend: str = "experiments",
        tracking_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.experiment = experiment
        self.run_name = run_name
        self.tracking_backend = tracking_backend
        self.tracking_uri = tracking_uri

    def tracking_config(self) -> TrackingConfig | None:
        """The run tracking ``experiment`` asks for; names and the job config checked."""
        if not self.experiment:
            if self.run_name:
                raise ConfigValidationError("training", [("run_name", "needs experiment to be set")])
            return None
        from airflow_sm_provider.tracking.base import TrackingConfig

        for key in ("ExperimentConfig", "MlflowConfig"):
            if isinstance(self.config, dict) and self.config.get(key):
                raise ConfigValidationError(
                    "training", [(f"config.{key}", "is set by the tracked run (experiment=): leave it out")]
                )
        return TrackingConfig(
            experiment=self.experiment,
            run_name=self.run_name,
            backend=self.tracking_backend,
            tracking_uri=self.tracking_uri or None,
        )
