"""The IAM policies of deploy/iam: valid policy documents, real actions, narrow resources, and
every AWS call the provider makes allowed (found in its source, so a new call needs a new grant)."""

from __future__ import annotations

import ast
import json
import re
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

from airflow_sm_provider import mwaa
from airflow_sm_provider.job_kinds import KINDS

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "airflow_sm_provider"
IAM = ROOT / "deploy" / "iam"
VALUES = {
    "Partition": "aws",
    "Region": "eu-west-1",
    "AccountId": "123456789012",
    "Bucket": "ml-team-bucket",
    "Prefix": "airflow-sm",
    "SagemakerRoleName": "SageMakerExecution",
}
# IAM prefix -> the botocore services whose operations it covers.
SERVICES = {
    "sagemaker": ("sagemaker", "sagemaker-metrics"),
    "logs": ("logs",),
    "s3": ("s3",),
    "iam": ("iam",),
}
# S3 permissions are not named after operations: the permission each S3 call needs.
S3_PERMISSION = {
    "ListObjectsV2": "ListBucket",
    "HeadObject": "GetObject",
    "GetObject": "GetObject",
    "PutObject": "PutObject",
    "load_bytes": "PutObject",  # S3Hook
    "load_file": "PutObject",  # S3Hook
    "load_string": "PutObject",  # S3Hook
    "read_key": "GetObject",  # S3Hook
    "download_file": "GetObject",  # boto3 transfer
    "upload_file": "PutObject",  # boto3 transfer
}
# Permissions that guard no API operation of their own.
PERMISSION_ONLY = {"iam:PassRole"}
# Actions that have no resource type in the Service Authorization Reference: only "*" fits them.
UNSCOPED = re.compile(r"sagemaker:(Search|List[A-Za-z]+|BatchGetMetrics)")
# The engine (local/), its command and the MWAA packaging make no calls on the deployment's behalf.
# Local-only code: the engine, the command line, the main job, the MWAA build, `airflow-sm ui`.
NOT_DEPLOYED = {"local", "cli.py", "demo.py", "mwaa.py", "ui/standalone.py"}
# The hook's own methods whose names happen to be SageMaker operations (DescribeJob, StopJob).
OWN_METHODS = {"describe_job", "stop_job"}


def policy(name: str) -> dict:
    return mwaa.render_policy(json.loads((IAM / name).read_text()), VALUES)


EXECUTION = "mwaa-execution-role-policy.json"
TRUST = "sagemaker-execution-role-trust-policy.json"


def statements(document: dict) -> list[dict]:
    return document["Statement"]


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


@cache
def operations(service: str) -> frozenset[str]:
    return frozenset(botocore.session.get_session().get_service_model(service).operation_names)


def allows(document: dict, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """Whether an Allow statement grants ``action`` on ``resource`` (conditions checked for equality/like)."""
    for statement in statements(document):
        if statement["Effect"] != "Allow":
            continue
        if not any(fnmatchcase(action, pattern) for pattern in as_list(statement["Action"])):
            continue
        if not any(fnmatchcase(resource, pattern) for pattern in as_list(statement["Resource"])):
            continue
        conditions = statement.get("Condition", {})
        if all(
            any(fnmatchcase((context or {}).get(key, "\0"), value) for value in as_list(expected))
            for test in conditions.values()
            for key, expected in test.items()
        ):
            return True
    return False


@pytest.mark.parametrize("name", [EXECUTION, TRUST])
def test_templates_are_policy_documents_with_every_placeholder_filled(name: str) -> None:
    text = json.dumps(policy(name))
    assert "${" not in text
    document = json.loads(text)
    assert document["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in statements(document)]
    assert len(sids) == len(set(sids))
    for statement in statements(document):
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition", "Principal"}
        assert statement["Effect"] == "Allow"
        assert re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"])


def test_every_action_exists_in_the_service_models() -> None:
    for statement in statements(policy(EXECUTION)):
        for action in as_list(statement["Action"]):
            prefix, _, name = action.partition(":")
            assert "*" not in action, action
            if action in PERMISSION_ONLY:
                continue
            if prefix == "s3":
                assert name in set(S3_PERMISSION.values()), action
            else:
                assert any(name in operations(service) for service in SERVICES[prefix]), action


def test_resources_are_narrow_wherever_a_resource_type_exists() -> None:
    for statement in statements(policy(EXECUTION)):
        if "*" in as_list(statement["Resource"]):
            assert as_list(statement["Resource"]) == ["*"]
            assert all(UNSCOPED.fullmatch(a) for a in as_list(statement["Action"])), statement["Sid"]
            continue
        for resource in as_list(statement["Resource"]):
            assert resource.startswith("arn:aws:"), resource
            # The account's own resources, or the one bucket.
            assert ":123456789012:" in resource or resource.startswith("arn:aws:s3:::ml-team-bucket"), (
                resource
            )


def test_pass_role_only_hands_the_sagemaker_role_to_sagemaker() -> None:
    document = policy(EXECUTION)
    role = "arn:aws:iam::123456789012:role/SageMakerExecution"
    assert allows(document, "iam:PassRole", role, {"iam:PassedToService": "sagemaker.amazonaws.com"})
    assert not allows(document, "iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"})
    assert not allows(document, "iam:PassRole", role)
    other = "arn:aws:iam::123456789012:role/Admin"
    assert not allows(document, "iam:PassRole", other, {"iam:PassedToService": "sagemaker.amazonaws.com"})


def test_s3_access_stays_in_the_bucket_and_prefix() -> None:
    document = policy(EXECUTION)
    assert allows(document, "s3:PutObject", "arn:aws:s3:::ml-team-bucket/airflow-sm/code/abc/train.py")
    assert allows(document, "s3:GetObject", "arn:aws:s3:::ml-team-bucket/airflow-sm/runs/x/model.tar.gz")
    assert not allows(document, "s3:GetObject", "arn:aws:s3:::ml-team-bucket/other/secret.csv")
    assert not allows(document, "s3:PutObject", "arn:aws:s3:::another-bucket/airflow-sm/x")
    bucket = "arn:aws:s3:::ml-team-bucket"
    assert allows(document, "s3:ListBucket", bucket, {"s3:prefix": "airflow-sm/runs/x"})
    assert not allows(document, "s3:ListBucket", bucket, {"s3:prefix": "other/"})


def test_the_trust_policy_lets_only_sagemaker_of_this_account_assume_the_role() -> None:
    (statement,) = statements(policy(TRUST))
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}


def deployed_sources() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not NOT_DEPLOYED & {path.relative_to(PACKAGE).parts[0], path.relative_to(PACKAGE).as_posix()}
    ]


@cache
def provider_calls() -> frozenset[str]:
    """IAM actions of the AWS calls in the deployed modules: attribute calls and method-name strings
    (the hooks call ``getattr(client, method)``) that name an operation, plus the job-kind table."""
    by_snake = {
        xform_name(op): (prefix, op)
        for prefix, services in SERVICES.items()
        for s in services
        for op in operations(s)
    }
    names: set[str] = set()
    for path in deployed_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                names.add(node.func.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
    for spec in KINDS.values():
        names |= {spec.create_method, spec.describe_method, spec.stop_method, spec.list_method}
    actions = set()
    for name in names:
        if name in S3_PERMISSION:
            actions.add(f"s3:{S3_PERMISSION[name]}")
        elif name in by_snake and name not in OWN_METHODS:
            prefix, op = by_snake[name]
            actions.add(f"{prefix}:{S3_PERMISSION.get(op, op)}" if prefix == "s3" else f"{prefix}:{op}")
    return frozenset(actions)


def test_the_scan_finds_the_calls_we_know_of() -> None:
    """A scan that found nothing would pass the next test vacuously."""
    assert {
        "sagemaker:CreateTrainingJob",
        "sagemaker:DescribeProcessingJob",
        "sagemaker:ListTags",
        "logs:GetLogEvents",
        "logs:DescribeLogStreams",
        "s3:ListBucket",
        "s3:PutObject",
    } <= provider_calls()


def test_every_call_the_provider_makes_is_allowed() -> None:
    granted = {a for s in statements(policy(EXECUTION)) for a in as_list(s["Action"])}
    assert sorted(provider_calls() - granted) == []
