"""Credentials out of reports and messages (pure): known values, patterns and secret-named keys."""

from __future__ import annotations

import pytest

from airflow_sm_provider.redaction import REDACTED, is_sensitive_key, redact, redact_values

# AWS's documented example keys: recognisably fake.
ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token=abc", "token=[redacted]"),
        (f"aws_secret_access_key: {SECRET_KEY} then", "aws_secret_access_key: [redacted] then"),
        ('{"api_key": "abc", "lr": 0.1}', '{"api_key": "[redacted]", "lr": 0.1}'),
        ("db-password = hunter2;", "db-password = [redacted];"),
        (f"denied for {ACCESS_KEY_ID}", "denied for [redacted]"),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Signature=abc123&x=1",
            "https://b.s3.amazonaws.com/k?X-Amz-Signature=[redacted]&x=1",
        ),
        # ML words that merely contain a secret's name stay.
        ("tokenizer=bert max_tokens=512 MaxTokens=512", "tokenizer=bert max_tokens=512 MaxTokens=512"),
    ],
)
def test_patterns(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_known_values_are_replaced_wherever_they_appear_and_short_ones_are_not_searched() -> None:
    text = f"exit 1: signing with {SECRET_KEY}failed; id 42"
    assert redact(text, known=[SECRET_KEY, "42"]) == "exit 1: signing with [redacted]failed; id 42"


@pytest.mark.parametrize(
    "key", ["password", "DbPassword", "AWS_SECRET_ACCESS_KEY", "api-key", "github_token"]
)
def test_secret_names(key: str) -> None:
    assert is_sensitive_key(key)


@pytest.mark.parametrize("key", ["tokenizer", "max_tokens", "learning-rate", "secretary_count"])
def test_ordinary_names(key: str) -> None:
    assert not is_sensitive_key(key)


def test_nested_values_tags_and_empty_secrets() -> None:
    value = {
        "hyperparameters": {
            "lr": "0.1",
            "db_password": "hunter2",
            "note": f"key {ACCESS_KEY_ID}",
            "token": "",
        },
        "tags": [{"Key": "ApiKey", "Value": "abc"}, {"Key": "team", "Value": "ml"}],
        "count": 3,
    }
    assert redact_values(value) == {
        "hyperparameters": {"lr": "0.1", "db_password": REDACTED, "note": f"key {REDACTED}", "token": ""},
        "tags": [{"Key": "ApiKey", "Value": REDACTED}, {"Key": "team", "Value": "ml"}],
        "count": 3,
    }
