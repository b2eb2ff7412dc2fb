"""SageMaker Experiments in the local engine: experiments, trials, trial components.

Records live in the engine's Store under the kinds ``Experiment``, ``Trial`` and
``TrialComponent`` (names compare case-insensitively there, as in SageMaker). A trial
component's associations are kept on the component itself (``Parents``: trial and
experiment names), so there is one source of truth for "which components make up a trial".
Metric points and the ``sagemaker-metrics`` API live in :mod:`metrics`; the ``Metrics``
summaries of DescribeTrialComponent and Search are computed from them on read.

Every response is built by an explicit function listing the members of its botocore shape.
Service rules that the SageMaker SDK depends on are kept: creating an entity that exists is a
``ValidationException`` whose message says "already exists" (``Run``/``load_run`` load the
existing run on it); deleting an experiment with trials, a trial with components, or a
component still associated with a trial is refused, as the API reference documents.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from airflow_sm_provider.local.context import EngineContext
from airflow_sm_provider.local.errors import ResourceNotFound, ValidationException
from airflow_sm_provider.local.experiment_records import (
    ARN_TYPES,
    COMPONENT,
    EXPERIMENT,
    JOB_SOURCE_TYPES,
    NOUNS,
    TRIAL,
    JobType,
    artifact,
    check_map_sizes,
    component_summary,
    created_between,
    describe_component,
    describe_experiment,
    describe_trial,
    experiment_summary,
    job_component_name,
    kind_of_arn,
    name_of,
    parameter,
    search_component,
    search_experiment,
    search_record_members,
    search_trial,
    to_epoch,
    trial_summary,
)
from airflow_sm_provider.local.metrics import metric_summaries
from airflow_sm_provider.local.responses import Handler, list_page, merge_tags, remove_tags
from airflow_sm_provider.local.search import run_search
from airflow_sm_provider.local.store import AlreadyExists, Record


class ExperimentsBackend:
    """Handlers of the Experiments and Search operations, and the jobs' trial components."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self._lock = threading.RLock()  # check-then-write sequences span several records
        self._search_providers: dict[str, Callable[[], list[Record]]] = {}

    def operations(self) -> dict[str, Handler]:
        return {
            "CreateExperiment": self.create_experiment,
            "DescribeExperiment": self.describe_experiment,
            "ListExperiments": self.list_experiments,
            "UpdateExperiment": self.update_experiment,
            "DeleteExperiment": self.delete_experiment,
            "CreateTrial": self.create_trial,
            "DescribeTrial": self.describe_trial,
            "ListTrials": self.list_trials,
            "UpdateTrial": self.update_trial,
            "DeleteTrial": self.delete_trial,
            "CreateTrialComponent": self.create_trial_component,
            "DescribeTrialComponent": self.describe_trial_component,
            "ListTrialComponents": self.list_trial_components,
            "UpdateTrialComponent": self.update_trial_component,
            "DeleteTrialComponent": self.delete_trial_component,
            "AssociateTrialComponent": self.associate_trial_component,
            "DisassociateTrialComponent": self.disassociate_trial_component,
            "Search": self.search,
        }

    def register_search_resource(self, resource: str, provider: Callable[[], list[Record]]) -> None:
        """Serve Search over ``resource`` from records another backend supplies."""
        self._search_providers[resource] = provider

    # -- shared helpers -------------------------------------------------------------------
    def _arn(self, kind: str, name: str) -> str:
        return self.ctx.arn(ARN_TYPES[kind], name)

    def _get(self, kind: str, name: str) -> Record:
        record = self.store.get(kind, name)
        if record is None:
            raise ResourceNotFound(f"{NOUNS[kind]} '{self._arn(kind, name)}' does not exist.")
        return record

    def _insert(self, kind: str, name: str, record: Record) -> None:
        try:
            self.store.insert(kind, name, record)
        except AlreadyExists:
            raise ValidationException(f"{NOUNS[kind]} '{self._arn(kind, name)}' already exists.") from None

    def _components(self) -> list[Record]:
        return self.store.list(COMPONENT)

    def _components_of_trial(self, trial_name: str) -> list[Record]:
        key = trial_name.lower()
        return [c for c in self._components() if any(p["TrialName"].lower() == key for p in c["Parents"])]

    # -- experiments ----------------------------------------------------------------------
    def create_experiment(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ExperimentName"]
        now = self.ctx.now()
        record = {
            "ExperimentName": name,
            "ExperimentArn": self._arn(EXPERIMENT, name),
            "DisplayName": params.get("DisplayName") or name,
            "CreationTime": now,
            "LastModifiedTime": now,
            "Tags": list(params.get("Tags") or []),
        }
        if "Description" in params:
            record["Description"] = params["Description"]
        self._insert(EXPERIMENT, name, record)
        return {"ExperimentArn": record["ExperimentArn"]}

    def describe_experiment(self, params: dict[str, Any]) -> dict[str, Any]:
        return describe_experiment(self._get(EXPERIMENT, params["ExperimentName"]))

    def list_experiments(self, params: dict[str, Any]) -> dict[str, Any]:
        records = created_between(self.store.list(EXPERIMENT), params)
        ordered = self._sorted(records, params, "ExperimentName")
        return list_page([experiment_summary(r) for r in ordered], params, "ExperimentSummaries")

    def update_experiment(self, params: dict[str, Any]) -> dict[str, Any]:
        def change(record: Record) -> None:
            for field in ("DisplayName", "Description"):
                if field in params:
                    record[field] = params[field]
            record["LastModifiedTime"] = self.ctx.now()

        record = self._update(EXPERIMENT, params["ExperimentName"], change)
        return {"ExperimentArn": record["ExperimentArn"]}

    def delete_experiment(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            record = self._get(EXPERIMENT, params["ExperimentName"])
            key = record["ExperimentName"].lower()
            trials = [t["TrialName"] for t in self.store.iter(TRIAL) if t["ExperimentName"].lower() == key]
            if trials:
                raise ValidationException(
                    f"Experiment '{record['ExperimentArn']}' has {len(trials)} associated trial(s); "
                    "all trials associated with the experiment must be deleted first."
                )
            self.store.delete(EXPERIMENT, record["ExperimentName"])
        return {"ExperimentArn": record["ExperimentArn"]}

    # -- trials ---------------------------------------------------------------------------
    def create_trial(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            experiment = self._get(EXPERIMENT, params["ExperimentName"])
            record = self._new_trial(params["TrialName"], experiment["ExperimentName"], params)
            self._insert(TRIAL, record["TrialName"], record)
        return {"TrialArn": record["TrialArn"]}

    def _new_trial(
        self, name: str, experiment_name: str, params: dict[str, Any], source: dict[str, str] | None = None
    ) -> Record:
        now = self.ctx.now()
        record = {
            "TrialName": name,
            "TrialArn": self._arn(TRIAL, name),
            "DisplayName": params.get("DisplayName") or name,
            "ExperimentName": experiment_name,
            "CreationTime": now,
            "LastModifiedTime": now,
            "Tags": list(params.get("Tags") or []),
        }
        if params.get("MetadataProperties"):
            record["MetadataProperties"] = params["MetadataProperties"]
        if source:
            record["Source"] = source
        return record

    def describe_trial(self, params: dict[str, Any]) -> dict[str, Any]:
        return describe_trial(self._get(TRIAL, params["TrialName"]))

    def list_trials(self, params: dict[str, Any]) -> dict[str, Any]:
        records = self.store.list(TRIAL)
        if "ExperimentName" in params:
            key = self._get(EXPERIMENT, params["ExperimentName"])["ExperimentName"].lower()
            records = [t for t in records if t["ExperimentName"].lower() == key]
        if "TrialComponentName" in params:
            component = self._get(COMPONENT, params["TrialComponentName"])
            parents = {p["TrialName"].lower() for p in component["Parents"]}
            records = [t for t in records if t["TrialName"].lower() in parents]
        records = created_between(records, params)
        ordered = self._sorted(records, params, "TrialName")
        return list_page([trial_summary(r) for r in ordered], params, "TrialSummaries")

    def update_trial(self, params: dict[str, Any]) -> dict[str, Any]:
        def change(record: Record) -> None:
            if "DisplayName" in params:
                record["DisplayName"] = params["DisplayName"]
            record["LastModifiedTime"] = self.ctx.now()

        return {"TrialArn": self._update(TRIAL, params["TrialName"], change)["TrialArn"]}

    def delete_trial(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            record = self._get(TRIAL, params["TrialName"])
            components = self._components_of_trial(record["TrialName"])
            if components:
                raise ValidationException(
                    f"Trial '{record['TrialArn']}' has {len(components)} associated trial "
                    "component(s); all trial components that make up the trial must be "
                    "disassociated or deleted first."
                )
            self.store.delete(TRIAL, record["TrialName"])
        return {"TrialArn": record["TrialArn"]}

    # -- trial components -----------------------------------------------------------------
    def create_trial_component(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["TrialComponentName"]
        check_map_sizes(
            params.get("Parameters") or {},
            params.get("InputArtifacts") or {},
            params.get("OutputArtifacts") or {},
        )
        record = self._new_component(name, params)
        self._insert(COMPONENT, name, record)
        return {"TrialComponentArn": record["TrialComponentArn"]}

    def _new_component(self, name: str, params: dict[str, Any]) -> Record:
        now = self.ctx.now()
        record: Record = {
            "TrialComponentName": name,
            "TrialComponentArn": self._arn(COMPONENT, name),
            "DisplayName": params.get("DisplayName") or name,
            "CreationTime": now,
            "LastModifiedTime": now,
            "Parameters": dict(params.get("Parameters") or {}),
            "InputArtifacts": dict(params.get("InputArtifacts") or {}),
            "OutputArtifacts": dict(params.get("OutputArtifacts") or {}),
            "Tags": list(params.get("Tags") or []),
            "Parents": [],
        }
        for field in ("Status", "MetadataProperties", "Source"):
            if params.get(field):
                record[field] = params[field]
        for field in ("StartTime", "EndTime"):
            if params.get(field) is not None:
                record[field] = to_epoch(params[field])
        return record

    def describe_trial_component(self, params: dict[str, Any]) -> dict[str, Any]:
        record = self._get(COMPONENT, name_of(params["TrialComponentName"]))
        return describe_component(record, metric_summaries(self.store, record))

    def list_trial_components(self, params: dict[str, Any]) -> dict[str, Any]:
        if "SourceArn" in params and ("ExperimentName" in params or "TrialName" in params):
            raise ValidationException(
                "If you specify SourceArn, you can't filter by ExperimentName or TrialName."
            )
        records = self._components()
        if "ExperimentName" in params:
            key = self._get(EXPERIMENT, params["ExperimentName"])["ExperimentName"].lower()
            records = [c for c in records if any(p["ExperimentName"].lower() == key for p in c["Parents"])]
        if "TrialName" in params:
            key = self._get(TRIAL, params["TrialName"])["TrialName"].lower()
            records = [c for c in records if any(p["TrialName"].lower() == key for p in c["Parents"])]
        if "SourceArn" in params:
            arn = params["SourceArn"].lower()
            records = [c for c in records if c.get("Source", {}).get("SourceArn", "").lower() == arn]
        records = created_between(records, params)
        ordered = self._sorted(records, params, "TrialComponentName")
        return list_page([component_summary(r) for r in ordered], params, "TrialComponentSummaries")

    def update_trial_component(self, params: dict[str, Any]) -> dict[str, Any]:
        def change(record: Record) -> None:
            for field in ("DisplayName", "Status"):
                if field in params:
                    record[field] = params[field]
            for field in ("StartTime", "EndTime"):
                if params.get(field) is not None:
                    record[field] = to_epoch(params[field])
            for field in ("Parameters", "InputArtifacts", "OutputArtifacts"):
                merged = {**record[field], **(params.get(field) or {})}
                for key in params.get(f"{field}ToRemove") or []:
                    merged.pop(key, None)
                record[field] = merged
            check_map_sizes(record["Parameters"], record["InputArtifacts"], record["OutputArtifacts"])
            record["LastModifiedTime"] = self.ctx.now()

        record = self._update(COMPONENT, params["TrialComponentName"], change)
        return {"TrialComponentArn": record["TrialComponentArn"]}

    def delete_trial_component(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            record = self._get(COMPONENT, params["TrialComponentName"])
            if record["Parents"]:
                raise ValidationException(
                    f"Trial Component '{record['TrialComponentArn']}' is associated with "
                    f"{len(record['Parents'])} trial(s); a trial component must be disassociated "
                    "from all trials before it can be deleted."
                )
            self.store.delete(COMPONENT, record["TrialComponentName"])
            self.store.delete_metrics(record["TrialComponentArn"])
        return {"TrialComponentArn": record["TrialComponentArn"]}

    def associate_trial_component(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            trial = self._get(TRIAL, params["TrialName"])
            component = self._get(COMPONENT, params["TrialComponentName"])
            self._associate(component["TrialComponentName"], trial)
        return {"TrialComponentArn": component["TrialComponentArn"], "TrialArn": trial["TrialArn"]}

    def _associate(self, component_name: str, trial: Record) -> None:
        parent = {"TrialName": trial["TrialName"], "ExperimentName": trial["ExperimentName"]}

        def change(record: Record) -> None:
            if all(p["TrialName"].lower() != parent["TrialName"].lower() for p in record["Parents"]):
                record["Parents"].append(parent)
                record["LastModifiedTime"] = self.ctx.now()

        self._update(COMPONENT, component_name, change)

    def disassociate_trial_component(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            trial = self._get(TRIAL, params["TrialName"])
            component = self._get(COMPONENT, params["TrialComponentName"])
            key = trial["TrialName"].lower()
            if all(p["TrialName"].lower() != key for p in component["Parents"]):
                raise ResourceNotFound(
                    f"Trial Component '{component['TrialComponentArn']}' is not associated with "
                    f"Trial '{trial['TrialArn']}'."
                )

            def change(record: Record) -> None:
                record["Parents"] = [p for p in record["Parents"] if p["TrialName"].lower() != key]
                record["LastModifiedTime"] = self.ctx.now()

            self._update(COMPONENT, component["TrialComponentName"], change)
        return {"TrialComponentArn": component["TrialComponentArn"], "TrialArn": trial["TrialArn"]}

    # -- tags (AddTags / ListTags / DeleteTags on experiment ARNs, via the jobs backend) ---
    def owns_arn(self, arn: str) -> bool:
        """Whether an ARN names an experiment, trial or trial component (served here)."""
        return kind_of_arn(arn) is not None

    def add_tags(self, arn: str, tags: list[dict[str, str]]) -> list[dict[str, str]]:
        """Merge tags into an entity's tags (a key keeps its last value); returns ``tags``."""

        kind, name = self._entity_of_arn(arn)
        self._update(kind, name, lambda r: r.update(Tags=merge_tags(r["Tags"], tags)))
        return tags

    def list_tags(self, arn: str) -> list[dict[str, str]]:
        kind, name = self._entity_of_arn(arn)
        return list(self._get(kind, name)["Tags"])

    def delete_tags(self, arn: str, keys: Iterable[str]) -> None:
        kind, name = self._entity_of_arn(arn)
        self._update(kind, name, lambda r: r.update(Tags=remove_tags(r["Tags"], keys)))

    def _entity_of_arn(self, arn: str) -> tuple[str, str]:
        kind = kind_of_arn(arn)
        if kind is None:
            raise ValidationException(f"{arn} is not an experiment, trial or trial component ARN.")
        return kind, arn.rsplit("/", 1)[-1]

    # -- Search ---------------------------------------------------------------------------
    def search(self, params: dict[str, Any]) -> dict[str, Any]:
        return run_search(self._search_records(params["Resource"]), params)

    def _search_records(self, resource: str) -> list[Record]:
        if resource == "Experiment":
            return [search_experiment(r) for r in self.store.iter(EXPERIMENT)]
        if resource == "ExperimentTrial":
            components = self._components()
            return [search_trial(t, components) for t in self.store.iter(TRIAL)]
        if resource == "ExperimentTrialComponent":
            return [search_component(c, metric_summaries(self.store, c)) for c in self._components()]
        provider = self._search_providers.get(resource)
        if provider is None:
            return []  # the engine holds no resources of this type
        members = search_record_members(resource)
        return [{k: v for k, v in r.items() if k in members} for r in provider()]

    # -- jobs (called in-process by the jobs backend) -------------------------------------
    def link_job(
        self,
        job_type: JobType,
        job_name: str,
        job_arn: str,
        experiment_config: dict[str, str] | None,
        parameters: dict[str, str | float],
        input_artifacts: dict[str, Any],
        output_artifacts: dict[str, Any],
    ) -> None:
        """Create a job's own trial component and associate it as ExperimentConfig says.

        Call it when the job is created, for every job: SageMaker gives every training and
        processing job a component ``<job>-aws-<type>-job`` whose ``Source.SourceArn`` is the
        job ARN (the SDK's ``load_run`` finds it by ListTrialComponents(SourceArn)). With a
        ``TrialName`` the component joins that trial (it must exist, and belong to
        ``ExperimentName`` when both are given); with only an ``ExperimentName`` a new trial
        of that name is created in the experiment, as the ExperimentConfig docs describe.
        Raises ResourceNotFound / ValidationException before creating anything, so the
        caller can refuse the job on them.
        """
        config = experiment_config or {}
        name = job_component_name(job_name, job_type)
        source = {"SourceArn": job_arn, "SourceType": JOB_SOURCE_TYPES[job_type]}
        with self._lock:
            trial = self._job_trial(name, config, source)
            params = {
                "DisplayName": config.get("TrialComponentDisplayName"),
                "Source": source,
                "Status": {"PrimaryStatus": "InProgress"},
                "Parameters": {k: parameter(v) for k, v in parameters.items()},
                "InputArtifacts": {k: artifact(v) for k, v in input_artifacts.items()},
                "OutputArtifacts": {k: artifact(v) for k, v in output_artifacts.items()},
            }
            record = self._new_component(name, params)
            if config.get("RunName"):
                record["RunName"] = config["RunName"]
            self.store.put(COMPONENT, name, record)
            if trial is not None:
                self._associate(name, trial)

    def _job_trial(self, name: str, config: dict[str, str], source: dict[str, str]) -> Record | None:
        experiment_name, trial_name = config.get("ExperimentName"), config.get("TrialName")
        if trial_name:
            trial = self._get(TRIAL, trial_name)
            if experiment_name and trial["ExperimentName"].lower() != experiment_name.lower():
                raise ValidationException(
                    f"Trial '{trial['TrialArn']}' belongs to experiment "
                    f"'{trial['ExperimentName']}', not to '{experiment_name}'."
                )
            return trial
        if experiment_name:
            experiment = self._get(EXPERIMENT, experiment_name)
            trial = self.store.get(TRIAL, name)
            if trial is None:
                trial = self._new_trial(name, experiment["ExperimentName"], {}, source)
                self.store.put(TRIAL, name, trial)
            return trial
        return None

    def update_job_component(
        self,
        job_name: str,
        job_type: JobType,
        status: dict[str, str] | None = None,
        start_time: float | None = None,
        end_time: float | None = None,
        metrics: list[dict[str, Any]] | None = None,
        output_artifacts: dict[str, Any] | None = None,
    ) -> None:
        """Mirror a job's progress on its trial component; a no-op if it has none.

        ``metrics`` are new points since the previous call, each ``{MetricName, Value,
        Timestamp}`` with an optional ``Step``; they are appended, not replaced.
        """
        name = job_component_name(job_name, job_type)

        def change(record: Record) -> None:
            if status:
                record["Status"] = {k: v for k, v in status.items() if v is not None}
            if start_time is not None:
                record["StartTime"] = to_epoch(start_time)
            if end_time is not None:
                record["EndTime"] = to_epoch(end_time)
            for key, value in (output_artifacts or {}).items():
                record["OutputArtifacts"][key] = artifact(value)
            record["LastModifiedTime"] = self.ctx.now()

        with self._lock:
            try:
                record = self.store.update(COMPONENT, name, change)
            except KeyError:
                return
        if metrics:
            self.store.add_metrics(
                record["TrialComponentArn"],
                [
                    (m["MetricName"], m.get("Step"), to_epoch(m["Timestamp"]), float(m["Value"]))
                    for m in metrics
                ],
            )

    # -- plumbing -------------------------------------------------------------------------
    def _update(self, kind: str, name: str, change: Callable[[Record], None]) -> Record:
        with self._lock:
            self._get(kind, name)
            return self.store.update(kind, name, change)

    def _sorted(self, records: list[Record], params: dict[str, Any], name_field: str) -> list[Record]:
        """Records in a List call's SortBy (Name or CreationTime) and SortOrder (Descending default)."""
        field = name_field if params.get("SortBy") == "Name" else "CreationTime"
        descending = params.get("SortOrder", "Descending") == "Descending"
        return sorted(
            records,
            key=lambda r: r[field].lower() if field == name_field else r[field],
            reverse=descending,
        )
