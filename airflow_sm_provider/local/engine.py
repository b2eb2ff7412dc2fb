"""The local SageMaker engine as an object: start it, point clients at it, stop it."""

from __future__ import annotations

import ipaddress
import logging
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_sm_provider.local.context import ENGINE_ACCESS_KEY_ID, ENGINE_SECRET_ACCESS_KEY, EngineContext
from airflow_sm_provider.local.store import Store

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LocalEngine:
    """A SageMaker API (plus S3, CloudWatch Logs, CloudWatch, STS via moto) on one local port.

    Use it as a context manager::

        with LocalEngine() as engine:
            os.environ.update(engine.environ())
            ...  # boto3, the Amazon provider and the sagemaker SDK now talk to the engine

    ``data_dir`` keeps job records (SQLite) and job directories; without it a temporary
    directory is used and removed on stop. ``port=0`` picks a free port.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: Path | str | None = None,
        max_concurrent_jobs: int | None = None,
        region: str = "us-east-1",
        runtimes: Mapping[str, Any] | None = None,
        stop_grace_seconds: float = 2.0,
    ) -> None:
        self.host = host
        self.port = port
        self.region = region
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._max_concurrent_jobs = max_concurrent_jobs
        self._runtimes = runtimes
        self._stop_grace_seconds = stop_grace_seconds
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._temp_dir: str | None = None
        self.jobs: Any = None
        self.experiments: Any = None
        self.ctx: EngineContext | None = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the engine is not running")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        if host in ("0.0.0.0", "[::]"):  # reachable from here through loopback  # noqa: S104
            host = "127.0.0.1"
        return f"http://{host}:{self._server.server_port}"

    def start(self) -> LocalEngine:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import WSGIRequestHandler, make_server

        from airflow_sm_provider.local import model
        from airflow_sm_provider.local.experiments import ExperimentsBackend
        from airflow_sm_provider.local.jobs import JobsBackend
        from airflow_sm_provider.local.server import EngineApp

        if not is_loopback(self.host):
            log.warning(
                "the local engine listens on %s: anyone who can reach it can run code here", self.host
            )
        if self._data_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="sagemaker-local-")
            data_dir = Path(self._temp_dir)
        else:
            data_dir = self._data_dir
            data_dir.mkdir(parents=True, exist_ok=True)
        model.service_model("sagemaker"), model.service_model("sagemaker-metrics")  # load once, up front

        class QuietHandler(WSGIRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections

            def log_request(self, *args: Any, **kwargs: Any) -> None:
                log.debug("%s %s", self.command, self.path)

        # Bind first: the jobs need the endpoint URL before any request can create one.
        holder: dict[str, Any] = {}
        self._server = make_server(
            self.host,
            self.port,
            lambda environ, start_response: holder["app"](environ, start_response),
            threaded=True,
            request_handler=QuietHandler,
        )
        store = Store(data_dir / "engine.sqlite3")
        self.ctx = EngineContext(
            store=store, data_dir=data_dir, region=self.region, endpoint_url=self.endpoint_url
        )
        self.experiments = ExperimentsBackend(self.ctx)
        self.jobs = JobsBackend(
            self.ctx,
            experiments=self.experiments,
            max_concurrent_jobs=self._max_concurrent_jobs,
            runtimes=self._runtimes,
            stop_grace_seconds=self._stop_grace_seconds,
        )
        self.experiments.register_search_resource("TrainingJob", self.jobs.search_records_training)
        self.jobs.recover()
        holder["app"] = EngineApp(
            sagemaker_ops={**self.experiments.operations(), **self.jobs.operations()},
            metrics_ops=self.experiments.metrics_operations(),
            credentials=self.jobs.job_credentials,
            aws_app=DomainDispatcherApplication(create_backend_app),
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sagemaker-local", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop running jobs (SIGTERM, then SIGKILL), then the server; remove a temporary data dir."""
        if self._server is None:
            return
        try:
            self.jobs.shutdown()
        finally:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self.ctx.store.close()
            self._server = None
            if self._temp_dir is not None:
                shutil.rmtree(self._temp_dir, ignore_errors=True)
                self._temp_dir = None

    def __enter__(self) -> LocalEngine:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def environ(self) -> dict[str, str]:
        """Environment variables that send boto3, the Amazon provider and the SDK here.

        The keys are fake: the engine accepts any, and AWS would reject these. The sagemaker
        SDK's telemetry is opted out so nothing tries to reach AWS.
        """
        sdk_config = self.ctx.data_dir / "sagemaker-sdk-config.yaml"
        if not sdk_config.exists():
            sdk_config.write_text(
                "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
            )
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": ENGINE_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": ENGINE_SECRET_ACCESS_KEY,
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(sdk_config),
        }

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` on this engine."""
        import boto3

        return boto3.session.Session().client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ENGINE_ACCESS_KEY_ID,
            aws_secret_access_key=ENGINE_SECRET_ACCESS_KEY,
        )
