"""``airflow-sm ui``: Airflow's own UI and services on this machine, against the local engine.

No Docker: a local SageMaker engine runs in this process, and Airflow's four services run as
child processes (``api-server``, ``scheduler``, ``dag-processor``, ``triggerer``) on a private
``AIRFLOW_HOME`` (SQLite, LocalExecutor), with

- the DAGs folder given (the repository's ``dags/`` by default),
- the ``aws_default`` connection pointed at the engine (``AIRFLOW_CONN_AWS_DEFAULT`` with
  ``endpoint_url``), and the demo bucket created on the engine's S3,
- the report viewer plugin in the home's plugins folder, reading that bucket,
- Airflow's simple auth manager with one user, ``admin``, whose password this command
  generates once, keeps in the home (mode 600) and prints.

The API server binds 127.0.0.1 only: the simple auth manager keeps passwords in plain text and
the engine runs code on this machine, so neither must be reachable from elsewhere.

Each service starts in its own session (so its own process group, with all the processes it
forks); Ctrl-C or SIGTERM ends every group by escalation (SIGTERM, grace, SIGKILL), then the
engine. Service output goes to ``<home>/logs/<service>.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

SERVICES = ("scheduler", "dag-processor", "triggerer", "api-server")
USERNAME = "admin"
PLUGIN_FILE_TEXT = (  # the repository's plugins/sagemaker_reports.py, written into the home
    '"""Airflow loads this file from its plugins folder; the plugin is in the installed package."""\n'
    "\n"
    "from airflow_sm_provider.ui.plugin import SageMakerReportsPlugin\n"
    "\n"
    '__all__ = ["SageMakerReportsPlugin"]\n'
)
STOP_GRACE_SECONDS = 10.0
READY_TIMEOUT_SECONDS = 300.0


def add_ui_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``airflow-sm ui``."""
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(".airflow-sm-ui"),
        help="private AIRFLOW_HOME: database, logs, password, engine records (default: ./.airflow-sm-ui)",
    )
    parser.add_argument(
        "--dags-folder", type=Path, default=Path("dags"), help="DAGs to load (default: ./dags)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port of the UI on 127.0.0.1 (default: 8080)")
    parser.add_argument(
        "--report-prefix",
        default="digits-demo",
        help="key prefix the report viewer reads under the demo bucket (default: digits-demo)",
    )


def password(home: Path) -> tuple[Path, str]:
    """The admin password in the simple auth manager's passwords file, made once (mode 600)."""
    path = home / "simple_auth_manager_passwords.json.generated"
    if path.exists():
        stored = json.loads(path.read_text() or "{}")
        if stored.get(USERNAME):
            return path, stored[USERNAME]
    value = secrets.token_urlsafe(12)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump({USERNAME: value}, file)
    return path, value


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (another Airflow on this machine may hold the defaults)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def airflow_environment(
    home: Path, dags_folder: Path, engine_env: dict[str, str], *, port: int, report_prefix: str
) -> dict[str, str]:
    """The services' environment: the demo's private Airflow plus the UI, plugin and login settings."""
    from airflow_sm_provider.demo import DEMO_BUCKET, _airflow_environment

    url = f"http://127.0.0.1:{port}"
    return {
        **_airflow_environment(home, dags_folder, engine_env),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        # A laptop busy with training jobs answers slowly: the default 5 s fails tasks at start.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
        # The scheduler's and triggerer's log servers (default 8793 / 8794).
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
            home / "simple_auth_manager_passwords.json.generated"
        ),
        "AIRFLOW__SAGEMAKER_PROVIDER__REPORT_BUCKET": DEMO_BUCKET,
        "AIRFLOW__SAGEMAKER_PROVIDER__REPORT_PREFIX": report_prefix,
    }


def _wait_ready(url: str, children: dict[str, subprocess.Popen[bytes]], stop: threading.Event) -> str:
    """Wait for the API server's health check; "" when ready, else what went wrong."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline and not stop.is_set():
        for name, child in children.items():
            if child.poll() is not None:
                return f"airflow {name} exited with code {child.returncode}"
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return ""
        except OSError:
            pass
        stop.wait(1.0)
    if stop.is_set():
        return "stopped"
    return f"the API server did not answer within {READY_TIMEOUT_SECONDS:.0f} s"


def _airflow(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *arguments]


def _start_service(name: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """One Airflow service in a new session: its own process group, holding all it forks."""
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            _airflow(name), env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )


def run_ui(args: argparse.Namespace) -> int:
    """Run the engine and Airflow's services until Ctrl-C or SIGTERM; end every process started."""
    from airflow_sm_provider.demo import DEMO_BUCKET
    from airflow_sm_provider.local import LocalEngine
    from airflow_sm_provider.local.process import end_process_groups, process_group_of

    home, dags_folder = args.home.resolve(), args.dags_folder.resolve()
    if not dags_folder.is_dir():
        print(f"--dags-folder: {dags_folder} is not a folder", file=sys.stderr)
        return 2
    (home / "plugins").mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    (home / "plugins" / "sagemaker_reports.py").write_text(PLUGIN_FILE_TEXT)
    password_file, secret = password(home)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a shell may start us ignoring it
        signal.signal(signum, lambda *_: stop.set())
    groups = []
    with LocalEngine(data_dir=home / "engine") as engine:
        engine.client("s3").create_bucket(Bucket=DEMO_BUCKET)
        env = {
            **os.environ,
            **airflow_environment(
                home, dags_folder, engine.environ(), port=args.port, report_prefix=args.report_prefix
            ),
        }
        url = env["AIRFLOW__API__BASE_URL"]
        print(f"local SageMaker engine at {engine.endpoint_url}; AIRFLOW_HOME={home}", flush=True)
        print("migrating Airflow's database ...", flush=True)
        migrate = subprocess.run(_airflow("db", "migrate"), env=env, check=False, stdout=subprocess.DEVNULL)
        if migrate.returncode or stop.is_set():
            print("airflow db migrate did not complete", file=sys.stderr)
            return 1
        children: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name in SERVICES:
                children[name] = _start_service(name, env, home / "logs" / f"{name}.log")
                groups.append(process_group_of(children[name].pid))
            print(f"starting {', '.join(SERVICES)} (logs in {home / 'logs'}) ...", flush=True)
            problem = _wait_ready(url, children, stop)
            if problem:
                print(f"{problem}; see {home / 'logs'}", file=sys.stderr)
                return 0 if problem == "stopped" else 1
            print(f"\nAirflow UI: {url}  (this machine only)")
            print(f"Log in as {USERNAME} / {secret}   (password kept in {password_file})")
            print(f"Reports: s3://{DEMO_BUCKET}/{args.report_prefix}/reports/ on the engine")
            print("Ctrl-C to stop everything.", flush=True)
            while not stop.is_set():
                if any(child.poll() is not None for child in children.values()):
                    failed = [n for n, c in children.items() if c.poll() is not None]
                    print(f"airflow {', '.join(failed)} exited; see {home / 'logs'}", file=sys.stderr)
                    return 1
                stop.wait(1.0)
            return 0
        finally:
            print("stopping Airflow's services and the engine ...", flush=True)
            end_process_groups(groups, STOP_GRACE_SECONDS)
            for child in children.values():
                child.wait()
