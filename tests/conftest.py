"""Shared fixtures: one local engine per test session, and a private Airflow on SQLite.

Airflow reads AIRFLOW_HOME and its configuration when it is first imported, so this module
points them at a temporary folder before any test module imports Airflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="airflow-sm-tests-"))
_DAGS_FOLDER = _AIRFLOW_HOME / "dags"
_DAGS_FOLDER.mkdir()
AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(_DAGS_FOLDER),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
    # Airflow 2.11 in unit-test mode picks the LocalExecutor and then refuses SQLite; its own
    # test suite skips that check the same way (no effect on Airflow 3).
    "_AIRFLOW__SKIP_DATABASE_EXECUTOR_COMPATIBILITY_CHECK": "1",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
}
os.environ.update(AIRFLOW_ENV)
# Tests never use the host's AWS identity: every client goes to the local engine or moto.
for _key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_key, None)


@pytest.fixture(scope="session")
def engine() -> Iterator[object]:
    """One local SageMaker engine for the whole session, on a free port and a temporary data dir."""
    from airflow_sm_provider.local import LocalEngine

    with LocalEngine() as running:
        yield running


@pytest.fixture
def aws_env(engine, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point boto3, the Amazon provider and the sagemaker SDK of this test at the engine."""
    env = engine.environ()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    connection = {
        "conn_type": "aws",
        "extra": {"endpoint_url": engine.endpoint_url, "region_name": engine.region},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    return env


@pytest.fixture
def s3_bucket(engine) -> str:
    """A new, empty bucket on the engine's S3."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    engine.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata database, migrated once per session (for ``dag.test()``)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **AIRFLOW_ENV},
        check=True,
        capture_output=True,
        timeout=300,
    )
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def dags_folder() -> Path:
    """The folder Airflow's DAG bundle reads: ``dag.test()`` in Airflow 3 runs DAGs found there."""
    return _DAGS_FOLDER


@pytest.fixture(scope="session")
def mlflow_tracking_server(engine) -> dict:
    """One SageMaker MLflow tracking server on the session's engine (a real ``mlflow server`` with
    a SQLite store); its DescribeMlflowTrackingServer response once Created.

    Skipped where the ``mlflow`` package is not installed (extra ``mlflow-server``).
    """
    import time

    pytest.importorskip("mlflow.server", reason="needs the mlflow-server extra")
    sagemaker = engine.client("sagemaker")
    sagemaker.create_mlflow_tracking_server(
        TrackingServerName="tests",
        ArtifactStoreUri="s3://mlflow-artifacts/tests",
        RoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
    )
    deadline = time.monotonic() + 180
    while (described := sagemaker.describe_mlflow_tracking_server(TrackingServerName="tests"))[
        "TrackingServerStatus"
    ] == "Creating" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert described["TrackingServerStatus"] == "Created", described
    return described


@pytest.fixture(scope="session")
def mlflow_server(mlflow_tracking_server: dict) -> str:
    """The URL of the session's MLflow tracking server, for ``MlflowClient`` and the tracker."""
    return mlflow_tracking_server["TrackingServerUrl"]
