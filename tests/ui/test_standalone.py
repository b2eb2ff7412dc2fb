"""``airflow-sm ui``: its login and environment; end to end, the real services it starts.

The services tests (run on demand: ``-m services``) share one ``airflow-sm ui`` (it takes
minutes to start on a busy machine): the viewer behind the login, the template DAG triggered
through the REST API with custom params (as the UI's trigger form posts them) and run by the
real scheduler and triggerer, screenshots in headless Chromium, and last, Ctrl-C ending every
process it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from browser import Chromium, chromium_path

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


DAG_ID = "sagemaker_training_pipeline"
CUSTOM_PARAMS = {"grid": {"learning-rate": [0.05, 0.3], "hidden-units": [16]}, "epochs": 4}
# What the browser waits for and reads (the UI's own markup, so kept loose).
TRIGGER_BUTTON = (
    "[...document.querySelectorAll('button')].filter(b => b.innerText.trim() === 'Trigger').pop()"
)
FORM_WITH_PARAMS = "document.body.innerText.includes('Hyperparameter grid')"  # the dialog's Params
PARAM_LABEL = "[...document.querySelectorAll('label')].find(e => e.innerText.includes('Hyperparameter'))"
GRID_WITH_TASKS = "document.body.innerText.includes('wait_training')"
FRAME_TEXT = "document.querySelector('iframe').contentDocument.body.innerText"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RunningUI:
    """``airflow-sm ui`` in a child process, read from what it prints."""

    def __init__(self, home: Path) -> None:
        self.home, port = home, _free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "airflow_sm_provider.cli", "ui", "--home", str(home)]
        self.process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=REPO,
            # Only the run the test triggers: unpausing must not start the weekly run too.
            env={**os.environ, "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.output: list[str] = []
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.output.append(line)
            if line.startswith("Log in as") or self.process.poll() is not None:
                break
        login = self.output[-1].split()
        if login[:3] != ["Log", "in", "as"]:
            self.stop()
            raise RuntimeError("airflow-sm ui did not start:\n" + "".join(self.output))
        self.credentials = {"username": login[3], "password": login[5]}
        self.engine_url = self.output[0].split(" at ")[1].split(";")[0]

    def token(self) -> str:
        response = httpx.post(f"{self.url}/auth/token", json=self.credentials, timeout=60)
        return response.json()["access_token"]

    def processes(self) -> list[int]:
        """Pids whose environment holds ``AIRFLOW_HOME=<home>``: every Airflow process of this run."""
        marker = f"AIRFLOW_HOME={self.home}".encode() + b"\0"
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and marker in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def stop(self) -> None:
        """What Ctrl-C does: SIGINT to the command, which ends the rest."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
        self.process.wait(timeout=120)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUI]:
    ui = RunningUI(tmp_path_factory.mktemp("ui") / "home")
    yield ui
    ui.stop()


@pytest.mark.services
@pytest.mark.timeout(600)
def test_the_viewer_is_behind_the_login(stack: RunningUI) -> None:
    viewer = f"{stack.url}/sagemaker-reports/dags/{DAG_ID}"
    assert httpx.get(viewer, timeout=60).status_code == 401
    page = httpx.get(viewer, headers={"Authorization": f"Bearer {stack.token()}"}, timeout=60)
    assert page.status_code == 200 and "No report has been written" in page.text


@pytest.mark.services
@pytest.mark.timeout(900)
def test_a_run_triggered_with_custom_params_succeeds_and_reads_well_in_the_ui(stack: RunningUI) -> None:
    api = httpx.Client(base_url=f"{stack.url}/api/v2", headers={"Authorization": f"Bearer {stack.token()}"})
    api.timeout = httpx.Timeout(60)
    api.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
    # What the trigger form posts: no logical date, the Params as conf.
    run = api.post(f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": CUSTOM_PARAMS}).json()
    run_id, state, deadline = run["dag_run_id"], "queued", time.monotonic() + 600
    while state not in ("success", "failed") and time.monotonic() < deadline:
        time.sleep(5)
        state = api.get(f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}").json()["state"]
    tries = api.get(f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances").json()
    assert len([t for t in tries["task_instances"] if t["task_id"] == "train"]) == 2  # one per rate
    # The report task's report (written even when runs fail), through the viewer.
    report = httpx.get(
        f"{stack.url}/sagemaker-reports/dags/{DAG_ID}/runs/{quote(run_id, safe='')}",
        cookies={"_token": stack.token()},
        timeout=60,
    )
    assert report.status_code == 200 and "Comparison of 2 runs" in report.text
    assert "frame-ancestors 'self'" in report.headers["content-security-policy"]
    _screenshots(stack, run_id)
    assert state == "success"


def _screenshots(stack: RunningUI, run_id: str) -> None:
    """The trigger form, the run's grid and both report tabs, in headless Chromium."""
    if chromium_path() is None:
        print("no Chromium: no screenshots")
        return
    shots = Path(os.environ.get("SCREENSHOTS_DIR") or stack.home.parent / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    run_page = f"{stack.url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}"
    with Chromium() as browser:
        browser.set_cookie(stack.url, "_token", stack.token())
        browser.screenshot(f"{stack.url}/dags/{DAG_ID}", shots / "dag.png", ready=TRIGGER_BUTTON)
        browser.call("Runtime.evaluate", expression=f"{TRIGGER_BUTTON}.click()")
        browser.screenshot(None, shots / "trigger-form.png", ready=FORM_WITH_PARAMS)
        browser.call("Runtime.evaluate", expression=f"{PARAM_LABEL}?.scrollIntoView({{block: 'center'}})")
        browser.screenshot(None, shots / "trigger-form-params.png", ready=FORM_WITH_PARAMS)
        browser.screenshot(run_page, shots / "grid.png", ready=GRID_WITH_TASKS)
        report_tab = f"{run_page}/plugin/sagemaker-report"
        browser.screenshot(report_tab, shots / "report-tab.png", ready=Chromium.FRAME_LOADED)
        assert "Comparison of 2 runs" in browser.text(FRAME_TEXT)
        list_tab = f"{stack.url}/dags/{DAG_ID}/plugin/sagemaker-reports"
        browser.screenshot(list_tab, shots / "reports-tab.png", ready=Chromium.FRAME_LOADED)
        assert run_id in browser.text(FRAME_TEXT)
    print(f"screenshots in {shots}")
    for name in ("trigger-form", "grid", "report-tab", "reports-tab"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, name


@pytest.mark.services
@pytest.mark.timeout(300)
def test_ctrl_c_ends_every_process_it_started(stack: RunningUI) -> None:
    assert len(stack.processes()) >= 4
    stack.stop()
    deadline = time.monotonic() + 10
    while stack.processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stack.processes() == []
