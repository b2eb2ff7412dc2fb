"""A real MLflow tracking server on 127.0.0.1: the local engine's managed MLflow, and the tests'.

``python -m mlflow server`` on the interpreter given (default the engine's own, which then
needs the full ``mlflow`` package: the ``mlflow-server`` extra), with a SQLite backend store
and proxied artifacts (``mlflow-artifacts:/``) under one directory, so a restart keeps every
experiment, run, metric and artifact. The server is started in its own session and stopped by
escalation (SIGTERM to its process group, a grace period, SIGKILL), so its workers go with it.
Starting takes seconds (the store's migrations on first use, the web app's imports): start it
once and share it.

MLflow's REST API has no authentication: it binds 127.0.0.1 only, like the engine, and the
engine's signed endpoint proxies to it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
#: Seconds a server may take to answer its health check after starting (a busy 2-core machine).
START_TIMEOUT_SECONDS = 180.0
STOP_GRACE_SECONDS = 5.0


class MlflowServerError(RuntimeError):
    """Raised when the MLflow tracking server does not start or has died."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class MlflowServer:
    """One ``mlflow server`` process; ``with MlflowServer(directory) as server: server.url``."""

    def __init__(
        self,
        directory: Path | str,
        *,
        port: int = 0,
        python: str = sys.executable,
        start_timeout: float = START_TIMEOUT_SECONDS,
    ) -> None:
        self.directory = Path(directory)
        self.port = port
        self.python = python
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self._process is None:
            raise MlflowServerError("the MLflow server is not running")
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        store = self.directory / "mlflow.sqlite3"
        return [
            self.python,
            "-m",
            "mlflow",
            "server",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--backend-store-uri",
            f"sqlite:///{store}",
            "--artifacts-destination",
            str(self.directory / "artifacts"),
            "--serve-artifacts",
            "--workers",
            "1",
        ]

    def start(self) -> MlflowServer:
        """Start the server and wait until it answers; its output goes to ``server.log``."""
        if self.running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log_path = self.directory / "server.log"
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        env.pop("MLFLOW_TRACKING_URI", None)
        with log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            self._wait_ready(log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, log_path: Path) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise MlflowServerError(f"the MLflow server exited while starting:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise MlflowServerError(f"the MLflow server did not answer within {self.start_timeout:.0f} s")

    def stop(self) -> None:
        """SIGTERM to the server's process group, then SIGKILL after the grace period."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE_SECONDS)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # workers left behind by the leader, if any
        process.wait()

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
