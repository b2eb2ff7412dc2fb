"""docker-compose.yaml cannot be started here (no Docker engine); check what can be read."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yaml"


def test_stack_runs_airflow_3_with_a_triggerer_and_the_local_engine() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"api-server", "scheduler", "dag-processor", "triggerer", "sagemaker-local"} <= set(services)
    engine = services["sagemaker-local"]
    assert engine["entrypoint"][:3] == ["airflow-sm", "local", "up"]
    endpoint = services["scheduler"]["environment"]["AWS_ENDPOINT_URL"]
    assert endpoint == f"http://sagemaker-local:{engine['entrypoint'][engine['entrypoint'].index('--port') + 1]}"


def test_published_ports_stay_on_this_machine() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), name
