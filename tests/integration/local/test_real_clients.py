"""Real clients on the engine, unmodified: the SageMaker SDK's role and bucket lookups, the AWS CLI.

The SDK here is the installed ``sagemaker-core`` (the role resolver and ``Session`` that
``sagemaker-train``'s ``ModelTrainer`` calls); ``ModelTrainer`` itself needs its own
environment and runs in ``test_sdk_v3.py`` (slow). The AWS CLI is ``awscli`` from PyPI (the
``awscli`` extra), run as a command.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from jobs_support import training_config, upload_script

from airflow_sm_provider.local.iam import SAGEMAKER_TRUST_POLICY
from airflow_sm_provider.local.sdk_defaults import DEFAULT_ROLE_NAME, default_bucket

pytestmark = pytest.mark.integration


def test_iam_simulates_every_action_allowed_for_a_principal_of_the_engine_account(engine):
    iam = engine.client("iam")
    role = f"arn:aws:iam::{engine.ctx.account_id}:role/any-{uuid.uuid4().hex[:8]}"
    pages = iam.get_paginator("simulate_principal_policy").paginate(
        PolicySourceArn=role, ActionNames=["sagemaker:CreateTrainingJob", "s3:GetObject"]
    )
    results = [r for page in pages for r in page["EvaluationResults"]]
    assert [(r["EvalActionName"], r["EvalDecision"]) for r in results] == [
        ("sagemaker:CreateTrainingJob", "allowed"),
        ("s3:GetObject", "allowed"),
    ]
    with pytest.raises(ClientError) as info:
        iam.simulate_principal_policy(
            PolicySourceArn="arn:aws:iam::999999999999:role/r", ActionNames=["s3:*"]
        )
    assert info.value.response["Error"]["Code"] == "NoSuchEntity"


def test_iam_get_role_knows_every_role_of_the_engine_account_and_keeps_created_ones(engine):
    iam = engine.client("iam")
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    role = iam.get_role(RoleName=name)["Role"]
    assert role["Arn"] == f"arn:aws:iam::{engine.ctx.account_id}:role/{name}"
    assert role["AssumeRolePolicyDocument"] == SAGEMAKER_TRUST_POLICY
    assert name in [r["RoleName"] for r in iam.list_roles()["Roles"]]  # it exists from now on
    own = f"own-{uuid.uuid4().hex[:8]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    iam.create_role(RoleName=own, AssumeRolePolicyDocument=json.dumps(trust))
    assert iam.get_role(RoleName=own)["Role"]["AssumeRolePolicyDocument"] == trust


def test_sts_caller_identity_is_the_engine_account(engine):
    assert engine.client("sts").get_caller_identity()["Account"] == engine.ctx.account_id


def test_sdk_finds_its_default_bucket_and_role_on_the_engine_without_aws(aws_env):
    """``Session.default_bucket()`` and the SDK's role check with default settings.

    Without the engine's SDK config the bucket lookup would call STS on AWS's own endpoint
    (with the engine's key: refused) and the role check would fail on SimulatePrincipalPolicy.
    """
    from sagemaker.core.helper.iam_role_resolver import resolve_and_validate_role
    from sagemaker.core.helper.session_helper import Session

    session = Session()
    bucket = session.default_bucket()
    assert bucket == default_bucket(aws_env["AWS_REGION"], "123456789012")
    session.s3_client.head_bucket(Bucket=bucket)  # created on the engine's S3
    expected = f"arn:aws:iam::123456789012:role/{DEFAULT_ROLE_NAME}"
    if "validate_role" in inspect.signature(resolve_and_validate_role).parameters:
        role = resolve_and_validate_role(role_type="training", sagemaker_session=session)  # the config's
    else:  # sagemaker-core 2.17 (under Airflow 2.11's boto3) resolves a given role or the caller's own
        role = resolve_and_validate_role(expected, "training", sagemaker_session=session)
    assert role == expected


def _aws_cli() -> str:
    pytest.importorskip("awscli", reason="the AWS CLI is the awscli extra: pip install -e '.[awscli]'")
    path = shutil.which("aws", path=str(Path(sys.executable).parent))
    assert path, "awscli is installed but its aws command is not beside this interpreter"
    return path


def _run_aws(engine, tmp_path: Path, *args: str) -> dict:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),  # no user config or credentials of this machine
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        **{k: v for k, v in engine.environ().items() if k != "AWS_ENDPOINT_URL"},
    }
    command = [_aws_cli(), *args, "--endpoint-url", engine.endpoint_url, "--output", "json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_aws_cli_creates_and_describes_a_training_job(engine, s3_bucket, tmp_path):
    _aws_cli()
    s3 = engine.client("s3")
    code = upload_script(
        s3, s3_bucket, "open('/opt/ml/model/model.txt', 'w').write('ok')\nprint('trained')\n"
    )
    name = f"cli-{uuid.uuid4().hex[:12]}"
    request = tmp_path / "job.json"
    request.write_text(json.dumps(training_config(s3_bucket, code, name=name)))
    created = _run_aws(
        engine, tmp_path, "sagemaker", "create-training-job", "--cli-input-json", f"file://{request}"
    )
    assert created["TrainingJobArn"].endswith(f"training-job/{name}")
    sagemaker, deadline = engine.client("sagemaker"), time.monotonic() + 120
    while sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    job = _run_aws(engine, tmp_path, "sagemaker", "describe-training-job", "--training-job-name", name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    key = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix(f"s3://{s3_bucket}/")
    assert s3.head_object(Bucket=s3_bucket, Key=key)["ContentLength"] > 0
