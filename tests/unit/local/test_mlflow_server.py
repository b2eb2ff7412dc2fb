"""The MLflow server process: started until it answers, stopped by escalation, never left behind.

A stand-in interpreter plays ``python -m mlflow server``: a small HTTP server answering
``/health`` that ignores SIGTERM (so only SIGKILL ends it), or one that exits at once.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from airflow_sm_provider.local import mlflow_server
from airflow_sm_provider.local.mlflow_backend import PYTHON_ENV_VAR, MlflowBackend
from airflow_sm_provider.local.mlflow_server import MlflowServer, MlflowServerError

STUBBORN = """
import signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

signal.signal(signal.SIGTERM, signal.SIG_IGN)
port = int(sys.argv[sys.argv.index("--port") + 1])


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")


HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def _interpreter(tmp_path: Path, body: str) -> str:
    """An executable that runs ``body`` with this Python, whatever arguments it is given."""
    script = tmp_path / "server.py"
    script.write_text(body)
    launcher = tmp_path / "python"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n')
    launcher.chmod(launcher.stat().st_mode | stat.S_IEXEC)
    return str(launcher)


def test_the_server_is_ready_when_it_answers_and_killed_when_it_ignores_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(mlflow_server, "STOP_GRACE_SECONDS", 0.5)
    server = MlflowServer(tmp_path / "mlflow", python=_interpreter(tmp_path, STUBBORN))
    command = server.command()
    assert command[1:4] == ["-m", "mlflow", "server"] and "--serve-artifacts" in command
    assert f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.sqlite3'}" in command
    with server:
        assert server.running and server.url == f"http://127.0.0.1:{server.port}"
        pid = server._process.pid
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # SIGTERM was ignored; SIGKILL ended it and it was reaped
    with pytest.raises(MlflowServerError, match="not running"):
        server.url  # noqa: B018


def test_a_server_that_exits_while_starting_is_an_error_with_its_output(tmp_path: Path):
    body = "import sys\nprint('no such option: --serve-artifacts')\nsys.exit(2)\n"
    server = MlflowServer(tmp_path / "mlflow", python=_interpreter(tmp_path, body))
    with pytest.raises(MlflowServerError, match=r"exited while starting:\n.*no such option"):
        server.start()
    assert not server.running


def test_the_tracking_servers_interpreter_comes_from_the_engine_else_the_environment(
    monkeypatch: pytest.MonkeyPatch,
):
    """Beside Airflow 2.11 (SQLAlchemy 1.4) MLflow 3's server must run on another interpreter."""
    monkeypatch.delenv(PYTHON_ENV_VAR, raising=False)
    assert MlflowBackend(ctx=None).python == sys.executable  # type: ignore[arg-type]
    monkeypatch.setenv(PYTHON_ENV_VAR, "/opt/mlflow/bin/python")
    assert MlflowBackend(ctx=None).python == "/opt/mlflow/bin/python"  # type: ignore[arg-type]
    assert MlflowBackend(ctx=None, python="/srv/py").python == "/srv/py"  # type: ignore[arg-type]
