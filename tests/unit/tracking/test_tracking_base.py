"""The tracker interface's value types and backend choice."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_sm_provider.errors import ConfigValidationError
from airflow_sm_provider.naming import JobIdentity
from airflow_sm_provider.tracking.base import RunRef, TrackingConfig, open_tracker


def test_config_lower_cases_and_checks_names_when_built():
    config = TrackingConfig(experiment="Digits-Sweep", run_name="LR")
    assert (config.experiment, config.run_name) == ("digits-sweep", "lr")
    with pytest.raises(ConfigValidationError, match="experiment: must be 1 to 59"):
        TrackingConfig(experiment="x" * 60)
    with pytest.raises(ConfigValidationError, match="run_name: must be 1 to 48"):
        TrackingConfig(experiment="ok", run_name="bad_name")
    with pytest.raises(ConfigValidationError, match="tracking backend: must be one of"):
        TrackingConfig(experiment="ok", backend="wandb")


def test_run_name_defaults_to_the_job_prefix():
    identity = JobIdentity("default", "dag", "manual__1", "train", 0)
    assert TrackingConfig("exp").run_name_for("Digits", identity).startswith("digits-")
    assert TrackingConfig("exp", run_name="cand").run_name_for("Digits", identity).startswith("cand-")


def test_run_ref_round_trips_through_xcom_without_job_fields():
    ref = RunRef("experiments", "exp", "run-1", "exp-run-1", "arn:x", {"ExperimentConfig": {"RunName": "x"}})
    data = ref.to_xcom()
    assert data == {
        "backend": "experiments",
        "experiment": "exp",
        "run_name": "run-1",
        "record": "exp-run-1",
        "arn": "arn:x",
    }
    assert RunRef.from_xcom(data) == ref
    with pytest.raises(ValueError, match="without record"):
        RunRef.from_xcom({**data, "record": ""})


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown tracking backend 'wandb'"):
        open_tracker("wandb")


def test_tracking_modules_import_no_sdk_aws_or_airflow():
    code = (
        "import sys\n"
        "import airflow_sm_provider.tracking.base, airflow_sm_provider.tracking.experiments\n"
        "print(sorted(m for m in ('sagemaker', 'boto3', 'botocore', 'airflow') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_telemetry_is_opted_out_and_the_rest_of_the_sdk_config_kept():
    from airflow_sm_provider.tracking.experiments import telemetry_off

    assert telemetry_off(None) == {
        "SchemaVersion": "1.0",
        "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
    }
    user = {
        "SchemaVersion": "1.0",
        "SageMaker": {"PythonSDK": {"Modules": {"Session": {"DefaultS3Bucket": "b"}}}},
    }
    result = telemetry_off(user)
    assert result["SageMaker"]["PythonSDK"]["Modules"] == {
        "Session": {"DefaultS3Bucket": "b"},
        "TelemetryOptOut": True,
    }
    assert "TelemetryOptOut" not in user["SageMaker"]["PythonSDK"]["Modules"]  # the caller's dict untouched
