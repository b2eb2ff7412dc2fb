"""docker-compose.yaml cannot be started here (no Docker engine): it is checked against the Compose
specification's JSON schema (vendored: tests/deploy/compose-spec.json, from compose-spec/compose-spec
commit a08f8d51631b7127ddac3d2c65537db429d0f1d0, schema/compose-spec.json), and its references,
secrets, permissions and the engine's healthcheck are checked as far as they can be read or run."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
SCHEMA = ROOT / "tests" / "deploy" / "compose-spec.json"
AIRFLOW_SERVICES = {"airflow-init", "api-server", "scheduler", "dag-processor", "triggerer"}
# ${NAME}, ${NAME:-default}, ${NAME:?message}; $${...} is an escaped dollar for the container's shell.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_file_follows_the_compose_specification(compose: dict) -> None:
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(compose)


def test_the_schema_refuses_what_compose_refuses(compose: dict) -> None:
    """The validation has teeth: an unknown service key fails."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["scheduler"]["comand"] = "scheduler"
    with pytest.raises(jsonschema.ValidationError, match="comand"):
        jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(broken)


def test_stack_has_the_airflow_3_services_and_the_engine(services: dict) -> None:
    assert set(services) == AIRFLOW_SERVICES | {"postgres", "sagemaker-local"}
    commands = {name: services[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands["airflow-init"] == ["db", "migrate"]
    assert {commands[n] for n in AIRFLOW_SERVICES - {"airflow-init"}} == {
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
    }


def test_dependencies_name_services_and_wait_for_health_or_completion(services: dict) -> None:
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services and target != name, (name, target)
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], (name, target)
            else:
                assert (target, rule["condition"]) == ("airflow-init", "service_completed_successfully")
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert services[name]["depends_on"]["sagemaker-local"] == {"condition": "service_healthy"}
        assert "healthcheck" in services[name], name


def test_named_volumes_are_declared_and_used(compose: dict, services: dict) -> None:
    used = {
        mount.split(":")[0]
        for service in services.values()
        for mount in service.get("volumes", [])
        if not mount.startswith((".", "/"))
    }
    assert used == set(compose["volumes"])
    for mount in (m for s in services.values() for m in s.get("volumes", []) if m.startswith(".")):
        assert (ROOT / mount.split(":")[0]).is_dir(), mount


def test_every_variable_comes_from_the_env_example_and_secrets_are_required() -> None:
    text = COMPOSE.read_text()
    used = set(VARIABLE.findall(text))
    assert used == set(env_example())
    for name in ("AIRFLOW_JWT_SECRET", "SAGEMAKER_LOCAL_ACCESS_KEY_ID", "SAGEMAKER_LOCAL_SECRET_ACCESS_KEY"):
        # Required (":?"): compose refuses to start without them instead of running with a blank secret.
        assert re.findall(rf"\$\{{{name}:\?", text), name
        assert env_example()[name].startswith("replace-with-"), name


def test_every_airflow_container_shares_one_jwt_secret(services: dict) -> None:
    secrets = {services[n]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] for n in AIRFLOW_SERVICES}
    assert len(secrets) == 1
    assert VARIABLE.fullmatch(secrets.pop()).group(1) == "AIRFLOW_JWT_SECRET"


def test_airflow_signs_with_the_key_pair_the_engine_accepts_and_uses_an_allowed_host(services: dict) -> None:
    engine = services["sagemaker-local"]
    command = engine["entrypoint"]
    assert command[:3] == ["airflow-sm", "local", "up"]
    port = command[command.index("--port") + 1]
    allowed = [command[i + 1] for i, arg in enumerate(command) if arg == "--allowed-host"]
    for name in AIRFLOW_SERVICES:
        environment = services[name]["environment"]
        assert environment["AWS_ACCESS_KEY_ID"] == engine["environment"]["SAGEMAKER_LOCAL_ACCESS_KEY_ID"]
        assert (
            environment["AWS_SECRET_ACCESS_KEY"] == engine["environment"]["SAGEMAKER_LOCAL_SECRET_ACCESS_KEY"]
        )
        endpoint = f"http://sagemaker-local:{port}"
        assert environment["AWS_ENDPOINT_URL"] == endpoint
        assert json.loads(environment["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]["endpoint_url"] == endpoint
    assert allowed == ["sagemaker-local"]


def test_the_engine_data_volume_starts_owned_by_the_image_user(compose: dict, services: dict) -> None:
    """Docker gives a new named volume the owner of the image folder it is mounted on: the folder
    must exist in the image, made by the image's user (airflow: no USER switch in the build)."""
    engine = services["sagemaker-local"]
    command = engine["entrypoint"]
    data_dir = command[command.index("--data-dir") + 1]
    (mount,) = engine["volumes"]
    volume, target = mount.split(":")
    assert target == data_dir and volume in compose["volumes"]
    dockerfile = compose["x-image"]["build"]["dockerfile_inline"]
    assert "USER" not in dockerfile
    assert re.search(rf"mkdir -p {re.escape(data_dir)}\s*$", dockerfile)


def test_the_image_keeps_the_airflow_version_it_starts_from(compose: dict) -> None:
    dockerfile = compose["x-image"]["build"]["dockerfile_inline"]
    (base,) = re.findall(r"FROM apache/airflow:(\d+\.\d+\.\d+)-python", dockerfile)
    assert f'"apache-airflow=={base}"' in dockerfile


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (its plain patterns only)."""
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    parts = path.split("/")
    return any(
        fnmatch.fnmatch("/".join(parts[: i + 1]), p.removeprefix("**/"))
        or fnmatch.fnmatch(parts[i], p.removeprefix("**/"))
        for p in patterns
        for i in range(len(parts))
    )


def test_the_build_context_leaves_out_history_environments_outputs_and_secrets(services: dict) -> None:
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        ".venv-ci/bin/python",
        "artifacts/report.html",
        ".env",
        "airflow_sm_provider/__pycache__/x.pyc",
        "tests/conftest.py",
    ):
        assert ignored(path), path
    healthcheck = services["sagemaker-local"]["healthcheck"]["test"][-1]
    script = healthcheck.removeprefix("/opt/airflow-sm-provider/")
    for path in ("setup.cfg", "airflow_sm_provider/__init__.py", "README.md", script):
        assert not ignored(path), path
        assert (ROOT / path).is_file(), path


def test_published_ports_stay_on_this_machine(services: dict) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), name


@pytest.mark.integration
def test_engine_healthcheck_creates_the_demo_bucket_and_finds_it_again(engine, aws_env) -> None:
    """Run the healthcheck script against a real engine, as compose would after each (re)start."""
    env = {
        **os.environ,
        "SAGEMAKER_LOCAL_ENDPOINT": engine.endpoint_url,
        "SAGEMAKER_LOCAL_ACCESS_KEY_ID": aws_env["AWS_ACCESS_KEY_ID"],
        "SAGEMAKER_LOCAL_SECRET_ACCESS_KEY": aws_env["AWS_SECRET_ACCESS_KEY"],
        "DEMO_BUCKET": "compose-healthcheck-bucket",
    }
    script = ROOT / "deploy" / "compose" / "engine_healthcheck.py"
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
    import boto3

    s3 = boto3.client("s3", endpoint_url=engine.endpoint_url, region_name=engine.region)
    assert "compose-healthcheck-bucket" in {b["Name"] for b in s3.list_buckets()["Buckets"]}
