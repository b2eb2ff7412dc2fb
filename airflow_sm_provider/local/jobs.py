"""Training and processing jobs of the local engine: the API handlers.

Requests arrive already validated against botocore's service model; the handlers apply the
create-time rules (:mod:`rules`: service rules the model cannot express, and what the engine
can run), write the job record to the Store (:mod:`job_records`), give the job its trial
component (:mod:`job_experiments`) and start its thread (:mod:`scheduler`). Describe, List,
Stop, Delete and the tag calls read and change the records. :meth:`JobsBackend.interrupt`
simulates a spot interruption of a managed spot job so that resuming from checkpoints can be
tested.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import partialmethod
from typing import Any

from airflow_sm_provider.local import job_experiments
from airflow_sm_provider.local.errors import ResourceInUse, ValidationException
from airflow_sm_provider.local.job_records import (
    KINDS,
    PROCESSING,
    TRAINING,
    Kind,
    filter_sort,
    to_describe_training,
)
from airflow_sm_provider.local.lifecycle import Event, IllegalTransition
from airflow_sm_provider.local.responses import MAX_TAGS, Handler, list_page, merge_tags, pick, remove_tags
from airflow_sm_provider.local.rules import DEFAULT_TRAINING_RUNTIME, check_processing, check_training
from airflow_sm_provider.local.scheduler import ActiveJob, JobThreads
from airflow_sm_provider.local.store import AlreadyExists, Record


class JobsBackend(JobThreads):
    """SageMaker training and processing jobs, run for real as local subprocesses.

    The API handlers are here; the threads they start, and recovery and shutdown, are
    :class:`JobThreads`' (:mod:`scheduler`). ``mlflow`` (set by the engine) links training
    jobs with ``MlflowConfig`` to their MLflow runs (:mod:`mlflow_backend`).
    """

    mlflow: Any = None

    def operations(self) -> dict[str, Handler]:
        return {
            "CreateTrainingJob": self.create_training_job,
            "DescribeTrainingJob": self.describe_training_job,
            "ListTrainingJobs": self.list_training_jobs,
            "StopTrainingJob": self.stop_training_job,
            "DeleteTrainingJob": self.delete_training_job,
            "CreateProcessingJob": self.create_processing_job,
            "DescribeProcessingJob": self.describe_processing_job,
            "ListProcessingJobs": self.list_processing_jobs,
            "StopProcessingJob": self.stop_processing_job,
            "AddTags": self.add_tags,
            "ListTags": self.list_tags,
            "DeleteTags": self.delete_tags,
        }

    # -- training --------------------------------------------------------------------------
    def create_training_job(self, params: dict) -> dict:
        check_training(params)
        defaults = {
            "StoppingCondition": params.get("StoppingCondition")
            or {"MaxRuntimeInSeconds": DEFAULT_TRAINING_RUNTIME},
            "EnableNetworkIsolation": params.get("EnableNetworkIsolation", False),
            "EnableInterContainerTrafficEncryption": params.get(
                "EnableInterContainerTrafficEncryption", False
            ),
            "EnableManagedSpotTraining": params.get("EnableManagedSpotTraining", False),
        }
        return self._create(KINDS[TRAINING], params, defaults, self._run_training)

    def _create(
        self, k: Kind, params: dict, defaults: Mapping[str, Any], target: Callable[[str, ActiveJob], None]
    ) -> dict:
        """Store a new job and start it; a name taken (even by a concurrent create) is ResourceInUse.

        The record goes in before the trial component, so a refused duplicate creates none; if
        linking refuses the job (an unknown trial), the record goes again.
        """
        name = params[k.name_key]
        arn = self.ctx.arn(f"{k.word}-job", name)
        now = self.ctx.now()
        record: Record = {key: v for key, v in params.items() if key != "Tags"}
        record.update({k.arn_key: arn, "CreationTime": now, **defaults, "Tags": params.get("Tags", [])})
        record.update(k.new_state(now))
        if params.get("ExperimentConfig"):
            record["ExperimentConfig"] = job_experiments.run_component_name(params["ExperimentConfig"])
        mlflow_config = params.get("MlflowConfig")
        if mlflow_config:
            if self.mlflow is None:
                raise ValidationException("MlflowConfig: this engine serves no MLflow tracking servers")
            self.mlflow.resolve(mlflow_config["MlflowResourceArn"])  # a bad ARN: nothing is created
        try:
            self.ctx.store.insert(k.kind, name, record)
        except AlreadyExists as err:
            raise ResourceInUse(
                f"{k.word.capitalize()} job names must be unique within an AWS account and region, and a "
                f"{k.word} job with this name already exists ({arn})"
            ) from err
        try:
            job_experiments.link_job(self.experiments, k.word, record)
            if mlflow_config:
                linked = self.mlflow.link_job(name, arn, mlflow_config, params.get("Environment") or {})
                self.ctx.store.update(k.kind, name, lambda current: {**current, **linked})
        except BaseException:
            self.ctx.store.delete(k.kind, name)
            raise
        self._changed(k.kind, None, record)
        self._start(k.kind, name, target)
        return {k.arn_key: arn}

    def _describe(self, k: Kind, params: dict) -> dict:
        return pick(self._get(k.kind, params[k.name_key]), k.fields)

    def _list(self, k: Kind, params: dict) -> dict:
        records = filter_sort(self.ctx.store.list(k.kind), params, k.status_key, k.name_key)
        return list_page([pick(r, k.summary_fields) for r in records], params, f"{k.kind}Summaries")

    def _stop(self, k: Kind, params: dict) -> dict:
        name = params[k.name_key]
        self._get(k.kind, name)
        try:
            self._advance(k.kind, name, Event.STOP, strict=True)
        except IllegalTransition as err:
            status = self._get(k.kind, name)[k.status_key]
            raise ValidationException(
                f"The request was rejected because the {k.word} job is in status {status}."
            ) from err
        self._signal_stop(k.kind, name)
        return {}

    describe_training_job = partialmethod(_describe, KINDS[TRAINING])
    list_training_jobs = partialmethod(_list, KINDS[TRAINING])
    stop_training_job = partialmethod(_stop, KINDS[TRAINING])
    describe_processing_job = partialmethod(_describe, KINDS[PROCESSING])
    list_processing_jobs = partialmethod(_list, KINDS[PROCESSING])
    stop_processing_job = partialmethod(_stop, KINDS[PROCESSING])

    def delete_training_job(self, params: dict) -> dict:
        name = params["TrainingJobName"]
        record = self._get(TRAINING, name)
        if record["TrainingJobStatus"] not in KINDS[TRAINING].terminal:
            raise ValidationException(
                f"The training job {name} is in status {record['TrainingJobStatus']}; "
                "only a completed, failed or stopped training job can be deleted."
            )
        self.ctx.store.delete(TRAINING, name)
        return {}

    def interrupt(self, job_name: str) -> None:
        """Simulate a spot interruption: the job checkpoints, stops, and restarts from S3 checkpoints."""
        record = self._get(TRAINING, job_name)
        if not record.get("EnableManagedSpotTraining"):
            raise ValidationException(f"Training job {job_name} is not a managed spot training job")
        active = self._active.get(f"{TRAINING}/{job_name.lower()}")
        if active is None or record["SecondaryStatus"] not in ("Downloading", "Training"):
            raise ValidationException(f"Training job {job_name} is not running")
        active.control.interrupt.set()

    def search_records_training(self) -> list[dict[str, Any]]:
        """DescribeTrainingJob-shaped records with their Tags, for Search."""
        return [{**to_describe_training(r), "Tags": r.get("Tags", [])} for r in self.ctx.store.iter(TRAINING)]

    # -- processing ------------------------------------------------------------------------
    def create_processing_job(self, params: dict) -> dict:
        check_processing(params)
        return self._create(KINDS[PROCESSING], params, {}, self._run_processing)

    # -- tags ------------------------------------------------------------------------------
    def _experiments_own(self, arn: str) -> bool:
        """Experiments, trials and trial components keep their tags in the experiments backend."""
        return self.experiments is not None and bool(self.experiments.owns_arn(arn))

    def _tagged(self, arn: str) -> tuple[str, str]:
        """Store kind and name of a job's ARN; its tags live in the record's ``Tags`` list."""
        match = re.fullmatch(r"arn:aws[a-z-]*:sagemaker:[^:]*:\d*:(training-job|processing-job)/(.+)", arn)
        if match is None:
            raise ValidationException(f"The local engine cannot tag resource {arn}")
        kind = TRAINING if match.group(1) == "training-job" else PROCESSING
        if self.ctx.store.get(kind, match.group(2)) is None:
            raise ValidationException(f"Resource {arn} does not exist")
        return kind, match.group(2)

    def add_tags(self, params: dict) -> dict:
        arn, tags = params["ResourceArn"], params["Tags"]
        if self._experiments_own(arn):
            return {"Tags": self.experiments.add_tags(arn, tags)}
        kind, name = self._tagged(arn)

        self.ctx.store.update(kind, name, lambda r: r.update(Tags=merge_tags(r.get("Tags", []), tags)))
        return {"Tags": tags}

    def list_tags(self, params: dict) -> dict:
        arn = params["ResourceArn"]
        if self._experiments_own(arn):
            tags = self.experiments.list_tags(arn)
        else:
            tags = (self.ctx.store.get(*self._tagged(arn)) or {}).get("Tags", [])
        return list_page(list(tags), params, "Tags", default_size=MAX_TAGS)

    def delete_tags(self, params: dict) -> dict:
        arn, keys = params["ResourceArn"], params["TagKeys"]
        if self._experiments_own(arn):
            self.experiments.delete_tags(arn, keys)
            return {}
        kind, name = self._tagged(arn)
        self.ctx.store.update(kind, name, lambda r: r.update(Tags=remove_tags(r.get("Tags", []), keys)))
        return {}
