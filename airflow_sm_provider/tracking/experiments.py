"""SageMaker Experiments backend: one SDK ``Run`` per task instance.

How it maps onto the SDK (``sagemaker.core.experiments``): ``Run(experiment, run)`` creates the
experiment, the SDK's run group (``Default-Run-Group-{experiment}``) and the run's record, a
trial component named ``{experiment}-{run}`` and tagged ``sagemaker:trial-component-source =
run``; each of them is loaded instead when it exists ("already exists" is reuse), so tasks that
race to create one experiment, and retries of one task, are safe. The job gets the run's own
``experiment_config``, so ``load_run()`` in the training script logs onto this run.

The SDK's clients are built from the Airflow AWS connection (``AwsBaseHook``: region,
credentials, ``endpoint_url``, botocore config) and handed to its ``Session``; the SDK's own
config files apply as for any ``Session``, with its telemetry turned off. Three things are
done without the SDK, as it has no call for them:

- the identity tags are put on the run's record alone with ``AddTags`` (``Run(tags=...)``
  would also tag the shared experiment and run group);
- the lookups (:meth:`ExperimentsTracker.find_runs`, :meth:`ExperimentsTracker.get_runs`,
  :meth:`ExperimentsTracker.experiment_runs`) call ``Search`` over ``ExperimentTrialComponent``
  (the SDK's ``list_runs`` loads every run of an experiment one by one and cannot filter by
  tags);
- per-step metrics are read with ``BatchGetMetrics`` (the SDK only reads summaries).

The SDK's ``Run`` expects one ``with Run(...)`` block to span a run's life, and leaving it
marks the run Completed. Here a run starts in one task process and ends in another (after a
deferral, or in the sensor), so :func:`_logging` opens the SDK's log methods without that
block and sets the status itself. It uses two SDK internals, in that function only: the flag
that allows log calls (``_inside_init_context``) and the run's trial component
(``_trial_component``: status, times, keys to remove). Search is index-backed on AWS: a run
created moments ago may be missing from a lookup for a few seconds.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_sm_provider.naming import JobIdentity, identity_tags
from airflow_sm_provider.tracking import names
from airflow_sm_provider.tracking.base import MetricSeries, RunRef, TrackedRun, Tracker, TrackingConfig
from airflow_sm_provider.tracking.records import (
    MAX_RUN_ARTIFACTS,
    MODEL_ARTIFACT,
    Parameter,
    RunEnd,
    RunStart,
    RunStatus,
    is_outcome_parameter,
)

if TYPE_CHECKING:
    from sagemaker.core.experiments.run import Run
    from sagemaker.core.helper.session_helper import Session

    from airflow_sm_provider.aws_args import AwsArgs

log = logging.getLogger(__name__)

SEARCH_PAGE_SIZE = 100
#: BatchGetMetrics takes at most 100 queries per call.
METRIC_QUERIES_PER_CALL = 100
#: Longest FilterValue of a Search filter (the ``In`` list of record names).
MAX_FILTER_VALUE_LENGTH = 1024


def sagemaker_session(aws: AwsArgs) -> Session:
    """A SageMaker SDK ``Session`` whose clients come from the Airflow AWS connection.

    One boto3 session from ``AwsBaseHook`` (credentials, role assumption, region); the
    ``sagemaker`` and ``sagemaker-metrics`` clients get the connection's ``endpoint_url`` and
    botocore config. The SDK's other clients (S3 and the runtimes, not used by a tracker) come
    from the same session.
    """
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from sagemaker.core.helper.session_helper import Session

    from airflow_sm_provider.hooks.jobs import with_default_retries

    hook = AwsBaseHook(**aws.hook_kwargs(), client_type="sagemaker")
    boto_session = hook.get_session(region_name=hook.region_name)
    config = with_default_retries(hook.config)

    def client(service: str) -> Any:
        endpoint_url = hook.conn_config.get_service_endpoint_url(service_name=service)
        return boto_session.client(service, endpoint_url=endpoint_url, config=config, verify=hook.verify)

    session = Session(
        boto_session=boto_session,
        sagemaker_client=client("sagemaker"),
        sagemaker_metrics_client=client("sagemaker-metrics"),
    )
    # Set afterwards: a config given to the constructor is checked against the SDK's JSON schema
    # three times there (seconds on a busy 2-core machine); this way only the SDK's own config
    # files, if any, are checked, and each Run checks the result once (its telemetry lookup).
    session.sagemaker_config = telemetry_off(session.sagemaker_config)
    return session


def telemetry_off(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The SDK's config with its telemetry opted out (nothing else changed)."""
    result = copy.deepcopy(dict(config or {}))
    result.setdefault("SchemaVersion", "1.0")
    modules = result.setdefault("SageMaker", {}).setdefault("PythonSDK", {}).setdefault("Modules", {})
    modules["TelemetryOptOut"] = True
    return result


@contextmanager
def _logging(run: Run) -> Iterator[Any]:
    """Log on ``run`` and save once, without the ``with Run`` exit that marks a run finished.

    Yields the run's trial component for the status, the times and the keys to remove; the
    log calls go through the SDK's own ``Run`` methods (their value checks and artifact limit).
    Nothing is saved when the block raises.
    """
    run._inside_init_context = True
    try:
        yield run._trial_component
        run.close()  # one UpdateTrialComponent; metrics and lineage buffers are empty
    finally:
        run._inside_init_context = False


def _set_status(component: Any, status: RunStatus, message: str = "") -> None:
    from sagemaker.core.experiments._api_types import TrialComponentStatus

    component.status = TrialComponentStatus(primary_status=status.value, message=message or None)


def _remove(component: Any, parameters: Sequence[str] = (), outputs: Sequence[str] = ()) -> None:
    """Drop keys from the run's record on its next save."""
    for key in parameters:
        component.parameters.pop(key, None)
    for key in outputs:
        component.output_artifacts.pop(key, None)
    component.parameters_to_remove = list(parameters) or None
    component.output_artifacts_to_remove = list(outputs) or None


class ExperimentsTracker(Tracker):
    """Runs in SageMaker Experiments, through the SDK's ``Run`` on an explicit ``Session``."""

    backend = "experiments"

    def __init__(self, session: Session) -> None:
        self.session = session

    @classmethod
    def from_connection(cls, aws: AwsArgs) -> ExperimentsTracker:
        return cls(sagemaker_session(aws))

    # ------------------------------------------------------------------ runs

    def _run(self, experiment: str, run_name: str) -> Run:
        """The SDK's run, created or loaded (with its experiment and run group)."""
        from sagemaker.core.experiments.run import Run

        return Run(experiment_name=experiment, run_name=run_name, sagemaker_session=self.session)

    def _ref(self, run: Run) -> RunRef:
        component = run._trial_component
        return RunRef(
            backend=self.backend,
            experiment=run.experiment_name,
            run_name=run.run_name,
            record=component.trial_component_name,
            arn=component.trial_component_arn,
            job_fields={"ExperimentConfig": dict(run.experiment_config)},
        )

    def _run_of(self, ref: RunRef) -> Run:
        if ref.backend != self.backend:
            raise ValueError(f"run {ref.record!r} is tracked by {ref.backend!r}, not {self.backend!r}")
        run = self._run(ref.experiment, ref.run_name)
        if run._trial_component.trial_component_name != ref.record:
            raise ValueError(f"run {ref.run_name!r} of {ref.experiment!r} is not record {ref.record!r}")
        return run

    def start_run(
        self, config: TrackingConfig, identity: JobIdentity, job_prefix: str, start: RunStart
    ) -> RunRef:
        run = self._run(config.experiment, config.run_name_for(job_prefix, identity))
        ref = self._ref(run)
        self.session.sagemaker_client.add_tags(ResourceArn=ref.arn, Tags=identity_tags(identity))
        with _logging(run) as component:
            stale = [key for key in component.parameters if is_outcome_parameter(key)]
            _remove(
                component, stale, [MODEL_ARTIFACT] if MODEL_ARTIFACT in component.output_artifacts else []
            )
            run.log_parameters(start.parameters)
            for name, uri in start.inputs.items():
                run.log_artifact(name, uri, is_output=False)
            _set_status(component, RunStatus.IN_PROGRESS, "training job starting")
            component.start_time = component.start_time or datetime.now(UTC)
        return ref

    def end_run(self, ref: RunRef, end: RunEnd) -> None:
        run = self._run_of(ref)
        with _logging(run) as component:
            run.log_parameters(end.parameters)
            for name, uri in end.outputs.items():
                run.log_artifact(name, uri, is_output=True)
            _set_status(component, end.status, end.message)
            component.end_time = end.end_time or datetime.now(UTC)

    def log_artifacts(self, ref: RunRef, artifacts: Mapping[str, str], *, output: bool = True) -> None:
        run = self._run_of(ref)
        with _logging(run) as component:
            current = component.output_artifacts if output else component.input_artifacts
            total = len(set(current) | set(artifacts))
            if total > MAX_RUN_ARTIFACTS:
                side = "output" if output else "input"
                raise ValueError(
                    f"run {ref.record}: {total} {side} artifacts, above the SDK's {MAX_RUN_ARTIFACTS}"
                )
            for name, uri in artifacts.items():
                current.pop(name, None)  # a name logged again is replaced, not counted twice
                run.log_artifact(name, uri, is_output=output)

    # ------------------------------------------------------------------ lookups

    def find_runs(
        self, namespace: str, dag_id: str, run_id: str, *, experiment: str | None = None
    ) -> list[TrackedRun]:
        tags = {
            **names.dag_run_tags(namespace, dag_id, run_id),
            names.RUN_SOURCE_TAG[0]: names.RUN_SOURCE_TAG[1],
        }
        filters = [
            {"Name": f"Tags.{key}", "Operator": "Equals", "Value": value} for key, value in tags.items()
        ]
        if experiment:
            filters.append(
                {
                    "Name": "Parents.ExperimentName",
                    "Operator": "Equals",
                    "Value": names.experiment_name(experiment),
                }
            )
        runs = [_tracked(record) for record in self._search(filters)]
        # Search matches tag values as the service does; keep the exact ones.
        runs = [run for run in runs if all(run.tags.get(key) == value for key, value in tags.items())]
        return sorted(runs, key=lambda run: run.ref.record)

    def experiment_runs(self, experiment: str) -> list[TrackedRun]:
        filters = [
            {
                "Name": f"Tags.{names.RUN_SOURCE_TAG[0]}",
                "Operator": "Equals",
                "Value": names.RUN_SOURCE_TAG[1],
            },
            {
                "Name": "Parents.ExperimentName",
                "Operator": "Equals",
                "Value": names.experiment_name(experiment),
            },
        ]
        return sorted(map(_tracked, self._search(filters)), key=lambda run: run.ref.record)

    def get_runs(self, refs: Sequence[RunRef]) -> list[TrackedRun]:
        found: dict[str, TrackedRun] = {}
        for chunk in _name_chunks([ref.record for ref in refs]):
            filters = [{"Name": "TrialComponentName", "Operator": "In", "Value": ",".join(chunk)}]
            found.update({run.ref.record: run for run in map(_tracked, self._search(filters))})
        missing = [ref.record for ref in refs if ref.record not in found]
        if missing:
            raise KeyError(f"no tracked run named {', '.join(missing)}")
        return [found[ref.record] for ref in refs]

    def _search(self, filters: list[dict[str, str]]) -> Iterator[dict[str, Any]]:
        """Every page of a Search over trial components."""
        params: dict[str, Any] = {
            "Resource": "ExperimentTrialComponent",
            "SearchExpression": {"Filters": filters},
            "MaxResults": SEARCH_PAGE_SIZE,
        }
        while True:
            page = self.session.sagemaker_client.search(**params)
            yield from page.get("Results") or []
            if not page.get("NextToken"):
                return
            params["NextToken"] = page["NextToken"]

    def metric_series(self, runs: Sequence[TrackedRun]) -> list[MetricSeries]:
        queries = [(run.ref, metric) for run in runs for metric in run.metrics]
        series: list[MetricSeries] = []
        for start in range(0, len(queries), METRIC_QUERIES_PER_CALL):
            batch = queries[start : start + METRIC_QUERIES_PER_CALL]
            response = self.session.sagemaker_metrics_client.batch_get_metrics(
                MetricQueries=[
                    {
                        "MetricName": metric,
                        "ResourceArn": ref.arn,
                        "MetricStat": "Last",  # a step logged twice (a spot restart): the latest
                        "Period": "IterationNumber",
                        "XAxisType": "IterationNumber",
                    }
                    for ref, metric in batch
                ]
            )
            for (ref, metric), result in zip(batch, response["MetricQueryResults"], strict=True):
                if result["Status"] not in ("Complete", "Truncated"):
                    raise RuntimeError(
                        f"BatchGetMetrics of {metric!r} on run {ref.record}: {result['Status']}: "
                        f"{result.get('Message', '')}"
                    )
                if result["Status"] == "Truncated":
                    log.warning("Metric %s of run %s was truncated by BatchGetMetrics", metric, ref.record)
                series.append(
                    MetricSeries(
                        run=ref,
                        metric=metric,
                        steps=tuple(int(step) for step in result.get("XAxisValues") or []),
                        values=tuple(float(value) for value in result.get("MetricValues") or []),
                    )
                )
        return series


def _name_chunks(record_names: Sequence[str]) -> Iterator[list[str]]:
    """Record names in groups whose comma-joined text fits one Search FilterValue."""
    chunk: list[str] = []
    for name in dict.fromkeys(record_names):
        if chunk and len(",".join([*chunk, name])) > MAX_FILTER_VALUE_LENGTH:
            yield chunk
            chunk = []
        chunk.append(name)
    if chunk:
        yield chunk


def _value(parameter: Mapping[str, Any]) -> Parameter:
    number = parameter.get("NumberValue")
    return number if number is not None else str(parameter.get("StringValue", ""))


def _tracked(result: Mapping[str, Any]) -> TrackedRun:
    """A Search result (``TrialComponent`` record) as a :class:`TrackedRun`."""
    component = result["TrialComponent"]
    name = component["TrialComponentName"]
    experiment = next(
        (p["ExperimentName"] for p in component.get("Parents") or [] if p.get("ExperimentName")), ""
    )
    prefix = f"{experiment.lower()}-"
    status = component.get("Status") or {}
    return TrackedRun(
        ref=RunRef(
            backend=ExperimentsTracker.backend,
            experiment=experiment,
            run_name=name[len(prefix) :] if experiment and name.startswith(prefix) else name,
            record=name,
            arn=component.get("TrialComponentArn", ""),
        ),
        status=status.get("PrimaryStatus"),
        message=status.get("Message") or "",
        parameters={key: _value(value) for key, value in (component.get("Parameters") or {}).items()},
        inputs={key: a.get("Value", "") for key, a in (component.get("InputArtifacts") or {}).items()},
        outputs={key: a.get("Value", "") for key, a in (component.get("OutputArtifacts") or {}).items()},
        tags={t["Key"]: t.get("Value", "") for t in component.get("Tags") or []},
        metrics=tuple(
            dict.fromkeys(m["MetricName"] for m in component.get("Metrics") or [] if m.get("MetricName"))
        ),
    )
