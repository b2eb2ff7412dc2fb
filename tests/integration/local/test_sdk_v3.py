"""The SageMaker Python SDK v3, unmodified and with default settings, runs jobs on the engine.

``sagemaker-train`` (``ModelTrainer``) cannot share an environment with this project's pins
(it needs mlflow 3, whose graphene needs a graphql-core older than Airflow's), so it runs in its
own virtualenv: ``AIRFLOW_SM_SDK_V3_PYTHON`` names an interpreter that has it, else the test
builds one under ``~/.cache/airflow-sm-provider/sdk-v3`` (about 1 GB, many minutes, once).
Run with ``python -m pytest -m slow tests/integration/local/test_sdk_v3.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SDK_V3 = "sagemaker-train==1.27.0"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
CLIENT = Path(__file__).with_name("sdk_v3") / "client.py"

TRAIN = """\
import os
os.makedirs("/opt/ml/model", exist_ok=True)
with open(os.path.join(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"), "model.txt"), "w") as f:
    f.write("trained")
print("trained")
"""
PROCESS = """\
import os
os.makedirs("/opt/ml/processing/output", exist_ok=True)
with open("/opt/ml/processing/output/rows.csv", "w") as f:
    f.write("a,b\\n1,2\\n")
print("processed")
"""


def sdk_v3_python() -> str:
    """An interpreter with the SDK v3: the environment's choice, else one built once and kept."""
    if chosen := os.environ.get("AIRFLOW_SM_SDK_V3_PYTHON"):
        return chosen
    venv = Path.home() / ".cache" / "airflow-sm-provider" / "sdk-v3"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", SDK_V3], check=True, timeout=3600)
    return str(python)


def test_model_trainer_and_script_processor_complete_with_default_settings(engine, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(TRAIN)
    (source / "process.py").write_text(PROCESS)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **engine.environ()}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    done = subprocess.run(
        [sdk_v3_python(), str(CLIENT), str(source), IMAGE],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["training_status"] == "Completed", result["training_failure"]
    assert result["processing_status"] == "Completed", result["processing_failure"]
    assert result["bucket"] == f"sagemaker-{engine.region}-{engine.ctx.account_id}"
    assert result["role"] == f"arn:aws:iam::{engine.ctx.account_id}:role/SageMakerExecutionRole"
    s3 = engine.client("s3")
    bucket, _, key = result["model"].removeprefix("s3://").partition("/")
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
    bucket, _, prefix = result["processed"].removeprefix("s3://").partition("/")
    assert s3.get_object(Bucket=bucket, Key=f"{prefix}/rows.csv")["Body"].read() == b"a,b\n1,2\n"
