"""The local SageMaker engine as an object: start it, point clients at it, stop it."""

from __future__ import annotations

import ipaddress
import logging
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from airflow_sm_provider.local import credentials as engine_credentials
from airflow_sm_provider.local.context import EngineContext
from airflow_sm_provider.local.credentials import EngineCredentials
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

    ``data_dir`` keeps the records of jobs, experiments, trials and trial components (SQLite)
    and the job directories; without it a temporary directory is used and removed on stop.
    ``port=0`` picks a free port. With a ``data_dir``, what the embedded moto accepts (S3 buckets
    and objects, CloudWatch Logs groups, streams and events, CloudWatch metrics) is written
    through to it as well and restored at start (:mod:`~airflow_sm_provider.local.persistence`),
    so a job's ModelArtifacts, logs and curves outlive a restart, a crash included; without one,
    they live in this process's memory only. Engines started in one process share moto's state.
    A job running when the engine stopped or died is Failed on the next start, and processes a
    dead engine left running are ended then.

    Every request must be signed (SigV4) with the engine's key, :attr:`credentials`: the
    environment's ``SAGEMAKER_LOCAL_ACCESS_KEY_ID`` / ``SAGEMAKER_LOCAL_SECRET_ACCESS_KEY``,
    else ``credentials_file``, else one generated into ``<data_dir>/credentials`` (mode 0600)
    and kept there (see :mod:`~airflow_sm_provider.local.credentials`); :meth:`environ` and
    :meth:`client` carry it. Only Host headers naming a loopback address, ``localhost``, the
    bound address or one of ``allowed_hosts`` are served (DNS rebinding). A request body that
    stops arriving for ``read_timeout_seconds`` ends its connection.

    Every status change of a job publishes SageMaker's state-change event into the embedded
    EventBridge (:mod:`~airflow_sm_provider.local.eventbridge`), so rules with SQS targets
    receive them as on AWS; ``event_drop_fraction`` / ``event_duplicate_fraction`` lose or
    repeat that share of them, for tests (also settable later on :attr:`events`).
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
        credentials_file: Path | str | None = None,
        allowed_hosts: Iterable[str] = (),
        read_timeout_seconds: float = 30.0,
        event_drop_fraction: float = 0.0,
        event_duplicate_fraction: float = 0.0,
        mlflow_python: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.region = region
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._max_concurrent_jobs = max_concurrent_jobs
        self._runtimes = runtimes
        self._stop_grace_seconds = stop_grace_seconds
        self._credentials_file = Path(credentials_file) if credentials_file is not None else None
        self._allowed_hosts = tuple(allowed_hosts)
        self._read_timeout_seconds = read_timeout_seconds
        self._mlflow_python = mlflow_python
        self._event_faults = {
            "drop_fraction": event_drop_fraction,
            "duplicate_fraction": event_duplicate_fraction,
        }
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._temp_dir: str | None = None
        self._mirror: Any = None
        self.jobs: Any = None
        self.experiments: Any = None
        self.events: Any = None  # the EventPublisher, while running
        self.mlflow: Any = None  # the MlflowBackend, while running
        self.ctx: EngineContext | None = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the engine is not running")
        from airflow_sm_provider.local.gate import is_wildcard

        if is_wildcard(self.host):  # "0", "0.0.0.0", "::": reachable from here through loopback
            host = "[::1]" if ":" in self.host else "127.0.0.1"
        else:
            host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self._server.server_address[1]}"

    @property
    def credentials(self) -> EngineCredentials:
        """The engine's access key; clients sign with it (see the class docstring)."""
        if self.ctx is None:
            raise RuntimeError("the engine is not running")
        return self.ctx.credentials

    def start(self) -> LocalEngine:
        """Bind the port, open the store, compose the backends, serve; undone if any step fails."""
        if self._server is not None:
            raise RuntimeError("the engine is already running")
        if not is_loopback(self.host):
            log.warning(
                "%s is not a loopback address: anyone who can reach this port can run code on this "
                "machine as this user, since the engine runs the jobs it is sent",
                self.host,
            )
        if self._data_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="sagemaker-local-")
        try:
            self._start(Path(self._temp_dir) if self._temp_dir else self._data_dir)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, data_dir: Path) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import WSGIRequestHandler, get_sockaddr, make_server, select_address_family

        from airflow_sm_provider.local import model
        from airflow_sm_provider.local.eventbridge import EventPublisher
        from airflow_sm_provider.local.experiments import ExperimentsBackend
        from airflow_sm_provider.local.gate import Gate, HostRule
        from airflow_sm_provider.local.iam import IamRoles
        from airflow_sm_provider.local.jobs import JobsBackend
        from airflow_sm_provider.local.metrics import MetricsBackend
        from airflow_sm_provider.local.mlflow_backend import MlflowBackend
        from airflow_sm_provider.local.protocol_errors import AwsErrors
        from airflow_sm_provider.local.server import EngineApp

        data_dir.mkdir(parents=True, exist_ok=True)
        own_key = engine_credentials.resolve(data_dir, credentials_file=self._credentials_file)
        model.service_model("sagemaker"), model.service_model("sagemaker-metrics")  # load once, up front

        class QuietHandler(WSGIRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
            timeout = self._read_timeout_seconds  # a stalled client cannot hold a thread for good

            def log_request(self, *args: Any, **kwargs: Any) -> None:
                log.debug("%s %s", self.command, self.path)

        # Bind first: the jobs need the endpoint URL before any request can create one.
        # Our own socket: werkzeug would print and exit on a port in use instead of raising.
        holder: dict[str, Any] = {}
        family = select_address_family(self.host, self.port)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(get_sockaddr(self.host, self.port, family))
            sock.listen(128)
            self._server = make_server(
                self.host,
                self.port,
                lambda environ, start_response: holder["app"](environ, start_response),
                threaded=True,
                request_handler=QuietHandler,
                fd=sock.fileno(),  # werkzeug duplicates it
            )
        store = Store(data_dir / "engine.sqlite3")
        aws_app: Any = DomainDispatcherApplication(create_backend_app)
        if self._data_dir is not None:  # a temporary data dir is removed on stop: nothing to keep
            from airflow_sm_provider.local.persistence import AwsMirror

            self._mirror = AwsMirror(data_dir)
            self._mirror.restore()
            aws_app = self._mirror.wrap(aws_app)
        self.ctx = EngineContext(
            store=store,
            data_dir=data_dir,
            region=self.region,
            endpoint_url=self.endpoint_url,
            credentials=own_key,
        )
        self.experiments = ExperimentsBackend(self.ctx)
        self.events = EventPublisher(self.ctx, **self._event_faults)
        self.jobs = JobsBackend(
            self.ctx,
            experiments=self.experiments,
            max_concurrent_jobs=self._max_concurrent_jobs,
            runtimes=self._runtimes,
            stop_grace_seconds=self._stop_grace_seconds,
            events=self.events,
        )
        self.mlflow = MlflowBackend(self.ctx, python=self._mlflow_python)
        self.jobs.mlflow = self.mlflow
        self.experiments.register_search_resource("TrainingJob", self.jobs.search_records_training)
        self.jobs.recover()
        keys = engine_credentials.KeyRing(own_key, self.jobs.job_credentials)
        router = EngineApp(
            sagemaker_ops={
                **self.experiments.operations(),
                **self.jobs.operations(),
                **self.mlflow.operations(),
            },
            metrics_ops=MetricsBackend(self.ctx).operations(),
            credentials=keys.hand_out,
            # moto answers the other services; what it cannot do comes back as an AWS error
            aws_app=AwsErrors(IamRoles(aws_app, self.ctx.account_id)),
            interrupt=self.jobs.interrupt,
            mlflow_app=self.mlflow.proxy,
        )
        holder["app"] = Gate(router, keys.key, HostRule(self.host, self._allowed_hosts))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sagemaker-local", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop running jobs (SIGTERM, then SIGKILL), then the server; remove a temporary data dir.

        Safe to call more than once and after a failed start.
        """
        try:
            if self.jobs is not None:
                self.jobs.shutdown()
        finally:
            if self.mlflow is not None:
                self.mlflow.shutdown()
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout=5)
            if self._server is not None:
                self._server.server_close()
            if self.ctx is not None:
                self.ctx.store.close()
            if self._mirror is not None:
                self._mirror.close()
            self._server = self._thread = self._mirror = None
            self.jobs = self.experiments = self.events = self.mlflow = self.ctx = None
            if self._temp_dir is not None:
                shutil.rmtree(self._temp_dir, ignore_errors=True)
                self._temp_dir = None

    def __enter__(self) -> LocalEngine:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def environ(self) -> dict[str, str]:
        """Environment variables that send boto3, the Amazon provider and the SDK here.

        The keys are the engine's own (:attr:`credentials`); AWS would reject them. The
        sagemaker SDK's telemetry is opted out so nothing tries to reach AWS, and the
        ``sagemaker-mlflow`` plugin sends its MLflow calls here.
        """
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.credentials.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_access_key,
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(self.ctx.sdk_config_path()),
            # The sagemaker-mlflow plugin sends MLflow calls of ARN tracking URIs here.
            "SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT": self.endpoint_url,
        }

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` on this engine."""
        import boto3

        return boto3.session.Session().client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.credentials.access_key_id,
            aws_secret_access_key=self.credentials.secret_access_key,
        )
