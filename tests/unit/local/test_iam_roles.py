"""The engine's IAM answers as data: the policy simulation and its XML, read back with botocore."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from botocore.parsers import create_parser

from airflow_sm_provider.local import model
from airflow_sm_provider.local.iam import simulate_principal_policy, simulate_response_xml

ACCOUNT = "123456789012"


def _form(text: str) -> dict[str, list[str]]:
    return parse_qs(text)


def test_every_action_and_resource_is_allowed_in_the_order_asked():
    params = _form(
        f"PolicySourceArn=arn:aws:iam::{ACCOUNT}:role/r&ActionNames.member.2=s3:GetObject"
        "&ActionNames.member.1=sagemaker:CreateTrainingJob&ActionNames.member.10=logs:PutLogEvents"
        "&ResourceArns.member.1=arn:aws:s3:::b"
    )
    result = simulate_principal_policy(params, ACCOUNT)
    assert [
        (r["EvalActionName"], r["EvalResourceName"], r["EvalDecision"]) for r in result["EvaluationResults"]
    ] == [
        ("sagemaker:CreateTrainingJob", "arn:aws:s3:::b", "allowed"),
        ("s3:GetObject", "arn:aws:s3:::b", "allowed"),
        ("logs:PutLogEvents", "arn:aws:s3:::b", "allowed"),
    ]


def test_a_principal_of_another_account_is_unknown():
    with pytest.raises(LookupError, match="999999999999"):
        simulate_principal_policy(_form("PolicySourceArn=arn:aws:iam::999999999999:role/r"), ACCOUNT)


def test_the_response_is_iams_xml_as_botocore_reads_it():
    result = simulate_principal_policy(
        _form(f"PolicySourceArn=arn:aws:iam::{ACCOUNT}:user/u&ActionNames.member.1=s3:<odd>"), ACCOUNT
    )
    shape = model.service_model("iam").operation_model("SimulatePrincipalPolicy").output_shape
    response = {"status_code": 200, "headers": {}, "body": simulate_response_xml(result).encode()}
    parsed = create_parser("query").parse(response, shape)
    assert parsed["IsTruncated"] is False
    assert parsed["EvaluationResults"][0]["EvalActionName"] == "s3:<odd>"
    assert parsed["EvaluationResults"][0]["EvalDecision"] == "allowed"
