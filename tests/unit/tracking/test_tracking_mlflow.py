"""The MLflow backend's pure parts: the switch, what the job gets, names; no server needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_sm_provider.errors import ConfigValidationError
from airflow_sm_provider.tracking.base import RunRef, TrackingConfig, with_job_fields
from airflow_sm_provider.tracking.mlflow import artifact_file_name, job_fields, tracking_uri_of

SERVER_ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team"
APP_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-app/app-abc"


def test_the_backend_is_one_switch_and_the_uri_is_for_mlflow_only():
    config = TrackingConfig("Sweep", backend="mlflow", tracking_uri="http://127.0.0.1:5000")
    assert (config.experiment, config.backend) == ("sweep", "mlflow")
    with pytest.raises(ConfigValidationError, match="tracking_uri: is for the mlflow backend only"):
        TrackingConfig("sweep", tracking_uri="http://127.0.0.1:5000")


def test_the_uri_defaults_to_the_environment_and_is_required(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking_uri_of(None) == "http://mlflow.internal:5000"
    assert tracking_uri_of("http://given:1") == "http://given:1"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(ConfigValidationError, match="tracking_uri: required for the mlflow backend"):
        tracking_uri_of(None)


def test_a_self_hosted_server_gives_the_job_its_run_in_the_environment_only():
    assert job_fields("http://127.0.0.1:5000", "sweep", "cand-1a2b", "r123") == {
        "Environment": {
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
            "MLFLOW_EXPERIMENT_NAME": "sweep",
            "MLFLOW_RUN_ID": "r123",
        }
    }


@pytest.mark.parametrize("arn", [SERVER_ARN, APP_ARN])
def test_a_sagemaker_mlflow_arn_also_gives_mlflow_config(arn: str):
    fields = job_fields(arn, "sweep", "cand-1a2b", "r123")
    assert fields["MlflowConfig"] == {
        "MlflowResourceArn": arn,
        "MlflowExperimentName": "sweep",
        "MlflowRunName": "cand-1a2b",
    }
    assert fields["Environment"]["MLFLOW_TRACKING_URI"] == arn


def test_run_fields_merge_into_the_jobs_own_environment():
    ref = RunRef("mlflow", "sweep", "cand", "r1", job_fields=job_fields(SERVER_ARN, "sweep", "cand", "r1"))
    config = {"TrainingJobName": "t", "Environment": {"MODE": "fast", "MLFLOW_RUN_ID": "stale"}}
    merged = with_job_fields(config, ref)
    assert merged["Environment"] == {
        "MODE": "fast",
        "MLFLOW_TRACKING_URI": SERVER_ARN,
        "MLFLOW_EXPERIMENT_NAME": "sweep",
        "MLFLOW_RUN_ID": "r1",
    }
    assert merged["MlflowConfig"]["MlflowRunName"] == "cand"
    assert config["Environment"]["MLFLOW_RUN_ID"] == "stale"  # the operator's config is not changed


def test_the_tracking_uri_travels_in_the_xcom_only_when_there_is_one():
    ref = RunRef("mlflow", "sweep", "cand", "r1", tracking_uri="http://127.0.0.1:5000")
    assert ref.to_xcom()["tracking_uri"] == "http://127.0.0.1:5000"
    assert RunRef.from_xcom(ref.to_xcom()) == ref
    assert "tracking_uri" not in RunRef("experiments", "e", "r", "e-r").to_xcom()


def test_artifact_names_become_file_names():
    assert artifact_file_name("curve:val_loss") == "curve-val_loss"
    assert artifact_file_name("../x/y") == "..-x-y"


def test_the_mlflow_module_imports_no_mlflow_aws_or_airflow():
    code = (
        "import sys\n"
        "import airflow_sm_provider.tracking.mlflow\n"
        "print(sorted(m for m in ('mlflow', 'boto3', 'botocore', 'airflow') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
