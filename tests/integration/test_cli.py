"""``airflow-sm local up`` and ``python -m airflow_sm_provider.local``, run as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from airflow_sm_provider import cli

#: The console script installed beside this interpreter (found also when its venv is not activated).
CONSOLE_SCRIPT = str(Path(sys.executable).with_name("airflow-sm"))

pytestmark = pytest.mark.integration


def start(argv: list[str]) -> tuple[subprocess.Popen, dict[str, str]]:
    """Start the engine command; return the process and the exports it printed."""
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    exports: dict[str, str] = {}
    deadline = time.monotonic() + 20
    while "SAGEMAKER_USER_CONFIG_OVERRIDE" not in exports:
        assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
        line = process.stdout.readline().strip()
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            exports[key] = value
    return process, exports


def finish(process: subprocess.Popen, signum: int) -> str:
    """Send ``signum``; the engine must exit 0 within a few seconds."""
    sent = time.monotonic()
    process.send_signal(signum)
    out, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    assert time.monotonic() - sent < 5
    return out


@pytest.mark.parametrize(
    ("argv", "signum"),
    [
        ([CONSOLE_SCRIPT, "local", "up", "--port", "0"], signal.SIGINT),
        ([sys.executable, "-m", "airflow_sm_provider.local", "--port", "0"], signal.SIGTERM),
    ],
    ids=["console-script-ctrl-c", "python-m-sigterm"],
)
def test_prints_exports_serves_and_stops_cleanly(argv, signum, tmp_path):
    process, exports = start([*argv, "--data-dir", str(tmp_path)])
    try:
        assert exports["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert exports["AWS_DEFAULT_REGION"] == "us-east-1"
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(exports)
        health = exports["AWS_ENDPOINT_URL"] + "/_engine/health"  # an http:// URL the engine printed
        with urllib.request.urlopen(health, timeout=5) as response:  # noqa: S310
            assert json.load(response) == {"status": "ok"}
        session = boto3.session.Session(
            aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
            region_name=exports["AWS_DEFAULT_REGION"],
        )
        sagemaker = session.client("sagemaker", endpoint_url=exports["AWS_ENDPOINT_URL"])
        assert sagemaker.list_training_jobs()["TrainingJobSummaries"] == []  # a fresh --data-dir
    finally:
        out = finish(process, signum)
    assert "stopping" in out
    assert Path(tmp_path, "engine.sqlite3").exists()  # --data-dir was used and kept


@pytest.mark.parametrize(
    "argv",
    [
        [sys.executable, "-m", "airflow_sm_provider.local"],
        [CONSOLE_SCRIPT, "local", "up"],
    ],
    ids=["python-m", "console-script"],
)
def test_warns_once_when_not_on_loopback(argv, tmp_path):
    process, _ = start([*argv, "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path)])  # noqa: S104
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=15)
    warnings = [line for line in err.splitlines() if "not a loopback address" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "0.0.0.0 is not" in warnings[0]


def test_port_in_use_is_an_error_not_a_traceback(engine):
    port = engine.endpoint_url.rsplit(":", 1)[1]
    argv = [sys.executable, "-m", "airflow_sm_provider.local", "--port", port]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "cannot start the engine" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        [sys.executable, "-m", "airflow_sm_provider.local"],
        [CONSOLE_SCRIPT, "local", "up"],
    ],
    ids=["python-m", "console-script"],
)
def test_help_lists_the_engine_flags(argv):
    result = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert all(flag in result.stdout for flag in ("--port", "--data-dir", "--host", "--max-concurrent-jobs"))


def test_parser_has_the_engine_flags():
    args = cli.build_parser().parse_args(
        ["local", "up", "--host", "127.0.0.1", "--port", "0", "--data-dir", "d", "--max-concurrent-jobs", "2"]
    )
    assert (args.host, args.port, args.data_dir, args.max_concurrent_jobs) == ("127.0.0.1", 0, Path("d"), 2)
