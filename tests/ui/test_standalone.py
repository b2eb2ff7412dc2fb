"""``airflow-sm ui``: its login and environment, and (e2e) a real start, login and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from airflow_sm_provider.ui.standalone import USERNAME, airflow_environment, password

REPO = Path(__file__).resolve().parents[2]


def test_the_password_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path, first = password(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {USERNAME: first}
    assert password(tmp_path) == (path, first)


def test_airflow_listens_on_loopback_and_reaches_the_engine(tmp_path: Path) -> None:
    engine_env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}
    env = airflow_environment(tmp_path, tmp_path / "dags", engine_env, port=8080, report_prefix="p")
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    assert json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]["endpoint_url"] == "http://127.0.0.1:4566"
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(tmp_path / "plugins")
    assert env["AIRFLOW__SAGEMAKER_PROVIDER__REPORT_PREFIX"] == "p"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _processes_with_home(home: Path) -> list[int]:
    """Pids whose environment holds ``AIRFLOW_HOME=<home>`` (every Airflow service of that run)."""
    marker = f"AIRFLOW_HOME={home}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_ui_starts_logs_in_serves_the_viewer_and_ctrl_c_ends_every_process(tmp_path: Path) -> None:
    home, port = tmp_path / "home", _free_port()
    command = [sys.executable, "-m", "airflow_sm_provider.cli", "ui", "--home", str(home)]
    command += ["--port", str(port)]
    ui = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output = []
        for line in ui.stdout:  # type: ignore[union-attr]
            output.append(line)
            if line.startswith("Log in as") or ui.poll() is not None:
                break
        login = output[-1].split()
        assert login[:3] == ["Log", "in", "as"], "".join(output)
        url = f"http://127.0.0.1:{port}"
        credentials = {"username": login[3], "password": login[5]}
        token = httpx.post(f"{url}/auth/token", json=credentials, timeout=30).json()["access_token"]
        viewer = f"{url}/sagemaker-reports/dags/sagemaker_training_pipeline"
        assert httpx.get(viewer, timeout=30).status_code == 401
        page = httpx.get(viewer, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert page.status_code == 200 and "No report has been written" in page.text
        assert len(_processes_with_home(home)) >= 4
    finally:
        os.kill(ui.pid, signal.SIGINT)  # what Ctrl-C sends
        ui.wait(timeout=120)
    deadline = time.monotonic() + 10
    while _processes_with_home(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_with_home(home) == []
