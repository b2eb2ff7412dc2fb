"""LocalEngine's life cycle: start fast, stop cleanly, keep records in a persistent data dir."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from airflow_sm_provider.local import LocalEngine
from airflow_sm_provider.local.engine import is_loopback

pytestmark = pytest.mark.integration


def test_starts_and_answers_on_loopback():
    """Its start-up time is measured by ``benchmarks/engine_latency.py`` (target 3 s), not here."""
    with LocalEngine() as engine:
        assert engine.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
        assert engine.endpoint_url.startswith("http://127.0.0.1:")


def test_stop_frees_the_port_and_removes_the_temporary_dir():
    engine = LocalEngine().start()
    port, data_dir = int(engine.endpoint_url.rsplit(":", 1)[1]), engine.ctx.data_dir
    assert data_dir.is_dir()
    engine.stop()
    engine.stop()  # idempotent
    assert not data_dir.exists()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_persistent_data_dir_keeps_records(tmp_path):
    with LocalEngine(data_dir=tmp_path) as engine:
        engine.client("sagemaker").create_experiment(ExperimentName="kept-experiment")
    with LocalEngine(data_dir=tmp_path) as engine:
        described = engine.client("sagemaker").describe_experiment(ExperimentName="kept-experiment")
        assert described["ExperimentName"] == "kept-experiment"
    assert (tmp_path / "engine.sqlite3").exists()


def test_a_failed_start_leaves_nothing_behind():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        engine = LocalEngine(port=taken.getsockname()[1])
        with pytest.raises(OSError):
            engine.start()
        assert engine._temp_dir is None
    with pytest.raises(RuntimeError):
        engine.endpoint_url  # noqa: B018


def test_environ_points_clients_at_the_engine_and_opts_out_of_telemetry(engine):
    env = engine.environ()
    assert env["AWS_ENDPOINT_URL"] == engine.endpoint_url
    assert env["AWS_DEFAULT_REGION"] == engine.region
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
    config = Path(env["SAGEMAKER_USER_CONFIG_OVERRIDE"]).read_text()
    assert "TelemetryOptOut: true" in config


def test_sdk_reads_the_telemetry_opt_out(aws_env):
    """The SDK resolves TelemetryOptOut from the config file environ() points it at."""
    from sagemaker.core.config.config import load_sagemaker_config

    config = load_sagemaker_config()
    assert config["SageMaker"]["PythonSDK"]["Modules"]["TelemetryOptOut"] is True
    assert os.environ["AWS_ENDPOINT_URL"] == aws_env["AWS_ENDPOINT_URL"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),  # noqa: S104
        ("10.1.2.3", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
