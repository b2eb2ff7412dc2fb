"""SageMaker managed MLflow in the local engine: tracking servers backed by real MLflow servers.

``CreateMlflowTrackingServer`` records the server (Store kind ``MlflowTrackingServer``) and
starts an ``mlflow server`` for it on 127.0.0.1 (:mod:`mlflow_server`: SQLite store and
artifacts under ``<data dir>/mlflow/<name>``), in the background: the server is ``Creating``
until it answers, then ``Created`` (``CreateFailed`` with the reason in the engine's log if it
cannot start). ``Describe`` and ``List`` read the records; ``TrackingServerUrl`` is the local
server's URL, which any MLflow client can use as its tracking URI. Servers are started on
demand after an engine restart (the first job that names one) and stopped with the engine.
The ``ArtifactStoreUri`` is recorded, but artifacts stay in the server's directory.

Training jobs with ``MlflowConfig`` (:meth:`MlflowBackend.link_job`): the tracking server is
resolved from ``MlflowResourceArn`` (an unknown or malformed ARN is a ValidationException
before the job exists), the experiment ``MlflowExperimentName`` (default: the job's name) is
created when missing, and the job is linked to a run, returned as ``MlflowDetails``. What
SageMaker passes to the container is not documented; the engine chooses, and documents here:

- the run is the one the job's own ``Environment`` names (``MLFLOW_RUN_ID``, as the provider's
  MLflow tracker sets it) when it exists in that experiment; else a new run named
  ``MlflowRunName`` (default: the job's name) tagged with the job's name and ARN;
- the job's process gets ``MLFLOW_TRACKING_URI`` (the local server's URL, so the MLflow client
  needs no plugin and no AWS signing), ``MLFLOW_EXPERIMENT_NAME`` and ``MLFLOW_RUN_ID``;
  ``DescribeTrainingJob`` shows the ``Environment`` the job was created with, unchanged.

The ``sagemaker-mlflow`` plugin sends an ARN tracking URI's MLflow REST calls to
``SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT`` (the engine's printed exports set it to the engine's URL),
SigV4-signed for the service ``sagemaker-mlflow`` with the ARN in the header
``x-mlflow-sm-tracking-server-arn``. Such a request passes the engine's gate like every other
(its signature checked with the engine's or a job's key), then :meth:`MlflowBackend.proxy`
forwards it to that tracking server's MLflow server, without the AWS headers.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from airflow_sm_provider.local.context import EngineContext
from airflow_sm_provider.local.errors import ResourceInUse, ResourceNotFound, ValidationException
from airflow_sm_provider.local.mlflow_server import MlflowServer, free_port
from airflow_sm_provider.local.responses import Handler, list_page, pick
from airflow_sm_provider.local.store import AlreadyExists, Record

log = logging.getLogger(__name__)

KIND = "MlflowTrackingServer"
RESOURCE_TYPE = "mlflow-tracking-server"
#: The job record's key of the environment the job's process gets for its MLflow run.
JOB_ENVIRONMENT_KEY = "_MlflowEnvironment"
#: The interpreter that runs ``mlflow server`` when the engine is not given one: MLflow 3's
#: server needs SQLAlchemy 2, which an Airflow 2.11 environment cannot have (its pin is 1.4).
PYTHON_ENV_VAR = "SAGEMAKER_LOCAL_MLFLOW_PYTHON"
#: The tracking server record's key of its local port (not in any response).
PORT_KEY = "_Port"
#: Headers of a signed plugin request that are forwarded to the MLflow server.
_FORWARDED = ("CONTENT_TYPE", "HTTP_ACCEPT", "HTTP_ACCEPT_ENCODING", "HTTP_USER_AGENT")
_ARN = re.compile(r"arn:aws[a-z\-]*:sagemaker:([a-z0-9\-]*):([0-9]{12}):([a-zA-Z-]*)/(.+)")
_DESCRIBE_FIELDS = (
    "TrackingServerArn", "TrackingServerName", "ArtifactStoreUri", "TrackingServerSize",
    "MlflowVersion", "RoleArn", "TrackingServerStatus", "IsActive", "TrackingServerUrl",
    "WeeklyMaintenanceWindowStart", "AutomaticModelRegistration", "CreationTime", "LastModifiedTime",
)  # fmt: skip
_SUMMARY_FIELDS = (
    "TrackingServerArn", "TrackingServerName", "CreationTime", "LastModifiedTime",
    "TrackingServerStatus", "IsActive", "MlflowVersion",
)  # fmt: skip


def _mlflow_version() -> str:
    from importlib.metadata import version

    return version("mlflow")


class MlflowBackend:
    """Handlers of the MLflow tracking server operations, and the jobs' MLflow runs."""

    def __init__(self, ctx: EngineContext, python: str | None = None) -> None:
        self.ctx = ctx
        self.python = python or os.environ.get(PYTHON_ENV_VAR) or sys.executable
        self._servers: dict[str, MlflowServer] = {}
        self._lock = threading.Lock()

    def operations(self) -> dict[str, Handler]:
        return {
            "CreateMlflowTrackingServer": self.create_tracking_server,
            "DescribeMlflowTrackingServer": self.describe_tracking_server,
            "ListMlflowTrackingServers": self.list_tracking_servers,
        }

    # -- tracking servers -------------------------------------------------------------------
    def create_tracking_server(self, params: dict) -> dict:
        if importlib.util.find_spec("mlflow") is None:
            raise ValidationException(
                "The local engine runs MLflow tracking servers with the mlflow package: "
                "pip install 'airflow-sm-provider[mlflow-server]'"
            )
        name = params["TrackingServerName"]
        arn = self.ctx.arn(RESOURCE_TYPE, name)
        now = self.ctx.now()
        record: Record = {
            **pick(
                params, ("TrackingServerName", "ArtifactStoreUri", "RoleArn", "WeeklyMaintenanceWindowStart")
            ),
            "TrackingServerArn": arn,
            "TrackingServerSize": params.get("TrackingServerSize", "Small"),
            "MlflowVersion": params.get("MlflowVersion") or _mlflow_version(),
            "AutomaticModelRegistration": params.get("AutomaticModelRegistration", False),
            "TrackingServerStatus": "Creating",
            "IsActive": "Inactive",
            "CreationTime": now,
            "LastModifiedTime": now,
            "Tags": params.get("Tags", []),
            PORT_KEY: free_port(),  # kept, so the server's URL outlives an engine restart
        }
        try:
            self.ctx.store.insert(KIND, name, record)
        except AlreadyExists as error:
            raise ResourceInUse(f"Tracking server {name} already exists ({arn})") from error
        threading.Thread(target=self._create, args=(name,), name=f"mlflow-{name}", daemon=True).start()
        return {"TrackingServerArn": arn}

    def _create(self, name: str) -> None:
        try:
            url = self._server(name).url
        except Exception:
            log.exception("MLflow tracking server %s did not start", name)
            self._set(name, TrackingServerStatus="CreateFailed")
            return
        self._set(name, TrackingServerStatus="Created", IsActive="Active", TrackingServerUrl=url)

    def _set(self, name: str, **fields: Any) -> None:
        def change(record: Record) -> Record:
            return {**record, **fields, "LastModifiedTime": self.ctx.now()}

        self.ctx.store.update(KIND, name, change)

    def _server(self, name: str) -> MlflowServer:
        """The running server of tracking server ``name``, started when it is not (once)."""
        with self._lock:
            server = self._servers.get(name)
            if server is None or not server.running:
                port = self._record(name).get(PORT_KEY, 0)
                server = MlflowServer(self.ctx.data_dir / "mlflow" / name, port=port, python=self.python)
                server.start()
                self._servers[name] = server
            return server

    def _record(self, name: str) -> Record:
        record = self.ctx.store.get(KIND, name)
        if record is None:
            raise ResourceNotFound(f"Tracking server {name} does not exist")
        return record

    def describe_tracking_server(self, params: dict) -> dict:
        return pick(self._record(params["TrackingServerName"]), _DESCRIBE_FIELDS)

    def list_tracking_servers(self, params: dict) -> dict:
        records = self.ctx.store.list(KIND)
        if params.get("TrackingServerStatus"):
            records = [r for r in records if r["TrackingServerStatus"] == params["TrackingServerStatus"]]
        if params.get("MlflowVersion"):
            records = [r for r in records if r["MlflowVersion"] == params["MlflowVersion"]]
        after, before = params.get("CreatedAfter"), params.get("CreatedBefore")
        records = [
            r
            for r in records
            if (after is None or r["CreationTime"] > float(after))
            and (before is None or r["CreationTime"] < float(before))
        ]
        key = {"Name": "TrackingServerName", "Status": "TrackingServerStatus"}.get(
            params.get("SortBy", ""), "CreationTime"
        )
        records.sort(key=lambda r: r[key], reverse=params.get("SortOrder", "Descending") == "Descending")
        summaries = [pick(r, _SUMMARY_FIELDS) for r in records]
        return list_page(summaries, params, "TrackingServerSummaries")

    def shutdown(self) -> None:
        """Stop every MLflow server this engine started."""
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.stop()

    # -- jobs -------------------------------------------------------------------------------
    def resolve(self, arn: str) -> str:
        """The tracking server name of ``MlflowResourceArn``; ValidationException if it is none of ours."""
        match = _ARN.fullmatch(arn)
        if not match or match.group(3) != RESOURCE_TYPE:
            raise ValidationException(
                f"MlflowConfig.MlflowResourceArn: {arn!r} is not an MLflow tracking server ARN "
                "(arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>)"
            )
        name = match.group(4)
        record = self.ctx.store.get(KIND, name)
        if record is None or record["TrackingServerArn"] != arn:
            raise ValidationException(f"MlflowConfig.MlflowResourceArn: tracking server {arn} does not exist")
        if record["TrackingServerStatus"] not in ("Created", "Updated", "Started"):
            raise ValidationException(
                f"MlflowConfig.MlflowResourceArn: tracking server {name} is {record['TrackingServerStatus']}"
            )
        return name

    def link_job(
        self, job_name: str, job_arn: str, config: Mapping[str, str], env: Mapping[str, str]
    ) -> Record:
        """Link a training job to its MLflow run: ``MlflowDetails`` and the job's MLflow environment."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        name = self.resolve(config["MlflowResourceArn"])
        url = self._server(name).url
        client = MlflowClient(tracking_uri=url)
        experiment_name = config.get("MlflowExperimentName") or job_name
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is not None:
            experiment_id = str(experiment.experiment_id)
        else:
            try:
                experiment_id = str(client.create_experiment(experiment_name))
            except MlflowException:  # created meanwhile by another job
                experiment_id = str(client.get_experiment_by_name(experiment_name).experiment_id)
        run_id = self._named_run(client, env.get("MLFLOW_RUN_ID", ""), experiment_id)
        if not run_id:
            tags = {"sagemaker.training_job_name": job_name, "sagemaker.training_job_arn": job_arn}
            run_name = config.get("MlflowRunName") or job_name
            run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        return {
            "MlflowDetails": {"MlflowExperimentId": experiment_id, "MlflowRunId": run_id},
            JOB_ENVIRONMENT_KEY: {
                "MLFLOW_TRACKING_URI": url,
                "MLFLOW_EXPERIMENT_NAME": experiment_name,
                "MLFLOW_RUN_ID": run_id,
            },
        }

    @staticmethod
    def _named_run(client: Any, run_id: str, experiment_id: str) -> str:
        """``run_id`` if it is a run of that experiment, else ""."""
        from mlflow.exceptions import MlflowException

        if not run_id:
            return ""
        try:
            run = client.get_run(run_id)
        except MlflowException:
            return ""
        return run_id if str(run.info.experiment_id) == experiment_id else ""

    # -- the sagemaker-mlflow plugin's signed REST calls ----------------------------------------
    def proxy(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Forward a signed MLflow REST call to the tracking server its ARN header names."""
        from werkzeug.wsgi import get_input_stream

        arn = environ.get("HTTP_X_MLFLOW_SM_TRACKING_SERVER_ARN", "")
        try:
            server = self._server(self.resolve(arn))
        except (ValidationException, ResourceNotFound) as error:
            body = json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": str(error)}).encode()
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [body]
        path = environ.get("PATH_INFO", "/")
        if environ.get("QUERY_STRING"):
            path += f"?{environ['QUERY_STRING']}"
        body = get_input_stream(environ).read()
        headers = {
            key[5:].replace("_", "-").title()
            if key.startswith("HTTP_")
            else key.replace("_", "-").title(): value
            for key, value in environ.items()
            if key in _FORWARDED and value
        }
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        try:
            connection.request(environ["REQUEST_METHOD"], path, body=body or None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            kept = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() in ("content-type", "content-encoding", "content-disposition")
            ]
            start_response(
                f"{response.status} {response.reason}", [*kept, ("Content-Length", str(len(data)))]
            )
            return [data]
        finally:
            connection.close()
