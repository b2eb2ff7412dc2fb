"""The runs of a sweep: which training jobs the plot and report tasks look at, and what of each.

Both ``MetricPlotOperator`` and ``ComparisonReportOperator`` read their sweep with
:func:`gather`, so they see the same runs the same way:

- ``jobs`` is a job name, a job summary (the XCom of ``TrainingJobOperator`` or one entry of
  ``JobSensor``'s), or any list of those, e.g. the mapped training task's output, which
  Airflow hands over as a lazy sequence of summaries (:func:`job_names`). A summary of a
  tracked task carries its run (``run``), so its plots can be recorded on that run.
- Without ``jobs``, the runs are those the tracker finds for this DAG run (by the identity
  tags every tracked run carries), each naming its job once the job has ended.
- Each job becomes a :class:`SweepRun` from its ``DescribeTrainingJob`` response
  (:func:`sweep_run`); its per-step series merges the CloudWatch Logs, the run's own
  ``log_metric`` points (read through its tracker: BatchGetMetrics for SageMaker Experiments,
  the metric history for MLflow) and an optional metrics JSON.

No AWS or Airflow imports: :func:`gather` does its I/O through the hook and trackers it is given.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from airflow_sm_provider.job_kinds import JobKind, Outcome, classify, job_leaves

if TYPE_CHECKING:
    import pandas as pd

    from airflow_sm_provider.aws_args import AwsArgs
    from airflow_sm_provider.tracking.base import RunRef, TrackedRun, Tracker

log = logging.getLogger(__name__)

_JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
#: Hyperparameters the SageMaker SDK and toolkits set for themselves (entry point, code, region…).
_INTERNAL_PREFIX = "sagemaker_"


def job_names(jobs: Any, field_name: str = "jobs") -> list[str]:
    """The job names in ``jobs``, each once, in order.

    ``jobs`` is a name, a job summary (a mapping with ``name``), or an iterable of those
    (nested lists are flattened: a list of mapped outputs). Anything else raises
    ``ValueError`` naming the entry, e.g. ``jobs[2]: ...``.
    """
    names: dict[str, None] = {}
    if jobs is None:
        raise ValueError(f"{field_name}: required (job names or the training task's XCom)")
    for where, item in job_leaves(jobs, field_name):
        if isinstance(item, str):
            name = item
        else:
            kind = item.get("kind")
            if kind not in (None, JobKind.TRAINING.value):
                raise ValueError(f"{where}: a {kind} job; only training jobs have metric series")
            name = item.get("name")
            if not isinstance(name, str):
                raise ValueError(f"{where}: a job summary needs a 'name' string")
        if not _JOB_NAME.fullmatch(name):
            raise ValueError(f"{where}: {name!r} is not a SageMaker job name (letters, digits, '-'; 1-63)")
        names[name] = None
    if not names:
        raise ValueError(f"{field_name}: no jobs given")
    return list(names)


def user_hyperparameters(hyperparameters: Mapping[str, Any] | None) -> dict[str, str]:
    """The hyperparameters a person set: without ``sagemaker_*`` keys, JSON-quoted strings unquoted.

    The SageMaker SDK sends every value JSON-encoded (``'"adam"'``, ``'0.1'``); the API keeps
    the strings as given.
    """
    out: dict[str, str] = {}
    for key, value in (hyperparameters or {}).items():
        if str(key).startswith(_INTERNAL_PREFIX):
            continue
        text = str(value)
        if len(text) >= 2 and text[0] == text[-1] == '"':
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = None
            if isinstance(decoded, str):
                text = decoded
        out[str(key)] = text
    return out


@dataclass(frozen=True)
class SweepRun:
    """One training job of the sweep, as read from its describe response."""

    run: str
    job: str
    arn: str | None = None
    status: str | None = None
    secondary_status: str | None = None
    failure_reason: str | None = None
    hyperparameters: dict[str, str] = field(default_factory=dict)
    metric_definitions: list[dict[str, str]] = field(default_factory=list)
    instance_type: str | None = None
    instance_count: int = 1
    spot: bool = False
    training_seconds: float | None = None
    billable_seconds: float | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)
    model_artifact: str | None = None
    #: ``ExperimentConfig`` of the job: where its Run's ``log_metric`` points are.
    experiment_name: str | None = None
    run_name: str | None = None
    debug_rule_statuses: dict[str, str] = field(default_factory=dict)

    @property
    def outcome(self) -> Outcome:
        return classify(JobKind.TRAINING, self.status, self.secondary_status)[0]

    @property
    def running(self) -> bool:
        """Still running (or not visible yet): the live publisher goes on while any run is."""
        return not self.outcome.terminal

    @property
    def failed(self) -> bool:
        """Ended without completing: its charts say so instead of showing nothing."""
        return self.outcome in (Outcome.FAILED, Outcome.STOPPED)

    def record(self, links: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The run as the report model's ``RunRecord.from_dict`` reads it."""
        return {
            "name": self.run,
            "job_name": self.job,
            "status": self.status or "Unknown",
            "failure_reason": self.failure_reason,
            "hyperparameters": self.hyperparameters,
            "instance_type": self.instance_type,
            "instance_count": self.instance_count,
            "spot": self.spot,
            "training_seconds": self.training_seconds,
            "billable_seconds": self.billable_seconds,
            "final_metrics": self.final_metrics,
            "model_artifact": self.model_artifact,
            "links": dict(links or {}),
            "debug_rule_statuses": self.debug_rule_statuses,
        }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def sweep_run(describe: Mapping[str, Any]) -> SweepRun:
    """A :class:`SweepRun` from a ``DescribeTrainingJob`` response (fields read with ``.get``)."""
    job = str(describe.get("TrainingJobName") or "")
    if not job:
        raise ValueError("describe: no TrainingJobName")
    algorithm = describe.get("AlgorithmSpecification") or {}
    resources = describe.get("ResourceConfig") or {}
    experiment = describe.get("ExperimentConfig") or {}
    finals = {
        str(m["MetricName"]): float(m["Value"])
        for m in describe.get("FinalMetricDataList") or []
        if isinstance(m, Mapping) and m.get("MetricName") and _number(m.get("Value")) is not None
    }
    try:
        count = max(1, int(resources.get("InstanceCount") or 1))
    except (TypeError, ValueError):
        count = 1
    return SweepRun(
        run=job,
        job=job,
        arn=describe.get("TrainingJobArn"),
        status=describe.get("TrainingJobStatus"),
        secondary_status=describe.get("SecondaryStatus"),
        failure_reason=describe.get("FailureReason"),
        hyperparameters=user_hyperparameters(describe.get("HyperParameters")),
        metric_definitions=[
            {"Name": str(d.get("Name")), "Regex": str(d.get("Regex"))}
            for d in algorithm.get("MetricDefinitions") or []
            if isinstance(d, Mapping)
        ],
        instance_type=resources.get("InstanceType"),
        instance_count=count,
        spot=bool(describe.get("EnableManagedSpotTraining")),
        training_seconds=_number(describe.get("TrainingTimeInSeconds")),
        billable_seconds=_number(describe.get("BillableTimeInSeconds")),
        final_metrics=finals,
        model_artifact=(describe.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        experiment_name=experiment.get("ExperimentName"),
        run_name=experiment.get("RunName"),
        debug_rule_statuses={
            str(s.get("RuleConfigurationName")): str(s.get("RuleEvaluationStatus"))
            for s in describe.get("DebugRuleEvaluationStatuses") or []
            if isinstance(s, Mapping) and s.get("RuleConfigurationName")
        },
    )


class SweepReader(Protocol):
    """What :func:`gather` needs of the metrics hook (``hooks.metrics.SageMakerMetricsHook``)."""

    def describe_runs(self, names: Sequence[str]) -> list[SweepRun]: ...

    def collect(
        self, runs: Sequence[SweepRun], *, step_regex: str | None, metrics_json: str | None
    ) -> pd.DataFrame: ...


@dataclass(frozen=True)
class DagRunRuns:
    """Where the tracker looks for a DAG run's runs when no ``jobs`` are given."""

    namespace: str
    dag_id: str
    run_id: str
    experiment: str | None = None
    backend: str = "experiments"
    tracking_uri: str = ""


@dataclass
class Sweep:
    """A sweep as read: its runs, their merged per-step series, and the tracked run of each job."""

    runs: list[SweepRun]
    series: pd.DataFrame
    tracked: dict[str, RunRef] = field(default_factory=dict)


def gather(
    reader: SweepReader,
    jobs: Any,
    *,
    tracker: Callable[[str, str], Tracker],
    step_regex: str | None,
    metrics_json: str | None = None,
    lookup: DagRunRuns | None = None,
) -> Sweep:
    """Read the sweep of ``jobs`` (or, when ``jobs`` is None, of ``lookup``'s DAG run).

    ``tracker(backend, tracking_uri)`` opens a run tracker; it is called only when some job is
    tracked (or to look the DAG run's runs up).
    """
    from airflow_sm_provider.metrics.series import merge

    if jobs is None:
        if lookup is None:
            raise ValueError("jobs: required (job names or the training task's XCom)")
        found = tracker(lookup.backend, lookup.tracking_uri).find_runs(
            lookup.namespace, lookup.dag_id, lookup.run_id, experiment=lookup.experiment
        )
        tracked_runs = {
            str(run.parameters["job.name"]): run for run in found if run.parameters.get("job.name")
        }
        if not tracked_runs:
            raise ValueError(f"jobs: none given, and no ended tracked run found for DAG run {lookup.run_id}")
        names = list(tracked_runs)
    else:
        from airflow_sm_provider.sensors.jobs import tracked_runs as refs_in

        names = job_names(jobs)
        refs = refs_in(jobs)
        tracked_runs = {}
        for where in sorted({(ref.backend, ref.tracking_uri) for ref in refs.values()}):
            mine = [job for job, ref in refs.items() if (ref.backend, ref.tracking_uri) == where]
            runs = tracker(*where).get_runs([refs[job] for job in mine])
            tracked_runs.update(zip(mine, runs, strict=True))
    runs = reader.describe_runs(names)
    frames = [reader.collect(runs, step_regex=step_regex, metrics_json=metrics_json)]
    frames += _run_frames(tracker, tracked_runs)
    return Sweep(runs, merge(frames), {job: run.ref for job, run in tracked_runs.items()})


def _run_frames(
    tracker: Callable[[str, str], Tracker], tracked: Mapping[str, TrackedRun]
) -> list[pd.DataFrame]:
    """The runs' ``log_metric`` points, one ``metric_series`` call per tracker.

    A tracker that cannot read them is logged and skipped, as a log source is: the runs are
    drawn from their other sources.
    """
    from airflow_sm_provider.metrics.series import from_points

    groups: dict[tuple[str, str], dict[str, TrackedRun]] = {}
    for job, run in tracked.items():
        if run.metrics:
            groups.setdefault((run.ref.backend, run.ref.tracking_uri), {})[job] = run
    frames = []
    for where, runs in groups.items():
        job_of = {run.ref.record: job for job, run in runs.items()}
        try:
            found = tracker(*where).metric_series(list(runs.values()))
        except Exception as error:  # whatever the backend raises: the logs still draw the runs
            log.warning("Metrics of the %s runs %s not read: %s", where[0], ", ".join(job_of), error)
            continue
        frames.append(
            from_points(
                (job_of[s.run.record], job_of[s.run.record], s.metric, s.steps, s.values) for s in found
            )
        )
    return frames


def tracker_opener(aws: AwsArgs) -> Callable[[str, str], Tracker]:
    """Opens each backend's tracker once per tracking URI, on the operator's AWS connection."""
    from functools import cache

    from airflow_sm_provider.tracking.base import open_tracker

    return cache(lambda backend, tracking_uri: open_tracker(backend, aws, tracking_uri or None))
