"""The tracker interface: what operators, plots and the report ask of a run-tracking backend.

One tracked run per task instance (a training job and its retries). The calls, in the order a
training task makes them:

1. :meth:`Tracker.start_run` when the job is about to be created: the run is created, or
   continued when an earlier try made it (never a second run), tagged with the task's
   identity, and the job's start is logged (parameters, input artifacts, in progress). It
   returns a :class:`RunRef` whose ``job_fields`` go into the Create request verbatim
   (``ExperimentConfig`` for SageMaker Experiments; ``MlflowConfig`` for MLflow), so code in
   the job logs onto the same run.
2. :meth:`Tracker.end_run` by whoever observes the job's end (the operator when it waits,
   ``JobSensor`` when the operator returned at once): outcome, times, final metrics, model.
3. For plots and the report: :meth:`Tracker.find_runs` (the runs of one DAG run, by identity
   tags), :meth:`Tracker.get_runs` (runs named in XComs), :meth:`Tracker.experiment_runs`
   (every run of an experiment, for a retrain's champion), :meth:`Tracker.metric_series`
   (per-step values) and :meth:`Tracker.log_artifacts` (e.g. plot URIs on a run).

Backends: ``experiments`` (SageMaker Experiments through the SDK's ``Run``, the default) and
``mlflow`` (any MLflow tracking server, SageMaker managed MLflow included; its runs live at a
tracking URI, which the run's reference carries). :func:`open_tracker` picks one by name and
imports it lazily, so nothing here costs a DAG parse.

Pure: no AWS or Airflow imports.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from airflow_sm_provider.aws_args import AwsArgs
from airflow_sm_provider.errors import ConfigValidationError
from airflow_sm_provider.naming import JobIdentity
from airflow_sm_provider.tracking import names
from airflow_sm_provider.tracking.records import Parameter, RunEnd, RunStart, run_end

DEFAULT_BACKEND = "experiments"
#: backend name -> "module:class" of its Tracker, imported on first use.
BACKENDS: dict[str, str] = {
    "experiments": "airflow_sm_provider.tracking.experiments:ExperimentsTracker",
    "mlflow": "airflow_sm_provider.tracking.mlflow:MlflowTracker",
}


@dataclass(frozen=True)
class TrackingConfig:
    """Which experiment a training task's run belongs to, and how the run is named.

    :param experiment: the experiment (created when missing, shared by every run in it).
        Lower-cased, as the SDK's ``Run`` stores it; 1 to 59 letters, digits and hyphens.
    :param run_name: readable prefix of the run's name; default the job's name prefix. The
        run's name adds a hash of the task's identity; the prefix may have 48 characters.
    :param backend: the tracking backend: ``experiments`` or ``mlflow``.
    :param tracking_uri: the MLflow tracking URI (``mlflow`` only): a server's URL, or the ARN
        of a SageMaker managed MLflow tracking server or MLflow App; default ``MLFLOW_TRACKING_URI``.

    Invalid names raise ``ConfigValidationError`` naming the field and the rule, so a task
    refuses them before any job or run exists.
    """

    experiment: str
    run_name: str | None = None
    backend: str = DEFAULT_BACKEND
    tracking_uri: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "experiment", names.experiment_name(self.experiment))
        if self.run_name is not None:
            object.__setattr__(self, "run_name", names.check_run_prefix(self.run_name))
        if self.backend not in BACKENDS:
            raise ConfigValidationError(
                "training", [("tracking backend", f"must be one of {sorted(BACKENDS)}; got {self.backend!r}")]
            )
        if self.tracking_uri and self.backend != "mlflow":
            raise ConfigValidationError("training", [("tracking_uri", "is for the mlflow backend only")])

    def run_name_for(self, job_prefix: str, identity: JobIdentity) -> str:
        """The run's name for a task instance: the same on every try."""
        return names.run_name(self.run_name or job_prefix, identity)


@dataclass(frozen=True)
class RunRef:
    """A tracked run, as small as an XCom: enough for any task to find it again."""

    backend: str
    experiment: str
    run_name: str
    #: The backend's own id of the run: a trial component name, an MLflow run id.
    record: str
    arn: str = ""
    #: Fields the job's Create request takes to log onto this run (not in XComs); mappings
    #: (``Environment``) are merged into the request's own (:func:`with_job_fields`).
    job_fields: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: Where the backend keeps the run, when it has more than one place (MLflow's tracking URI).
    tracking_uri: str = ""

    def to_xcom(self) -> dict[str, str]:
        data = {
            "backend": self.backend,
            "experiment": self.experiment,
            "run_name": self.run_name,
            "record": self.record,
            "arn": self.arn,
        }
        return {**data, "tracking_uri": self.tracking_uri} if self.tracking_uri else data

    @classmethod
    def from_xcom(cls, data: Mapping[str, Any]) -> RunRef:
        """The run of a job summary's ``run`` entry; ``ValueError`` when it lacks a field."""
        missing = [key for key in ("backend", "experiment", "run_name", "record") if not data.get(key)]
        if missing:
            raise ValueError(f"tracked run reference without {', '.join(missing)}: {dict(data)!r}")
        return cls(
            backend=str(data["backend"]),
            experiment=str(data["experiment"]),
            run_name=str(data["run_name"]),
            record=str(data["record"]),
            arn=str(data.get("arn") or ""),
            tracking_uri=str(data.get("tracking_uri") or ""),
        )


@dataclass(frozen=True)
class TrackedRun:
    """A run as read back: what the plots and the report need of it."""

    ref: RunRef
    status: str | None
    message: str
    parameters: dict[str, Parameter]
    inputs: dict[str, str]
    outputs: dict[str, str]
    tags: dict[str, str]
    #: Names of the metrics logged on the run (per step, e.g. by ``load_run()`` in the script).
    metrics: tuple[str, ...]


@dataclass(frozen=True)
class MetricSeries:
    """One metric of one run, per step (ascending)."""

    run: RunRef
    metric: str
    steps: tuple[int, ...]
    values: tuple[float, ...]


class Tracker(ABC):
    """A run-tracking backend (see the module docstring for when each method is called)."""

    backend: ClassVar[str]

    @abstractmethod
    def start_run(
        self, config: TrackingConfig, identity: JobIdentity, job_prefix: str, start: RunStart
    ) -> RunRef:
        """Create or continue the run of this task instance and log the job's start.

        Idempotent: every try of one task instance gets the same run; the outcome an earlier
        try logged (status, final metrics, model) is cleared, the rest is kept.
        """

    @abstractmethod
    def end_run(self, ref: RunRef, end: RunEnd) -> None:
        """Log the job's outcome on the run and mark it ended (Completed, Failed or Stopped)."""

    @abstractmethod
    def find_runs(
        self, namespace: str, dag_id: str, run_id: str, *, experiment: str | None = None
    ) -> list[TrackedRun]:
        """Every run tracked by the tasks of one DAG run (all pages), sorted by record name."""

    def experiment_runs(self, experiment: str) -> list[TrackedRun]:
        """Every run of an experiment, whoever made it (all pages), sorted by record name.

        For lookups across DAG runs, e.g. the experiment's best run; a backend that cannot
        list them says so.
        """
        raise NotImplementedError(f"the {self.backend!r} tracker cannot list an experiment's runs")

    @abstractmethod
    def get_runs(self, refs: Sequence[RunRef]) -> list[TrackedRun]:
        """The runs named by ``refs``, in that order (``KeyError`` names one that is missing)."""

    @abstractmethod
    def metric_series(self, runs: Sequence[TrackedRun]) -> list[MetricSeries]:
        """Every metric logged on the given runs, per step."""

    @abstractmethod
    def log_artifacts(self, ref: RunRef, artifacts: Mapping[str, str], *, output: bool = True) -> None:
        """Record URIs (e.g. of plots in S3) on a run under stable names; a name logged again
        is replaced, so republishing stays within the backend's artifact limits."""


def open_tracker(
    backend: str = DEFAULT_BACKEND, aws: AwsArgs | None = None, tracking_uri: str | None = None
) -> Tracker:
    """The tracker of ``backend``, its clients built from the Airflow AWS connection of ``aws``
    (and, for MLflow, on ``tracking_uri``, default ``MLFLOW_TRACKING_URI``)."""
    try:
        module_name, class_name = BACKENDS[backend].split(":")
    except KeyError:
        raise ValueError(f"unknown tracking backend {backend!r}; known: {sorted(BACKENDS)}") from None
    tracker_class = getattr(importlib.import_module(module_name), class_name)
    options = {"tracking_uri": tracking_uri} if tracking_uri else {}
    return tracker_class.from_connection(aws or AwsArgs(), **options)


def with_job_fields(config: Mapping[str, Any], ref: RunRef) -> dict[str, Any]:
    """A Create request with the run's ``job_fields``: a mapping field (``Environment``) merged
    into the request's own, the run's keys winning; any other field set."""
    result = dict(config)
    for key, value in ref.job_fields.items():
        own = result.get(key)
        result[key] = {**own, **value} if isinstance(own, Mapping) and isinstance(value, Mapping) else value
    return result


def log_job_ends(aws: AwsArgs, ended: Sequence[tuple[RunRef, Mapping[str, Any]]]) -> None:
    """Log each ended job's outcome on its run: (run, DescribeTrainingJob response) pairs.

    The one path by which a job's end reaches its run, whoever observed the end (the operator
    that waited, or ``JobSensor``); one tracker per backend and tracking URI.
    """
    trackers: dict[tuple[str, str], Tracker] = {}
    for ref, describe in ended:
        where = (ref.backend, ref.tracking_uri)
        if where not in trackers:
            trackers[where] = open_tracker(ref.backend, aws, ref.tracking_uri)
        trackers[where].end_run(ref, run_end(describe))
