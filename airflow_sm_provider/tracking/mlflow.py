"""MLflow backend: one MLflow run per task instance, on any MLflow tracking server.

The tracking URI is the config's ``tracking_uri``, else ``MLFLOW_TRACKING_URI``. It may be a
self-hosted server (``http://...``), a local store, or the ARN of a SageMaker managed MLflow
tracking server or MLflow App: the MLflow client resolves ARNs through the ``sagemaker-mlflow``
plugin (SigV4-signed with the default AWS credential chain, e.g. MWAA's execution role), and
the training job is created with ``MlflowConfig`` so SageMaker links it to the run. The plugin
signs for the process's tracking URI (``mlflow.get_tracking_uri()``), not the client's, so a
tracker on an ARN sets the process's tracking URI to it (a task process tracks one run).

The content is that of the SageMaker Experiments backend, within MLflow's rules:

- the run is found by its identity tags (``airflow-sm:*``, as on jobs), never by its name (MLflow
  run names are not unique), so every try of one task instance continues the same run;
- parameters logged at the job's start are MLflow params, which cannot change once logged: a
  value that differs on a later try keeps the first try's value and is logged as a warning;
- the outcome of a try (``job.*`` facts, ``final.*`` metrics) changes from try to try, so it is
  kept in tags ``outcome.<parameter>``, cleared (with the status message and the model) when a
  new try starts;
- input and output artifacts (S3 URIs) are tags ``input.<name>`` / ``output.<name>``; plots
  recorded with :meth:`MlflowTracker.log_artifacts` are also copied from S3 into the run's
  artifact store (``plots/``), so MLflow's UI shows them;
- status: InProgress is ``RUNNING``, Completed ``FINISHED``, Failed ``FAILED``, Stopped
  ``KILLED``; the failure reason is the tag ``status.message``;
- per-step metrics are what the training script logs (``mlflow.log_metric(..., step=epoch)``):
  the job's ``Environment`` carries ``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME`` and
  ``MLFLOW_RUN_ID``, so the MLflow client in the script resumes this run on AWS and on the local
  engine alike, whatever SageMaker adds for ``MlflowConfig`` on its own.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from airflow_sm_provider.errors import ConfigValidationError
from airflow_sm_provider.naming import IDENTITY_TAG, TAG_PREFIX, JobIdentity, identity_tags
from airflow_sm_provider.tracking import names
from airflow_sm_provider.tracking.base import MetricSeries, RunRef, TrackedRun, Tracker, TrackingConfig
from airflow_sm_provider.tracking.records import (
    MODEL_ARTIFACT,
    Parameter,
    RunEnd,
    RunStart,
    RunStatus,
    is_outcome_parameter,
    parameter_value,
)

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from airflow_sm_provider.aws_args import AwsArgs

log = logging.getLogger(__name__)

OUTCOME_PREFIX = "outcome."
INPUT_PREFIX = "input."
OUTPUT_PREFIX = "output."
MESSAGE_TAG = "status.message"
#: Where plots copied into the run's artifact store go.
PLOTS_DIR = "plots"
#: Output artifacts copied into MLflow's artifact store (by suffix): the charts.
COPIED_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg")
#: Params, tags per ``log_batch`` call (MLflow's limit is 100 each).
BATCH_SIZE = 100
SEARCH_PAGE_SIZE = 1000
#: A SageMaker managed MLflow resource (tracking server or MLflow App), as MlflowConfig takes it.
ARN_PATTERN = re.compile(r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:mlflow-[a-zA-Z-]*/.*")

_MLFLOW_STATUS = {
    RunStatus.IN_PROGRESS: "RUNNING",
    RunStatus.STOPPING: "RUNNING",
    RunStatus.COMPLETED: "FINISHED",
    RunStatus.FAILED: "FAILED",
    RunStatus.STOPPED: "KILLED",
}
_RUN_STATUS = {"RUNNING": RunStatus.IN_PROGRESS, "SCHEDULED": RunStatus.IN_PROGRESS} | {
    mlflow: status for status, mlflow in _MLFLOW_STATUS.items() if mlflow != "RUNNING"
}


def tracking_uri_of(given: str | None) -> str:
    """The tracking URI to use: the one given, else ``MLFLOW_TRACKING_URI``."""
    uri = given or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        raise ConfigValidationError(
            "training", [("tracking_uri", "required for the mlflow backend (or set MLFLOW_TRACKING_URI)")]
        )
    return uri


def job_fields(tracking_uri: str, experiment: str, run_name: str, run_id: str) -> dict[str, Any]:
    """What the job's Create request gets: the run in its ``Environment``; ``MlflowConfig`` for ARNs."""
    fields: dict[str, Any] = {
        "Environment": {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_EXPERIMENT_NAME": experiment,
            "MLFLOW_RUN_ID": run_id,
        }
    }
    if ARN_PATTERN.fullmatch(tracking_uri):
        fields["MlflowConfig"] = {
            "MlflowResourceArn": tracking_uri,
            "MlflowExperimentName": experiment,
            "MlflowRunName": run_name,
        }
    return fields


def _text(value: Parameter) -> str:
    return str(value)


class MlflowTracker(Tracker):
    """Runs in an MLflow tracking server, through ``MlflowClient``."""

    backend = "mlflow"

    def __init__(self, client: MlflowClient, tracking_uri: str, aws: AwsArgs | None = None) -> None:
        self.client = client
        self.tracking_uri = tracking_uri
        self.aws = aws
        self._experiments: dict[str, str] = {}  # id -> name

    @classmethod
    def from_connection(cls, aws: AwsArgs, tracking_uri: str | None = None) -> MlflowTracker:
        """A client of ``tracking_uri`` (or ``MLFLOW_TRACKING_URI``); S3 reads on the connection."""
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = tracking_uri_of(tracking_uri)
        if ARN_PATTERN.fullmatch(uri):
            # The sagemaker-mlflow plugin signs for the process's tracking URI, not the client's.
            mlflow.set_tracking_uri(uri)
        return cls(MlflowClient(tracking_uri=uri), uri, aws)

    # ------------------------------------------------------------------ runs

    def _experiment_id(self, name: str, *, create: bool) -> str | None:
        """The experiment's id; created when missing and ``create`` (a race to create is reuse)."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        if not create:
            return None
        try:
            return str(self.client.create_experiment(name))
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return str(self.client.get_experiment_by_name(name).experiment_id)

    def _ref(self, run: Run, experiment: str) -> RunRef:
        return RunRef(
            backend=self.backend,
            experiment=experiment,
            run_name=run.info.run_name,
            record=run.info.run_id,
            tracking_uri=self.tracking_uri,
            job_fields=job_fields(self.tracking_uri, experiment, run.info.run_name, run.info.run_id),
        )

    def start_run(
        self, config: TrackingConfig, identity: JobIdentity, job_prefix: str, start: RunStart
    ) -> RunRef:
        experiment_id = self._experiment_id(config.experiment, create=True)
        tags = {tag["Key"]: tag["Value"] for tag in identity_tags(identity)}
        digest = tags[IDENTITY_TAG]
        found = self._search([experiment_id], f"tags.`{IDENTITY_TAG}` = '{_quoted(digest)}'")
        run = next((r for r in found if r.data.tags.get(IDENTITY_TAG) == digest), None)
        if run is None:
            run = self.client.create_run(
                experiment_id, run_name=config.run_name_for(job_prefix, identity), tags=tags
            )
        else:  # a retry: clear the outcome of the try before
            stale = [key for key in run.data.tags if key.startswith(OUTCOME_PREFIX) or key == MESSAGE_TAG]
            stale += [key for key in (f"{OUTPUT_PREFIX}{MODEL_ARTIFACT}",) if key in run.data.tags]
            for key in stale:
                self.client.delete_tag(run.info.run_id, key)
            self.client.update_run(run.info.run_id, status="RUNNING")
        params = self._new_params(run, start.parameters)
        self._log(
            run.info.run_id,
            params=params,
            tags={f"{INPUT_PREFIX}{name}": uri for name, uri in start.inputs.items()},
        )
        return self._ref(run, config.experiment)

    def _new_params(self, run: Run, parameters: Mapping[str, Parameter]) -> dict[str, str]:
        """The parameters not logged yet; a changed one keeps its first value (MLflow's rule)."""
        logged = run.data.params
        changed = [k for k, v in parameters.items() if k in logged and logged[k] != _text(v)]
        if changed:
            log.warning(
                "Run %s keeps the first value of parameter(s) %s: MLflow params cannot change",
                run.info.run_id,
                ", ".join(sorted(changed)),
            )
        return {k: _text(v) for k, v in parameters.items() if k not in logged}

    def _log(
        self, run_id: str, *, params: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None
    ) -> None:
        """Params and tags in batches within MLflow's per-call limits."""
        from mlflow.entities import Param, RunTag

        param_items, tag_items = list((params or {}).items()), list((tags or {}).items())
        for i in range(0, max(len(param_items), len(tag_items)), BATCH_SIZE):
            self.client.log_batch(
                run_id,
                params=[Param(k, v) for k, v in param_items[i : i + BATCH_SIZE]],
                tags=[RunTag(k, v) for k, v in tag_items[i : i + BATCH_SIZE]],
            )

    def end_run(self, ref: RunRef, end: RunEnd) -> None:
        run_id = self._check(ref)
        tags = {f"{OUTCOME_PREFIX}{name}": _text(value) for name, value in end.parameters.items()}
        tags.update({f"{OUTPUT_PREFIX}{name}": uri for name, uri in end.outputs.items()})
        if end.message:
            tags[MESSAGE_TAG] = end.message
        self._log(run_id, tags=tags)
        status = _MLFLOW_STATUS[end.status]
        if status == "RUNNING":
            self.client.update_run(run_id, status=status)
            return
        end_time = end.end_time.timestamp() if end.end_time is not None else time.time()
        self.client.set_terminated(run_id, status=status, end_time=int(end_time * 1000))

    def log_artifacts(self, ref: RunRef, artifacts: Mapping[str, str], *, output: bool = True) -> None:
        run_id = self._check(ref)
        prefix = OUTPUT_PREFIX if output else INPUT_PREFIX
        self._log(run_id, tags={f"{prefix}{name}": uri for name, uri in artifacts.items()})
        copies = {
            name: uri
            for name, uri in artifacts.items()
            if output and uri.startswith("s3://") and uri.lower().endswith(COPIED_SUFFIXES)
        }
        if copies:
            self._copy_from_s3(run_id, copies)

    def _copy_from_s3(self, run_id: str, artifacts: Mapping[str, str]) -> None:
        """Each S3 object into the run's artifact store as ``plots/<name><suffix>`` (replaced)."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from airflow_sm_provider.aws_args import AwsArgs
        from airflow_sm_provider.s3_keys import parse_s3_uri

        s3 = S3Hook(**(self.aws or AwsArgs()).hook_kwargs()).get_conn()
        with tempfile.TemporaryDirectory(prefix="mlflow-artifacts-") as directory:
            for name, uri in artifacts.items():
                bucket, key = parse_s3_uri(uri)
                path = Path(directory) / f"{artifact_file_name(name)}{PurePosixPath(key).suffix.lower()}"
                s3.download_file(bucket, key, str(path))
                self.client.log_artifact(run_id, str(path), artifact_path=PLOTS_DIR)

    def _check(self, ref: RunRef) -> str:
        if ref.backend != self.backend:
            raise ValueError(f"run {ref.record!r} is tracked by {ref.backend!r}, not {self.backend!r}")
        return ref.record

    # ------------------------------------------------------------------ lookups

    def find_runs(
        self, namespace: str, dag_id: str, run_id: str, *, experiment: str | None = None
    ) -> list[TrackedRun]:
        tags = names.dag_run_tags(namespace, dag_id, run_id)
        if experiment:
            experiment_id = self._experiment_id(names.experiment_name(experiment), create=False)
            if experiment_id is None:
                return []
            ids = [experiment_id]
        else:
            ids = [str(e.experiment_id) for e in self._experiments_all()]
        query = " and ".join(f"tags.`{key}` = '{_quoted(value)}'" for key, value in tags.items())
        found = [self._tracked(run) for run in self._search(ids, query)] if ids else []
        runs = [run for run in found if all(run.tags.get(key) == value for key, value in tags.items())]
        return sorted(runs, key=lambda run: run.ref.record)

    def get_runs(self, refs: Sequence[RunRef]) -> list[TrackedRun]:
        from mlflow.exceptions import MlflowException

        runs = []
        for ref in refs:
            try:
                runs.append(self._tracked(self.client.get_run(self._check(ref))))
            except MlflowException as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                raise KeyError(f"no tracked run with id {ref.record}") from error
        return runs

    def _experiments_all(self) -> Iterator[Any]:
        """Every active experiment (all pages)."""
        token = None
        while True:
            page = self.client.search_experiments(max_results=SEARCH_PAGE_SIZE, page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def _search(self, experiment_ids: list[str], query: str) -> Iterator[Run]:
        """Every page of a run search (active runs)."""
        token = None
        while True:
            page = self.client.search_runs(
                experiment_ids, query, max_results=SEARCH_PAGE_SIZE, page_token=token
            )
            yield from page
            token = page.token
            if not token:
                return

    def _tracked(self, run: Run) -> TrackedRun:
        experiment = self._experiment_name(run.info.experiment_id)
        tags = run.data.tags
        parameters: dict[str, Parameter] = {k: parameter_value(v) for k, v in run.data.params.items()}
        parameters.update(
            {
                name: parameter_value(value)
                for name, value in _prefixed(tags, OUTCOME_PREFIX).items()
                if is_outcome_parameter(name)
            }
        )
        return TrackedRun(
            ref=self._ref(run, experiment),
            status=_RUN_STATUS.get(run.info.status, RunStatus.IN_PROGRESS).value,
            message=tags.get(MESSAGE_TAG, ""),
            parameters=parameters,
            inputs=_prefixed(tags, INPUT_PREFIX),
            outputs=_prefixed(tags, OUTPUT_PREFIX),
            tags={k: v for k, v in tags.items() if k.startswith(TAG_PREFIX)},
            metrics=tuple(sorted(run.data.metrics)),
        )

    def _experiment_name(self, experiment_id: str) -> str:
        if experiment_id not in self._experiments:
            self._experiments[experiment_id] = self.client.get_experiment(experiment_id).name
        return self._experiments[experiment_id]

    def metric_series(self, runs: Sequence[TrackedRun]) -> list[MetricSeries]:
        series = []
        for run in runs:
            for metric in run.metrics:
                latest: dict[int, tuple[int, float]] = {}  # a step logged twice (a restart): the latest
                for point in self.client.get_metric_history(run.ref.record, metric):
                    if point.step not in latest or point.timestamp >= latest[point.step][0]:
                        latest[point.step] = (point.timestamp, float(point.value))
                steps = sorted(latest)
                series.append(
                    MetricSeries(
                        run=run.ref,
                        metric=metric,
                        steps=tuple(steps),
                        values=tuple(latest[step][1] for step in steps),
                    )
                )
        return series


def artifact_file_name(name: str) -> str:
    """An artifact's name as a file name: ``curve:val_loss`` -> ``curve-val_loss``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def _prefixed(tags: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {key[len(prefix) :]: value for key, value in tags.items() if key.startswith(prefix)}


def _quoted(value: str) -> str:
    """A value inside single quotes of MLflow's search syntax."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
