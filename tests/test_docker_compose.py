"""docker-compose.yaml cannot be started here (no Docker engine); check what can be read."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yaml"


def test_stack_runs_airflow_3_with_a_triggerer_and_the_local_engine() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"api-server", "scheduler", "dag-processor", "triggerer", "sagemaker-local"} <= set(services)
    command = services["sagemaker-local"]["entrypoint"]
    assert command[:3] == ["airflow-sm", "local", "up"]
    port = command[command.index("--port") + 1]
    assert services["scheduler"]["environment"]["AWS_ENDPOINT_URL"] == f"http://sagemaker-local:{port}"


def test_published_ports_stay_on_this_machine() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), name
