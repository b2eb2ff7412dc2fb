"""Airflow's real components as processes on this machine, for tests that need the real thing.

``dag.test()`` runs triggers inline and has no scheduler, so what only shows with the real
services (the triggerer's event loop, the scheduler's handling of deferrals, the REST API and
the UI) needs them started. :class:`AirflowServices` starts ``api-server``, ``scheduler``,
``dag-processor`` and ``triggerer`` as separate processes (one log file each) on SQLite with
the LocalExecutor, in a private ``AIRFLOW_HOME``::

    with AirflowServices(dags_folder, env={"AIRFLOW_CONN_AWS_DEFAULT": ...}) as airflow:
        api = airflow.api()                      # REST client, token from POST /auth/token
        api.unpause("my_dag")
        run = api.trigger("my_dag", conf={...})
        assert api.wait_for_run("my_dag", run["dag_run_id"])["state"] == "success"
        print(airflow.log("triggerer"))

Every component runs in its own session (process group); :meth:`AirflowServices.stop` ends
each group (SIGTERM, a grace period, then SIGKILL), so the task processes the LocalExecutor
forks go too, even when the test failed. :meth:`AirflowServices.restart` does the same to one
component and starts it again, as a deployment restarts a service. A user ``admin`` with a
generated password logs in through the simple auth manager, as a person would in the UI.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
FINISHED = ("success", "failed")


def engine_env(engine: Any) -> dict[str, str]:
    """The environment that sends the components' AWS calls to a running local engine: the SDKs'
    (``engine.environ()``) and the Amazon provider's ``aws_default`` connection."""
    return {
        **engine.environ(),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {"conn_type": "aws", "extra": {"endpoint_url": engine.endpoint_url}}
        ),
    }


def template_env(engine: Any) -> dict[str, str]:
    """:func:`engine_env` for runs of the template DAG: short polls and re-plots, and only the
    runs a test triggers (no scheduled run of the weekly template)."""
    return {
        **engine_env(engine),
        "SAGEMAKER_PIPELINE_POLL_SECONDS": "2",
        "SAGEMAKER_PIPELINE_REPLOT_SECONDS": "5",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AirflowApi:
    """A small client of Airflow's REST API (``/api/v2``), logged in with a JWT from ``/auth/token``."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30) -> None:
        self.base_url = base_url
        response = httpx.post(
            f"{base_url}/auth/token", json={"username": username, "password": password}, timeout=timeout
        )
        response.raise_for_status()
        self.token = response.json()["access_token"]
        self.http = httpx.Client(
            base_url=f"{base_url}/api/v2", headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; raises on an HTTP error with the response body in the message."""
        response = self.http.request(method, path, **kwargs)
        if response.is_error:
            raise AssertionError(f"{method} {path}: HTTP {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict[str, Any]:
        """The DAG once the dag-processor has parsed it."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.get(f"/dags/{dag_id}")
            if response.status_code == 200:
                return response.json()
            if time.monotonic() > deadline:
                errors = self.call("GET", "/importErrors")
                raise AssertionError(f"DAG {dag_id} not parsed in {timeout} s; import errors: {errors}")
            time.sleep(1)

    def unpause(self, dag_id: str) -> dict[str, Any]:
        return self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(
        self, dag_id: str, conf: Mapping[str, Any] | None = None, logical_date: datetime | None = None
    ) -> dict[str, Any]:
        """Create a DAG run (``POST /dags/{dag_id}/dagRuns``); returns it (``dag_run_id``, ``state``, ...)."""
        body = {
            "conf": dict(conf or {}),
            "logical_date": (logical_date or datetime.now(UTC)).isoformat(),
        }
        return self.call("POST", f"/dags/{dag_id}/dagRuns", json=body)

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout: float = 600, states: Sequence[str] = FINISHED
    ) -> dict[str, Any]:
        """The DAG run once its state is one of ``states``."""
        deadline = time.monotonic() + timeout
        while (run := self.dag_run(dag_id, run_id))["state"] not in states:
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} still {run['state']} after {timeout} s")
            time.sleep(1)
        return run

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run (each mapped one), page by page: the API returns 100 at most."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.call(
                "GET",
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                params={"limit": 100, "offset": len(found), "order_by": "id"},
            )
            found.extend(page["task_instances"])
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found


class AirflowServices:
    """Airflow's components as processes, on SQLite and the LocalExecutor in a private home.

    :param dags_folder: the DAGs folder the dag-processor parses.
    :param env: more environment for every component (connections, settings).
    :param components: which components to start.
    :param home: ``AIRFLOW_HOME``; a new temporary directory by default (kept after stop, for logs).
    """

    def __init__(
        self,
        dags_folder: Path,
        env: Mapping[str, str] | None = None,
        components: Sequence[str] = COMPONENTS,
        home: Path | None = None,
    ) -> None:
        self.home = Path(home or tempfile.mkdtemp(prefix="airflow-services-"))
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.username, self.password = "admin", secrets.token_urlsafe(16)
        self.components = tuple(components)
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(Path(dags_folder).resolve()),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.username}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            # One secret for every component: the api-server signs the tokens workers present.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            **(env or {}),
        }
        self.env.pop("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", None)  # log in as the user

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 180) -> AirflowServices:
        """Migrate the database, start the components, wait until all report healthy."""
        (self.home / "passwords.json").write_text(json.dumps({self.username: self.password}))
        try:
            self.airflow("db", "migrate", timeout=timeout)
            # Four processes share the file: in WAL mode readers and a writer work at once.
            with contextlib.closing(sqlite3.connect(self.home / "airflow.db")) as db:
                db.execute("PRAGMA journal_mode=WAL")
            for component in self.components:
                self.processes[component] = self._spawn(component, "wb")
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, component: str, mode: str) -> subprocess.Popen:
        with self.log_path(component).open(mode) as log:  # the child holds its own copy
            return subprocess.Popen(
                [sys.executable, "-m", "airflow", component],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends its children too
            )

    def restart(self, component: str, grace: float = 30, timeout: float = 180) -> subprocess.Popen:
        """Restart ``component`` as a deployment restarts a service; returns the new process.

        Its process group gets SIGTERM, ``grace`` seconds to exit (then SIGKILL); it starts
        again with the same environment, appending to the same log file, and this returns once
        Airflow reports it healthy with a heartbeat of the new process (the old one's job may
        look alive for a while after it died).
        """
        _end_group(self.processes.pop(component), grace=grace)
        since = datetime.now(UTC)
        self.processes[component] = self._spawn(component, "ab")
        self.wait_healthy(timeout, since=since)
        return self.processes[component]

    def airflow(self, *args: str, timeout: float = 120) -> str:
        """Run one ``airflow`` CLI command in this home; returns its output."""
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
            )
        return done.stdout

    def wait_healthy(self, timeout: float, since: datetime | None = None) -> dict[str, Any]:
        """``GET /api/v2/monitor/health`` until every started component is healthy (and, with
        ``since``, has a heartbeat later than it)."""
        wanted = {"scheduler", "triggerer", "dag_processor"} & {c.replace("-", "_") for c in self.components}

        def ready(component: str) -> bool:
            state = health.get(component) or {}
            beat = state.get(f"latest_{component}_heartbeat")
            fresh = since is None or (beat is not None and datetime.fromisoformat(beat) > since)
            return state.get("status") == "healthy" and fresh

        deadline = time.monotonic() + timeout
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for component, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{component} exited with {process.returncode}:\n{self.log(component)[-3000:]}"
                    )
            try:
                health = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                health = {}
            if health and all(ready(c) for c in wanted):
                return health
            time.sleep(1)
        raise TimeoutError(f"Airflow not healthy after {timeout} s: {health}")

    def stop(self, grace: float = 10) -> None:
        """End every component's process group: SIGTERM, ``grace`` seconds, then SIGKILL."""
        _end_group(*self.processes.values(), grace=grace)
        self.processes.clear()

    def __enter__(self) -> AirflowServices:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------ use

    def api(self) -> AirflowApi:
        """A REST client logged in as the admin user."""
        return AirflowApi(self.base_url, self.username, self.password)

    def log_path(self, component: str) -> Path:
        return self.home / f"{component}.log"

    def task_logs(self, dag_id: str, run_id: str, task_id: str) -> dict[str, str]:
        """The task's log files by name: ``attempt=N.log`` from the worker, and
        ``attempt=N.log.trigger.M.log`` from the triggerer for each deferral."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return {path.name: path.read_text(errors="replace") for path in sorted(folder.rglob("attempt=*"))}

    def log(self, component: str) -> str:
        """Everything ``component`` wrote to stdout and stderr so far."""
        path = self.log_path(component)
        return path.read_text(errors="replace") if path.exists() else ""


def _end_group(*processes: subprocess.Popen, grace: float) -> None:
    """SIGTERM to each process's group, ``grace`` seconds for all, then SIGKILL to what is left."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.1, deadline - time.monotonic()))
        _signal_group(process, signal.SIGKILL)  # the group's stragglers too
        process.wait()


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # start_new_session: group id == process id
        os.killpg(process.pid, sig)
